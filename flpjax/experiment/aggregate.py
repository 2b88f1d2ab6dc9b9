"""A config's meta-test results: each run evaluated, then the mean and standard error across
runs; claims decided at 2 standard errors over independently meta-trained networks."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from flpjax import evaluate as evaluate_lib
from flpjax.config import build
from flpjax.reporting import statistics


def evaluate_params(config, params, lifetimes: int | None = None, *,
                    validation: bool = False) -> dict[str, Any]:
  """Meta-test results of ``params`` under ``config.eval``.

  With ``config.runs > 1`` (``params`` with a leading run axis) every run is
  evaluated on the same lifetimes; the headline metric is then the mean over
  runs with the standard error *across runs* (the paper's convention: 2 or 5
  independently meta-trained networks), and ``'runs'`` lists each run's own
  results. With ``validation``, lifetimes come from `config.make_validation_task`
  and ``eval.validation_seed`` instead of the meta-test classes.
  """
  if config.runs > 1:
    per_run = [_evaluate_one(run_config(config, r), jax.tree.map(lambda a, r=r: a[r], params),
                             lifetimes, validation) for r in range(config.runs)]
    if config.get("run_orders"):
      for r, order in zip(per_run, config.run_orders):
        r["order"] = order
    return aggregate(per_run)
  return _evaluate_one(config, params, lifetimes, validation)


def run_config(config, r: int):
  """The config of run ``r`` of a multi-run ``config`` alone: ``runs=1``, ``seed + r``,
  its stream order (``run_orders[r]``) and its swept rate (``sweep.lrs[r]``); ``config``
  itself when it has one run. Evaluating or exporting one network uses it."""
  if config.runs == 1:
    return config
  one = config.copy_and_resolve_references()
  one.runs, one.seed = 1, config.seed + r
  if config.get("run_orders"):
    one.order, one.run_orders = config.run_orders[r], ()
  if config.sweep.lrs:
    one.meta.lr[config.sweep.group], one.sweep.lrs = config.sweep.lrs[r], ()
  return one


def split_by_order(result: dict) -> dict[str, dict]:
  """``{order: result}``: the results of a ``config.run_orders`` job (`evaluate_params`)
  aggregated over the runs of each order, as if each order's runs were one job."""
  orders = [r.get("order") for r in result["runs"]]
  out = {}
  curve = result.get("curve")
  for order in dict.fromkeys(orders):
    runs = [r for r, o in zip(result["runs"], orders) if o == order]
    out[order] = aggregate(runs) if len(runs) > 1 else dict(runs[0], runs=runs, n_runs=1)
    if curve:
      out[order]["curve"] = dict(curve, networks=[n for n, o in zip(curve["networks"], orders)
                                                  if o == order])
  return out


def _evaluate_one(config, params, lifetimes, validation) -> dict[str, Any]:
  key = jax.random.key(config.eval.validation_seed if validation else config.eval.seed)
  lifetimes = lifetimes or config.eval.lifetimes
  own = build.own_evaluation(config)
  if own is not None and not validation:  # e.g. OML's evaluation rule (docs/fidelity.md OML 5)
    return own(config, params, lifetimes)
  learner = build.make_learner(config)
  task = (build.make_validation_task(config) if validation
          else build.make_tasks(config)[1])
  return evaluate_lib.evaluate(learner, task, params, key, lifetimes=lifetimes,
                               batch=config.eval.batch)


def no_learning(config, lifetimes: int | None = None) -> dict[str, dict]:
  """The no-learning baselines (`flpjax.baselines`) of ``config``'s meta-test task, on the
  lifetimes `evaluate_params` draws (``eval.seed``, ``eval.lifetimes``)."""
  from flpjax import baselines  # pylint: disable=g-import-not-at-top
  c = run_config(config, 0)
  task = build.make_tasks(c)[1]
  ways = c.fewshot.ways if task.output == "classification" else None
  return baselines.no_learning(task, jax.random.key(c.eval.seed), lifetimes or c.eval.lifetimes,
                               ways=ways, batch=c.eval.batch)


def make_curve(config) -> Callable[[Any], dict[str, Any]]:
  """``curve(params) -> {'metric', 'networks'}``: each network's mean meta-test metric
  (``'mse'`` or ``'error'``) over the first ``eval.curve_lifetimes`` meta-test lifetimes
  (those `evaluate_params` starts with), for a learning curve.

  The lifetimes' programs are compiled once (one per stream order) and reused at
  every point of the curve. Estimators with an evaluation of their own (OML) go
  through it (`evaluate_params`).
  """
  n = int(config.eval.curve_lifetimes)
  batch = min(int(config.eval.batch), n)
  own = build.own_evaluation(config)
  compiled = {}

  def one_network(c, params):
    if own is not None:
      r = _evaluate_one(c, params, n, False)
      return {k: np.asarray(r["per_lifetime"][k]) for k in r["per_lifetime"]}
    if c.order not in compiled:
      learner = build.make_learner(c)
      task = build.make_tasks(c)[1]
      run = jax.jit(jax.vmap(evaluate_lib.make_lifetime_metrics(learner, task), (None, 0, None)))
      compiled[c.order] = (run, task.data)
    run, data = compiled[c.order]
    keys = jax.random.split(jax.random.key(c.eval.seed), n)
    outs = [jax.device_get(run(params, keys[i:i + batch], data)) for i in range(0, n, batch)]
    return {k: np.concatenate([o[k] for o in outs])[:n] for k in outs[0]}

  def curve(params) -> dict[str, Any]:
    runs = int(config.runs)
    values = []
    for r in range(runs):
      p = jax.tree.map(lambda a, r=r: a[r], params) if runs > 1 else params
      out = one_network(run_config(config, r), p)
      metric = "mse" if "mse" in out else "error"
      values.append(float(np.mean(out[metric])))
    return {"metric": metric, "networks": values}

  return curve


def curve_from_metrics(records: list[dict]) -> dict[str, Any] | None:
  """The learning curve of a run from its ``metrics.jsonl`` records (kind ``'curve'``):
  ``{'metric', 'split', 'step': [..], 'networks': [[value per step] per network]}``."""
  points = {r["step"]: r for r in records if r.get("kind") == "curve"}  # a resume rewrites
  if not points:
    return None
  steps = sorted(points)
  per_step = [points[s]["networks"] for s in steps]
  return {"metric": points[steps[0]]["metric"],
          "split": f"meta-test (the first {points[steps[0]].get('lifetimes', '?')} lifetimes)",
          "step": steps,
          "networks": [[float(v[i]) for v in per_step] for i in range(len(per_step[0]))]}


def aggregate(per_run: list[dict]) -> dict[str, Any]:
  """Mean and standard error across runs of each run's mean metric."""
  # Each run keeps its per-lifetime values (paired tests against the no-learning
  # baselines on the same lifetimes, `statistics.learns_per_network`).
  out = {"runs": [dict(r) for r in per_run],
         "lifetimes": per_run[0]["lifetimes"], "n_runs": len(per_run),
         "nonfinite_lifetimes": sum(r.get("nonfinite_lifetimes", 0) for r in per_run)}
  for name in ("mse", "accuracy", "error", "loss"):
    if name in per_run[0]:
      values = np.asarray([r[name] for r in per_run], np.float64)
      out[name] = float(values.mean())
      out[f"{name}_stderr"] = float(values.std(ddof=1) / np.sqrt(len(values)))
  return out


def headline(result: dict) -> str:
  if "mse" in result:
    return f"mse {result['mse']:.4g} (se {result['mse_stderr']:.2g})"
  return f"error {100 * result['error']:.2f}% (se {100 * result['error_stderr']:.2g})"


def results_table(rows: list[tuple[str, dict]]) -> str:
  """A small Markdown table of evaluation results."""
  metric = "mse" if "mse" in rows[0][1] else "error"
  scale = 1.0 if metric == "mse" else 100.0
  name = "meta-test MSE" if metric == "mse" else "meta-test error (%)"
  lines = [f"| | {name} | std. error | lifetimes |", "|---|---|---|---|"]
  for label, r in rows:
    lines.append(f"| {label} | {scale * r[metric]:.4g} | {scale * r[metric + '_stderr']:.2g}"
                 f" | {r['lifetimes']} |")
  return "\n".join(lines)


def scalars(result: dict) -> dict:
  return {k: v for k, v in result.items() if k not in ("per_lifetime", "runs", "sweep")}


def per_network(result: dict, metric: str = "mse") -> list[float]:
  """Each network's mean ``metric`` from `evaluate_params`' result (one run or several),
  NaN for a diverged network (`statistics.network_values`): `over_networks`' input."""
  return statistics.network_values(result, metric)[0]


# The statistics over networks and the claim decision live in `flpjax.reporting.statistics`, the one place.
over_networks, below = statistics.over_networks, statistics.below
