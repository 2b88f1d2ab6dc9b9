"""The config API in one place: the schema (`experiment.schema`) and the registry (`experiment.registry`).

A flat re-export, as optax's ``__init__``: experiment files, binaries and
notebooks import ``flpjax.config``; the definitions live in
``flpjax/experiment/schema.py`` (defaults, field checks) and
``flpjax/experiment/registry.py`` (tasks, learners and estimators by name).
"""

from flpjax.experiment.registry import (ESTIMATORS, LEARNERS, TASKS, make_estimator,  # noqa: F401
                                        make_learner, make_tasks, make_validation_task, meta_lrs,
                                        network, output_kind, validate)
from flpjax.experiment.schema import (MATMUL_PRECISIONS, ConfigError, base_config,  # noqa: F401
                                      load_file, migrate, set_field, with_defaults)
