r"""Meta-trains one configuration and evaluates it (resumes from the workdir).

  python experiments/train.py --config=experiments/configs/sine_flp3_iid.py \
      --workdir=workdirs/sine_flp3_iid

Any config field can be overridden, e.g. ``--config.meta.steps=1000``.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from flpjax import config as config_lib
from flpjax import summary
from flpjax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  summary.quiet_libraries()
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (config_lib.ConfigError, train.WorkdirError, train.NonFiniteError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
