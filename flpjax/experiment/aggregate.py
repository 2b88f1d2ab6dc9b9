"""A config's meta-test results: each run evaluated, then the mean and standard error across
runs; claims decided at 2 standard errors over independently meta-trained networks."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from flpjax import config as config_lib
from flpjax import evaluate as evaluate_lib

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
  for order in dict.fromkeys(orders):
    runs = [r for r, o in zip(result["runs"], orders) if o == order]
    out[order] = aggregate(runs) if len(runs) > 1 else dict(runs[0], runs=runs, n_runs=1)
  return out


def _evaluate_one(config, params, lifetimes, validation) -> dict[str, Any]:
  key = jax.random.key(config.eval.validation_seed if validation else config.eval.seed)
  lifetimes = lifetimes or config.eval.lifetimes
  own = config_lib.ESTIMATORS[config.estimator].evaluate
  if own is not None and not validation:  # e.g. OML's evaluation rule (REFERENCE-OML 5)
    return own(config, params, lifetimes)
  learner = config_lib.make_learner(config)
  task = (config_lib.make_validation_task(config) if validation
          else config_lib.make_tasks(config)[1])
  return evaluate_lib.evaluate(learner, task, params, key, lifetimes=lifetimes,
                               batch=config.eval.batch)


def aggregate(per_run: list[dict]) -> dict[str, Any]:
  """Mean and standard error across runs of each run's mean metric."""
  out = {"runs": [{k: v for k, v in r.items() if k != "per_lifetime"} for r in per_run],
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
  NaN for a network with any diverged (non-finite) lifetime: `over_networks`' input."""
  runs = result.get("runs", [result])
  return [float(r[metric]) if not r.get("nonfinite_lifetimes") else float("nan") for r in runs]


def over_networks(values) -> dict[str, Any]:
  """Mean and standard error of one value per independently meta-trained network.

  Non-finite values (a network whose meta-training or lifetimes diverged) and None
  are left out of the mean and counted in ``diverged``; ``stderr`` is None with fewer
  than 2 finite values.
  """
  finite = [float(x) for x in values if x is not None and math.isfinite(x)]
  v = np.asarray(finite, np.float64)
  return {"mean": float(v.mean()) if len(v) else None,
          "stderr": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None,
          "networks": len(finite), "diverged": len(list(values)) - len(finite)}


def below(a: dict, b: dict) -> str:
  """The claim "a's mean is below b's": ``'holds'`` when the gap exceeds 2 standard
  errors of the gap (``hypot`` of the two standard errors), else ``'fails'``; also
  ``'fails'`` (with the reason) when a side has fewer than 2 finite networks, since
  the claim cannot be shown at 2 standard errors over networks."""
  if None in (a.get("mean"), b.get("mean"), a.get("stderr"), b.get("stderr")):
    return "fails (fewer than 2 finite networks on a side: not shown at 2 standard errors)"
  return "holds" if b["mean"] - a["mean"] > 2 * math.hypot(a["stderr"], b["stderr"]) else "fails"
