"""The config API in one place: the schema (`experiment.schema`) and the registry (`experiment.registry`).

A flat re-export, as optax's ``__init__``: experiment files, binaries and
notebooks import ``flpjax.config``; the definitions live in
``flpjax/experiment/schema.py`` (defaults, field checks) and
``flpjax/experiment/registry.py`` (tasks, learners and estimators by name).
"""

from flpjax.experiment.registry import (ESTIMATORS, LEARNERS, TASKS, make_estimator,  # noqa: F401
                                        make_learner, make_optimizer, make_tasks,
                                        make_validation_task, meta_lrs, network, output_kind,
                                        validate)
from flpjax.experiment.schema import (MATMUL_PRECISIONS, RUN_ARGS, ConfigError,  # noqa: F401
                                      apply_run_args, base_config, load_file, migrate,
                                      parse_arg, parse_set, plasticity_group, set_field,
                                      with_defaults)
