"""Configs: the schema, its checks, the plug-in registry, and the objects a config builds.

* `schema`: `base_config` (every field and its default, plug-ins' sections
  included), `load_file` (a config string such as
  ``experiments/configs/sine.py:row=flp3``), `parse_arg` / `apply_run_args`
  (the config files' side), `with_defaults` / `migrate` (saved configs);
* `checks`: field-by-field checks; `ConfigError` names the field;
* `registry`: names in a config to plug-in modules; `register` adds yours;
* `build`: `validate` and the builders (`make_learner`, `make_tasks`,
  `make_estimator`, `make_optimizer`, ...).

The names most used are here too (``from flpjax import config as config_lib``;
``config_lib.validate(c)``).
"""

from flpjax.config import build, checks, registry, schema
from flpjax.config.build import (
                                 check_source_runs,
                                 lifetime_steps,
                                 make_estimator,
                                 make_learner,
                                 make_optimizer,
                                 make_tasks,
                                 make_validation_task,
                                 max_loss,
                                 meta_lrs,
                                 network,
                                 on_nonfinite,
                                 output_kind,
                                 own_evaluation,
                                 step_options,
                                 validate,
)
from flpjax.config.checks import ConfigError
from flpjax.config.registry import register, unregister
from flpjax.config.schema import (
                                 MATMUL_PRECISIONS,
                                 RUN_ARGS,
                                 apply_run_args,
                                 base_config,
                                 load_file,
                                 migrate,
                                 parse_arg,
                                 plasticity_group,
                                 set_field,
                                 with_defaults,
)

__all__ = ["ConfigError", "MATMUL_PRECISIONS", "RUN_ARGS", "apply_run_args", "base_config",
           "build", "check_source_runs", "checks", "lifetime_steps", "load_file",
           "make_estimator", "make_learner", "make_optimizer", "make_tasks",
           "make_validation_task", "max_loss", "meta_lrs", "migrate", "network", "on_nonfinite",
           "output_kind", "own_evaluation", "parse_arg", "plasticity_group", "register",
           "registry", "schema", "set_field", "step_options", "unregister", "validate",
           "with_defaults"]
