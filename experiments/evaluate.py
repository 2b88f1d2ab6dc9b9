r"""Evaluates the meta-parameters of a run on fresh lifetimes.

  python experiments/evaluate.py --workdir=workdirs/sine_flp3_iid
  python experiments/evaluate.py --params=results/params/omniglot_flp2 --output=/tmp/e.json
  python experiments/evaluate.py --workdir=workdirs/omniglot_flp2 --export=results/params/omniglot_flp2

Reads the run's ``config.json`` (or ``--config``), restores its latest
checkpoint (or ``--step``), evaluates ``config.eval.lifetimes`` lifetimes (or
``--lifetimes``), prints a table and writes ``<workdir>/eval_<step>.json``
(or ``--output``). ``--params`` evaluates meta-parameters stored with
``train.export_params`` (``<path>.npz`` + ``<path>.json``, e.g. under
``results/params/``) without their workdir; ``--workdir ... --export=<path>``
writes that pair from a run (its latest checkpoint or ``--step``) and evaluates
nothing. Exit status 2 on bad input, with one ``error:`` line.
"""

import json
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from flpjax import train
from flpjax.reporting import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (default: the run's).")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory.")
_PARAMS = flags.DEFINE_string("params", None, "Stored meta-parameters (train.export_params).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", lower_bound=0)
_LIFETIMES = flags.DEFINE_integer("lifetimes", None, "Number of lifetimes (default: config).",
                                  lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the JSON results.")
_EXPORT = flags.DEFINE_string(
    "export", None, "Only store the run's meta-parameters as <export>.npz + <export>.json.")
flags.mark_flags_as_mutual_exclusive(["workdir", "params"], required=True)
flags.mark_flags_as_mutual_exclusive(["export", "params"])


def _check_writable(path):
  """Raises WorkdirError now rather than after the evaluation if ``path`` cannot be written."""
  existed = os.path.exists(path)
  try:
    with open(path, "a"):
      pass
  except OSError as e:
    raise train.WorkdirError(f"--output={path}: cannot write it ({e.strerror})") from None
  if not existed:
    os.remove(path)


def main(argv):
  del argv
  errors.quiet_libraries()
  try:
    if _EXPORT.value:
      try:
        os.makedirs(os.path.dirname(os.path.abspath(_EXPORT.value)), exist_ok=True)
      except OSError as e:
        raise train.WorkdirError(f"--export={_EXPORT.value}: cannot create its directory "
                                 f"({e.strerror})") from None
      _check_writable(_EXPORT.value + ".json")
      path = train.export_params(_WORKDIR.value, _EXPORT.value, _STEP.value)
      print(f"wrote {path}.npz and {path}.json")
      return
    if _PARAMS.value:
      config, params, step = train.load_params_file(_PARAMS.value)
      if _CONFIG.value is not None:
        config = _CONFIG.value
      output = _OUTPUT.value or _PARAMS.value + f"_eval_{step}.json"
    else:
      config, params, step = train.load_run(_WORKDIR.value, _CONFIG.value, _STEP.value)
      output = _OUTPUT.value or os.path.join(_WORKDIR.value, f"eval_{step}.json")
    jax.config.update("jax_default_matmul_precision", config.matmul_precision)
    _check_writable(output)
    result = train.evaluate_params(config, params, _LIFETIMES.value)
    result.update({"step": step, "device": jax.devices()[0].device_kind})
    with open(output, "w") as f:
      json.dump(result, f, indent=1)
  except train.USER_ERRORS as e:
    errors.exit_with_error(e, 2)
  logging.info("wrote %s", output)
  print(train.results_table([(f"{_PARAMS.value or _WORKDIR.value} @ step {step}", result)]))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
