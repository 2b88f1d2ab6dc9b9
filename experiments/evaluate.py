r"""Evaluates the meta-parameters of a run on fresh lifetimes.

  python experiments/evaluate.py --workdir=workdirs/sine_flp3_iid

Reads the run's ``config.json`` (or ``--config``), restores its latest
checkpoint (or ``--step``), evaluates ``config.eval.lifetimes`` lifetimes (or
``--lifetimes``), prints a table and writes ``<workdir>/eval_<step>.json``
(or ``--output``).
"""

import json
import os
import sys

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from flpjax import config as config_lib
from flpjax import summary
from flpjax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (default: the run's).")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_LIFETIMES = flags.DEFINE_integer("lifetimes", None, "Number of lifetimes (default: config).")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the JSON results.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  summary.quiet_libraries()
  workdir = _WORKDIR.value
  try:
    if _CONFIG.value is not None:
      config = _CONFIG.value
    else:
      path = os.path.join(workdir, "config.json")
      if not os.path.exists(path):
        raise config_lib.ConfigError(f"--workdir={workdir}: no config.json (pass --config)")
      config = ml_collections.ConfigDict(json.load(open(path)))
    config_lib.validate(config)
    if _LIFETIMES.value is not None and _LIFETIMES.value < 1:
      raise config_lib.ConfigError(f"--lifetimes={_LIFETIMES.value}: expected an integer >= 1")
    params, step = train.restore_params(workdir, config, _STEP.value)
  except (config_lib.ConfigError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  result = train.evaluate_params(config, params, _LIFETIMES.value)
  result.update({"step": step, "device": jax.devices()[0].device_kind})
  output = _OUTPUT.value or os.path.join(workdir, f"eval_{step}.json")
  with open(output, "w") as f:
    json.dump(result, f, indent=1)
  logging.info("wrote %s", output)
  print(train.results_table([(f"{workdir} @ step {step}", result)]))


if __name__ == "__main__":
  app.run(main)
