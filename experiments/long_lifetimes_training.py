r"""Meta-training on lifetimes longer than trained before.

  python experiments/long_lifetimes_training.py                 # memory, training, claims
  python experiments/long_lifetimes_training.py --parts=memory  # the memory curve alone

Two parts, both on continual sine at the mini scale (``sine.py:...,scale=mini``:
a lifetime of T = 40 steps):

* ``memory``: the memory one meta-step needs (XLA's own account of the compiled
  program, `jax.stages.Compiled.memory_analysis`: temporaries + arguments +
  outputs), against the lifetime length k T, for full backprop (every step's fast
  state kept for the backward pass, `meta.remat='step'`) and for truncated
  backprop with a T-step window (`flpjax.estimators.truncated`), at the mini size
  and at paper size (the 9-layer, 300/900-wide network). It also records the
  lifetime at which the config check (`flpjax.config.build.check_lifetime_memory`) refuses
  full backprop on this machine.
* ``train``: FLP (3) and gradient-based (3) meta-trained on lifetimes of
  ``--factor`` x T steps, with truncated backprop (window T, 4,000 meta-steps)
  and with full backprop (400 meta-steps: the same number of lifetime steps),
  then evaluated, with the networks meta-trained on T-step lifetimes (the
  miniature's cells), on lifetimes of T and factor x T steps. Claims at 2
  standard errors over the networks.

Output: ``results/beyond/long_lifetimes_training.json`` (and RESULTS.md's
"Beyond the paper" through ``reproduce.py --tables_only``).
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from flpjax import config as config_lib
from flpjax import meta, train
from flpjax.experiment import aggregate
from flpjax.reporting import errors, metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PARTS = flags.DEFINE_list("parts", ["memory", "train"], "Which parts: memory, train, claims "
                           "(the train part's claims again from its stored rows).")
_FACTOR = flags.DEFINE_integer("factor", 10, "Lifetime multiple k of the long lifetimes.",
                               lower_bound=2)
_MEMORY_FACTORS = flags.DEFINE_list("memory_factors", ["1", "2", "5", "10", "20", "50"],
                                    "Lifetime multiples of the memory curve.")
_MEMORY_SCALES = flags.DEFINE_list("memory_scales", ["mini", "paper"],
                                   "Network sizes of the memory curve (mini, paper).")
_ROOT = flags.DEFINE_string("workdir_root", os.path.join(REPO, "workdirs", "beyond", "long"),
                            "Where the meta-training runs go.")
_SHORT_ROOT = flags.DEFINE_string(
    "short_root", os.path.join(REPO, "workdirs", "reproduce", "table1", "mini"),
    "The miniature's Table 1 workdirs (flp3_continual, grad3_continual): the networks "
    "meta-trained on T-step lifetimes.")
_LIFETIMES = flags.DEFINE_integer("lifetimes", 50, "Meta-test lifetimes per network.",
                                  lower_bound=2)
_CONFIG = errors.define_config_overrides(
    "config", config_lib.base_config(), "Only its fields: --config.<field>=<value> sets the "
    "field in every run (tests: small sizes), e.g. --config.net.widths=(8,8,8).")
_OUTPUT = flags.DEFINE_string(
    "output", os.path.join(REPO, "results", "beyond", "long_lifetimes_training.json"),
    "Output JSON.")

ROWS = ("flp3", "grad3")
CONFIG = "experiments/configs/sine.py:row={row},order=continual,scale={scale}"


def _config(row: str, scale: str = "mini", factor: int = 1, estimator: str = "full"):
  """The continual sine config of ``row`` at ``scale`` with ``--config.<field>``, on lifetimes of
  ``factor`` x T steps, and T."""
  config = config_lib.load_file(os.path.join(REPO, CONFIG.format(row=row, scale=scale)))
  config.update_from_flattened_dict(config_flags.get_override_values(flags.FLAGS[_CONFIG.name]))
  t = config.sine.n_functions * config.sine.steps_per_function
  config.sine.steps_per_function *= factor
  if estimator == "truncated":
    config.estimator = "truncated"
    config.truncated.window = t
  return config, t


def memory_bytes(config) -> dict:
  """XLA's account of one compiled meta-step of ``config`` (one network): bytes."""
  learner = config_lib.make_learner(config)
  task = config_lib.make_tasks(config)[0]
  optimizer = config_lib.make_optimizer(config, learner)
  estimator = config_lib.make_estimator(config, learner, task)
  state = meta.init_state(learner, optimizer, jax.random.key(0), estimator=estimator)
  step = jax.jit(meta.make_meta_step(estimator, optimizer, jit=False))
  t0 = time.perf_counter()
  m = step.lower(state, jax.random.key(1), task.data).compile().memory_analysis()
  return {"temp": int(m.temp_size_in_bytes), "arguments": int(m.argument_size_in_bytes),
          "outputs": int(m.output_size_in_bytes),
          "total": int(m.temp_size_in_bytes + m.argument_size_in_bytes
                       + m.output_size_in_bytes),
          "compile_s": round(time.perf_counter() - t0, 1)}


def memory_curve(factors: list[int], scales: list[str]) -> dict:
  out = {}
  for scale in scales:
    rows = []
    for k in factors:
      row = {"factor": k}
      for estimator in ("full", "truncated"):
        config, t = _config("flp3", scale, k, estimator)
        config.runs = 1
        try:
          config_lib.validate(config)
          row[f"{estimator}_refused"] = None
        except config_lib.ConfigError as e:  # the check that stops before compilation
          row[f"{estimator}_refused"] = str(e)
        row["T"] = t
        row[estimator] = memory_bytes(config)
        print(scale, k, estimator, row[estimator], flush=True)
      rows.append(row)
    out[scale] = rows
  return out


def evaluate(workdir: str, lengths: dict[str, int]) -> dict:
  """Each network's meta-test MSE on lifetimes of each length (``{name: batches per
  function}``, the same functions and queries); NaN for a network with a diverged lifetime."""
  config, params, step = train.load_run(workdir)
  out = {"meta_steps": step}
  for name, per_function in lengths.items():
    c = config.copy_and_resolve_references()
    c.sine.steps_per_function = per_function
    c.eval.lifetimes = _LIFETIMES.value
    values = aggregate.per_network(train.evaluate_params(c, params))
    out[name] = {"per_network": values, **aggregate.over_networks(values)}
  return out


def _long_runs(factor: int) -> list[tuple[str, str, str, float]]:
  """Meta-trains (or resumes) the long-lifetime runs: ``(row, label, workdir, wall_s)``."""
  done = []
  for estimator in ("truncated", "full"):
    for row in ROWS:  # FLP first: the gradient row starts from it (B.2)
      config, _ = _config(row, factor=factor, estimator=estimator)
      if estimator == "full":  # as many lifetime steps as the truncated run's windows
        config.meta.steps = max(1, config.meta.steps // factor)
        config.checkpoint_every = max(1, config.checkpoint_every // factor)
        config.log_every = max(1, config.log_every // factor)
      workdir = os.path.join(_ROOT.value, f"{row}_{estimator}_{factor}T")
      if row.startswith("grad"):
        config.init_ff_from = os.path.join(_ROOT.value, f"flp3_{estimator}_{factor}T")
      config_lib.validate(config)
      t0 = time.time()
      train.train_and_evaluate(config, workdir)
      label = (f"truncated backprop (window T) on {factor}T" if estimator == "truncated"
               else f"full backprop on {factor}T")
      done.append((row, label, workdir, round(time.time() - t0, 1)))
  return done


def train_part(factor: int) -> dict:
  short = {row: os.path.join(_SHORT_ROOT.value, f"{row}_continual", "final") for row in ROWS}
  missing = [d for d in short.values() if not os.path.isdir(os.path.join(d, "checkpoints"))]
  if missing:
    raise train.WorkdirError(f"--short_root={_SHORT_ROOT.value}: no meta-trained run in "
                             f"{', '.join(missing)} (python experiments/reproduce.py "
                             "--scale=mini --cells=1:flp3:continual,1:grad3:continual)")
  per_function, _ = _config("flp3")
  per_function = per_function.sine.steps_per_function
  long = f"{factor}T"
  lengths = {"T": per_function, long: per_function * factor}
  variants = [(row, "full backprop on T", d, None) for row, d in short.items()]
  variants += _long_runs(factor)
  rows = []
  for row, label, workdir, wall in variants:
    result = evaluate(workdir, lengths)
    rows.append({"row": row, "variant": label, "workdir": os.path.relpath(workdir, REPO),
                 **({"wall_s": wall} if wall is not None else {}), **result})
    print(row, label, {k: v["mean"] for k, v in result.items() if isinstance(v, dict)},
          flush=True)
  return {"factor": factor, "lifetimes": _LIFETIMES.value, "rows": rows,
          "claims": claims(rows, factor)}


def claims(rows: list[dict], factor: int) -> list[dict]:
  """The part's claims from its rows, each decided with `aggregate.below`."""
  out = []
  by = {(r["row"], r["variant"]): r for r in rows}
  long = f"{factor}T"
  for row in ROWS:
    a = by[(row, f"truncated backprop (window T) on {long}")]
    b = by[(row, "full backprop on T")]
    c = by[(row, f"full backprop on {long}")]
    name = "FLP (3)" if row == "flp3" else "Gradient-based (3)"
    out.append({"claim": f"{name} meta-trained on {long} lifetimes with truncated "
                         f"backprop (window T) is below {name} meta-trained on T, on "
                         f"{long} lifetimes", "verdict": aggregate.below(a[long], b[long])})
    out.append({"claim": f"{name} meta-trained on {long} with truncated backprop is below "
                         f"{name} meta-trained with full backprop on {long} for as many "
                         f"lifetime steps, on {long} lifetimes",
                "verdict": aggregate.below(a[long], c[long])})
  for variant in dict.fromkeys(r["variant"] for r in rows):
    f, g = by[("flp3", variant)], by[("grad3", variant)]
    out.append({"claim": f"FLP (3) below gradient-based (3) on {long} lifetimes, both "
                         f"meta-trained with {variant}",
                "verdict": aggregate.below(f[long], g[long])})
  return out


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  errors.quiet_libraries()
  bad = [p for p in _PARTS.value if p not in ("memory", "train", "claims")]
  if bad:
    sys.exit(f"error: --parts={','.join(bad)}: expected some of memory, train, claims")
  bad = [s for s in _MEMORY_SCALES.value if s not in ("mini", "paper")]
  if bad:
    sys.exit(f"error: --memory_scales={','.join(bad)}: expected some of mini, paper")
  try:
    factors = [int(k) for k in _MEMORY_FACTORS.value]
    if not factors or min(factors) < 1:
      raise ValueError
  except ValueError:
    sys.exit(f"error: --memory_factors={','.join(_MEMORY_FACTORS.value)}: expected "
             "integers >= 1")
  out = {}
  if os.path.isfile(_OUTPUT.value):  # one part at a time keeps the other's results
    with open(_OUTPUT.value) as f:
      out = json.load(f)
  if {"memory", "train"} & set(_PARTS.value):  # what produced the numbers
    out.update(device=metrics.device_name(), command="python " + " ".join(
        [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]))
  try:
    if "memory" in _PARTS.value:
      out["memory"] = memory_curve(factors, _MEMORY_SCALES.value)
      metrics.write_json(_OUTPUT.value, out)
    if "train" in _PARTS.value:
      out["train"] = train_part(_FACTOR.value)
    elif "claims" in _PARTS.value:
      if "train" not in out:
        sys.exit(f"error: --parts=claims: {_OUTPUT.value} has no train part yet")
      out["train"]["claims"] = claims(out["train"]["rows"], out["train"]["factor"])
  except (config_lib.ConfigError, train.WorkdirError) as e:
    sys.exit(f"error: {str(e).splitlines()[0]}")
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  metrics.write_json(_OUTPUT.value, out)
  for c in out.get("train", {}).get("claims", []):
    print(f"{c['claim']}: {c['verdict']}")


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
