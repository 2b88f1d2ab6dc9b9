r"""Is a faster matmul precision safe for meta-training?

  python experiments/precision_check.py --config=experiments/configs/sine.py:row=flp3 \
      --precisions=tensorfloat32,default --curve_steps=2000 --runs=4 --output=precision.json

Before a precision other than float32 (``config.matmul_precision='highest'``, the
default) is ever used for a table cell, it is checked against float32 twice:

1. the meta-gradient of one fixed lifetime (the config's meta-training task, key
   ``--seed``): the relative error ``|g_p - g_f32| / |g_f32|`` of every
   meta-parameter group (``ff``, ``fb``, ``alpha``, ...);
2. meta-training curves: ``--runs`` networks (seeds) meta-trained for
   ``--curve_steps`` steps at each precision from the same initialisations and
   keys; the mean meta-loss over the last tenth of the steps, per network. The
   precision "agrees within seed noise" when its mean over networks differs from
   float32's by less than 2 standard errors of the difference (networks paired).

The precisions are a GPU's (TF32, bfloat16 passes); it is meant for GPUs
(``gpu_cells.sh``'s machine) and runs on a CPU too (where the tests run it).
Output: one JSON file.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from flpjax import config as config_lib
from flpjax import meta
from flpjax.config.schema import MATMUL_PRECISIONS
from flpjax.experiment import aggregate
from flpjax.reporting import errors, metrics

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config string (experiments/configs/...:args); --config.<field>=<value> "
    "sets a field (tests: sizes).")
_PRECISIONS = flags.DEFINE_list("precisions", ["tensorfloat32", "default"],
                                f"Precisions to check against float32 ({MATMUL_PRECISIONS}).")
_CURVE_STEPS = flags.DEFINE_integer("curve_steps", 2000, "Meta-steps of each curve (0: none).",
                                    lower_bound=0)
_RUNS = flags.DEFINE_integer("runs", 4, "Networks (seeds) per curve.", lower_bound=2)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the fixed lifetime and of the networks.")
_OUTPUT = flags.DEFINE_string("output", "precision_check.json", "Output JSON.")


def _load(runs: int):
  config = _CONFIG.value.copy_and_resolve_references()  # with its --config.<field> values
  config.runs = runs
  config.run_orders = ()
  config.sweep.lrs = ()
  config_lib.validate(config)
  return config


def _parts(config):
  learner = config_lib.make_learner(config)
  task = config_lib.make_tasks(config)[0]
  optimizer = config_lib.make_optimizer(config, learner)
  return learner, task, optimizer, config_lib.make_estimator(config, learner, task)


def gradient_errors(config, precisions: list[str]) -> dict[str, dict[str, float]]:
  """``{precision: {group: relative error of its meta-gradient against float32}}``."""
  learner, task, optimizer, estimator = _parts(config)
  key = jax.random.key(_SEED.value)
  state = meta.init_state(learner, optimizer, key, estimator=estimator)

  def grads_at(precision):
    with jax.default_matmul_precision(precision):
      fn = jax.jit(lambda p, s, k, d: estimator.meta_grad(p, s, k, d)[0])
      return jax.device_get(fn(state.params, state.estimator, jax.random.key(1), task.data))

  reference = grads_at("float32")
  out = {}
  for precision in precisions:
    g = grads_at(precision)
    out[precision] = {}
    for group in reference:
      ref = np.concatenate([np.ravel(x) for x in jax.tree.leaves(reference[group])] or [[]])
      new = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g[group])] or [[]])
      norm = float(np.linalg.norm(ref))
      out[precision][group] = (float(np.linalg.norm(new - ref)) / norm if norm > 0
                               else float(np.linalg.norm(new)))
  return out


def curves(config, precisions: list[str], steps: int) -> dict[str, list[float]]:
  """``{precision: [mean meta-loss over the last tenth of the steps, per network]}``."""
  learner, task, optimizer, estimator = _parts(config)
  keys = jax.vmap(jax.random.key)(_SEED.value + np.arange(config.runs))
  tail = max(1, steps // 10)
  out = {}
  for precision in ["float32"] + precisions:
    with jax.default_matmul_precision(precision):
      step = meta.make_runs_meta_step(estimator, optimizer, task.data_axes)
      state = meta.init_states(learner, optimizer, keys, estimator=estimator)
      losses = []
      for s in range(steps):
        state, m = step(state, jax.vmap(jax.random.fold_in, (0, None))(keys, s), task.data)
        if s >= steps - tail:
          losses.append(np.asarray(m["loss"], np.float64))
    out[precision] = np.nanmean(np.stack(losses), axis=0).tolist()
    print(precision, out[precision], flush=True)
  return out


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  errors.quiet_libraries()
  if not _CONFIG.value:
    sys.exit("error: --config: expected a config string, e.g. "
             "experiments/configs/sine.py:row=flp3")
  bad = [p for p in _PRECISIONS.value if p not in MATMUL_PRECISIONS]
  if bad:
    sys.exit(f"error: --precisions={','.join(bad)}: expected some of {MATMUL_PRECISIONS}")
  try:
    config = _load(1)
    flag = flags.FLAGS[_CONFIG.name]
    out = {"config": config_flags.get_config_filename(flag),
           "overrides": config_flags.get_override_values(flag), "device": metrics.device_name(),
           "jax": jax.__version__, "gradient_relative_error": gradient_errors(
               config, _PRECISIONS.value)}
    if _CURVE_STEPS.value:
      loss = curves(_load(_RUNS.value), _PRECISIONS.value, _CURVE_STEPS.value)
      out["curve_steps"], out["final_loss"], out["verdicts"] = _CURVE_STEPS.value, loss, {}
      for p in _PRECISIONS.value:
        diff = np.asarray(loss[p]) - np.asarray(loss["float32"])  # paired by network
        d = aggregate.over_networks(diff.tolist())
        agree = d["stderr"] is not None and abs(d["mean"]) <= 2 * d["stderr"]
        out["verdicts"][p] = {"difference": d, "agrees_with_float32": bool(agree)}
  except config_lib.ConfigError as e:
    sys.exit(f"error: {str(e).splitlines()[0]}")
  metrics.write_json(_OUTPUT.value, out)
  for p, groups in out["gradient_relative_error"].items():
    print(p, {g: f"{e:.2e}" for g, e in groups.items()},
          out.get("verdicts", {}).get(p, {}).get("agrees_with_float32"))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
