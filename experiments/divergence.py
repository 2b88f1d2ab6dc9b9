r"""Why meta-training diverges: R seeds of one config, with what happens before the loss leaves.

  python experiments/divergence.py \
      --config=experiments/configs/sine.py:row=flp3,order=continual,scale=mini \
      --runs=8 --steps=1500 --every=25 --out=results/divergence/flp3_continual_plain.json
  # the same with a remedy (any config field can be overridden):
  python experiments/divergence.py ... --config.meta.nonnegative="('alpha','alpha_readout')"

Meta-trains ``--runs`` independent networks (seeds ``seed .. seed + R - 1``, one
`vmap`ped program, as ``config.runs``) for ``--steps`` meta-steps, without
checkpoints. Every ``--every`` steps (and at the first non-finite step of a run) it records,
per run: the meta-loss, each group's meta-gradient norm (``grad_norm_<group>``)
and meta-update norm (``update_norm_<group>``), each plastic layer's plasticity
statistics (min, max, fraction < 0, mean |alpha|) and the norm of its fast
weights at the end of one meta-training lifetime. A run *diverges* when a
meta-step's loss or gradient is not finite (`meta.make_meta_step` skips it, or
backs off ``config.meta.nonfinite_backoff``) or
when its meta-test evaluation at the end (``--eval_lifetimes`` fresh lifetimes)
is not finite. The JSON at ``--out`` has the trajectories, each run's first
non-finite step and the records just before it, and ``diverged`` (count of R).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from flpjax import config as config_lib
from flpjax import lifetime, meta
from flpjax.experiment import aggregate, checkpoints
from flpjax.reporting import errors, metrics
from flpjax.reporting.progress import Progress

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=False)
_RUNS = flags.DEFINE_integer("runs", 8, "Independent networks (seeds).", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 1000, "Meta-steps.", lower_bound=1)
_EVERY = flags.DEFINE_integer("every", 25, "Record every this many meta-steps.", lower_bound=1)
_EVAL = flags.DEFINE_integer("eval_lifetimes", 20, "Meta-test lifetimes per run at the end "
                             "(0: none).", lower_bound=0)
_OUT = flags.DEFINE_string("out", None, "Output JSON.")
flags.mark_flags_as_required(["config", "out"])


def _norms_by_group(tree, learner) -> dict:
  labels = meta.param_labels(tree, learner)
  out = {}
  for label, leaf in zip(jax.tree.leaves(labels), jax.tree.leaves(tree)):
    out[label] = out.get(label, 0.0) + jnp.sum(jnp.square(leaf))
  return {k: jnp.sqrt(v) for k, v in out.items()}


def make_probe(learner, task):
  """``(params, key, data) -> stats`` of one run: plasticities and end-of-lifetime fast weights."""

  def probe(params, key, data):
    ep = task.sample(key, data)
    fast, _ = lifetime.run(learner, params, ep.xs, ep.ys, key=key)
    stats = {}
    for name, w in learner.plastic_weights(fast).items():
      stats[f"fast_norm_{name}"] = jnp.linalg.norm(w)
    for name, a in (params.get("alpha") or {}).items():
      stats[f"alpha_min_{name}"] = jnp.min(a)
      stats[f"alpha_max_{name}"] = jnp.max(a)
      stats[f"alpha_neg_{name}"] = jnp.mean(a < 0)
      stats[f"alpha_abs_{name}"] = jnp.mean(jnp.abs(a))
    return stats

  return probe


def study(config, runs: int, steps: int, every: int, eval_lifetimes: int) -> dict:
  """The record described in the module docstring."""
  config.runs = runs
  config_lib.validate(config)
  learner = config_lib.make_learner(config)
  task, _ = config_lib.make_tasks(config)
  estimator = config_lib.make_estimator(config, learner, task)
  optimizer = config_lib.make_optimizer(config, learner)
  keys = checkpoints.run_keys(config)
  states = meta.init_states(learner, optimizer, keys, estimator=estimator)
  step_fn = meta.make_runs_meta_step(estimator, optimizer,
                                     **config_lib.step_options(config, learner))
  probe = jax.jit(jax.vmap(make_probe(learner, task), (0, 0, None)))
  group_norms = jax.jit(jax.vmap(lambda t: _norms_by_group(t, learner)))

  records, first_bad = [], [None] * runs
  progress = Progress("meta-step", 0, steps)
  t0 = time.time()
  for s in range(steps):
    step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, s)
    before = states.params
    if (s + 1) % every == 0:
      before = jax.tree.map(jnp.copy, before)
    states, step_metrics = step_fn(states, step_keys, task.data)
    m = jax.device_get(step_metrics)
    finite = np.asarray(m["finite"]).astype(bool)
    new_bad = False
    for r in np.flatnonzero(~finite):
      if first_bad[r] is None:
        first_bad[r], new_bad = s + 1, True
    if (s + 1) % every == 0 or new_bad:
      rec = {"step": s + 1, "loss": np.asarray(m["loss"]).tolist(), "finite": finite.tolist()}
      if (s + 1) % every == 0:
        updates = jax.tree.map(lambda a, b: a - b, states.params, before)
        rec.update({f"update_norm_{k}": np.asarray(v).tolist()
                    for k, v in jax.device_get(group_norms(updates)).items()})
        rec.update({k: np.asarray(v).tolist() for k, v in jax.device_get(
            probe(states.params, jax.vmap(jax.random.fold_in, (0, None))(keys, 10**6 + s),
                  task.data)).items()})
      rec.update({k: np.asarray(v).tolist() for k, v in m.items()
                  if k.startswith("grad_norm")})
      records.append(rec)
      progress.update(s + 1, f"loss {np.nanmedian(np.asarray(m['loss'])):.4g}")
  train_s = time.time() - t0
  out = {"config": json.loads(config.to_json_best_effort()), "runs": runs, "steps": steps,
         "device": metrics.device_name(), "train_s": round(train_s, 1),
         "first_nonfinite_step": first_bad, "records": records}
  final = None
  if eval_lifetimes:
    # One run: evaluate_params takes its parameters without the run axis.
    params = states.params if runs > 1 else jax.tree.map(lambda a: a[0], states.params)
    result = aggregate.evaluate_params(config, params, eval_lifetimes)
    metric = "mse" if "mse" in result else "error"
    final = [float(r[metric]) if r.get("nonfinite_lifetimes", 0) == 0 else float("nan")
             for r in result.get("runs", [result])]
    out["eval"] = {"metric": metric, "per_run": final,
                   "nonfinite_lifetimes": [r.get("nonfinite_lifetimes", 0)
                                           for r in result.get("runs", [result])]}
  diverged = [first_bad[r] is not None or (final is not None and not np.isfinite(final[r]))
              for r in range(runs)]
  out["diverged_runs"] = diverged
  out["diverged"] = int(sum(diverged))
  out["before_divergence"] = {
      str(r): [rec for rec in records if first_bad[r] - 5 * every <= rec["step"] <= first_bad[r]]
      for r in range(runs) if first_bad[r] is not None}
  return out


def main(argv):
  del argv
  errors.quiet_libraries()
  out = study(_CONFIG.value, _RUNS.value, _STEPS.value, _EVERY.value, _EVAL.value)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  metrics.write_json(_OUT.value, out)
  ev = out.get("eval", {})
  print(json.dumps({"diverged": f"{out['diverged']} of {out['runs']}",
                    "first_nonfinite_step": out["first_nonfinite_step"],
                    "eval": ev.get("per_run"), "train_s": out["train_s"],
                    "device": out["device"]}))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
