"""What a run shows, in one import for the binaries: a flat re-export.

* metrics files and results files: `flpjax.experiment.metrics`
  (`MetricWriter`, `read_metrics`, `write_json`, `device_name`);
* progress lines: `flpjax.experiment.progress` (`Progress`);
* one-line errors: `flpjax.experiment.errors` (`parse_flags_or_exit`,
  `exit_with_error`, `quiet_libraries`, `WorkdirError`);
* learning curves: `flpjax.plots` (`plot_curves`, `smooth`).
"""

from flpjax.experiment.errors import (WorkdirError, _one_line, exit_with_error,  # noqa: F401
                                      parse_flags_or_exit, quiet_libraries)
from flpjax.experiment.metrics import (METRICS_FILE, MetricWriter, device_name,  # noqa: F401
                                       read_metrics, write_json)
from flpjax.experiment.progress import Progress  # noqa: F401
from flpjax.plots import plot_curves, smooth  # noqa: F401
