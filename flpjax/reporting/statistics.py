"""The one rule for a diverged network, for statistics over networks and for a claim's verdict.

Every script that reports a cell or decides a claim calls these (the
reproduction job, the figures, the beyond-the-paper experiments):

* **Diverged network** (`network_values`): a network whose meta-training was
  stopped for too many non-finite meta-steps (``meta.max_nonfinite_total``),
  whose mean meta-test metric is not finite (some test lifetime diverged), or above
  ``DIVERGED_FACTOR`` (10) times the no-learning level of its task
  (`flpjax.baselines`). It is counted and named, never averaged in.
* **Statistics over networks** (`over_networks`): mean and standard error
  (``std(ddof=1) / sqrt(n)``) of one value per independently meta-trained
  network, diverged ones left out and counted.
* **below** (`below`): ``a``'s mean is below ``b``'s by more than 2 standard
  errors of the difference (``hypot`` of the two standard errors), each side
  with at least 2 finite networks.
* **comparable** (`comparable`): an equivalence test: the 2-standard-error
  interval of ``a - b`` lies within ``+- margin`` times the better (lower)
  mean (``COMPARABLE_MARGIN`` = 25%).
* **learns** (`learns`): a cell is below its no-learning baseline by 2
  standard errors (the cell's over networks and the baseline's over lifetimes,
  combined). A claim whose control does not learn reads ``fails`` with the
  reason ``control did not learn``.

`decide` turns one claim into the record `results/claims.json` holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: A network above this many times its task's no-learning level counts as diverged.
DIVERGED_FACTOR = 10.0
#: ``comparable``: the difference's 2-standard-error interval within this fraction of
#: the better mean.
COMPARABLE_MARGIN = 0.25
#: Standard errors a difference must exceed (``below``, ``learns``).
Z = 2.0


def network_values(result: dict, metric: str, no_learning: float | None = None
                   ) -> tuple[list[float], list[dict]]:
  """Each network's mean ``metric`` and the diverged ones.

  Args:
    result: `aggregate.evaluate_params`' result (one network or ``'runs'``).
    metric: ``'mse'`` or ``'error'``.
    no_learning: the task's no-learning level (e.g. the family-mean MSE, or
      chance error), or None (then only non-finite networks diverge).

  Returns:
    ``(values, diverged)``: ``values[i]`` is network ``i``'s mean, NaN when it
    diverged; ``diverged`` lists ``{'network', 'seed', 'value', 'why'}``.
  """
  runs = result.get("runs", [result])
  values, diverged = [], []
  for i, r in enumerate(runs):
    value = float(r[metric]) if r.get(metric) is not None else float("nan")
    bad = int(r.get("nonfinite_lifetimes", 0) or 0)
    why = r.get("stopped")  # meta-training stopped for too many non-finite steps
    if why:
      pass
    elif bad or not math.isfinite(value):
      why = f"{bad} of {r.get('lifetimes', '?')} test lifetimes not finite"
    elif no_learning is not None and value > DIVERGED_FACTOR * no_learning:
      why = (f"{metric} {value:.4g} above {DIVERGED_FACTOR:g}x the no-learning level "
             f"{no_learning:.4g}")
    if why:
      diverged.append({"network": i, "seed": r.get("seed"), "value": value, "why": why})
      values.append(float("nan"))
    else:
      values.append(value)
  return values, diverged


def over_networks(values: Sequence[float | None]) -> dict[str, Any]:
  """Mean and standard error of one value per independently meta-trained network.

  Non-finite values (diverged networks) and None are left out of the mean and
  counted in ``diverged``; ``stderr`` is None with fewer than 2 finite values.
  """
  values = list(values)
  finite = [float(x) for x in values if x is not None and math.isfinite(x)]
  v = np.asarray(finite, np.float64)
  return {"mean": float(v.mean()) if len(v) else None,
          "stderr": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None,
          "networks": len(finite), "diverged": len(values) - len(finite)}


def _missing(a: dict, b: dict) -> str | None:
  if None in (a.get("mean"), b.get("mean"), a.get("stderr"), b.get("stderr")):
    return "fewer than 2 finite networks on a side: not shown at 2 standard errors"
  return None


def below(a: dict, b: dict) -> str:
  """``'holds'`` when ``a``'s mean is below ``b``'s by more than 2 standard errors of the
  difference, else ``'fails'`` (with the reason when a side lacks 2 finite networks)."""
  missing = _missing(a, b)
  if missing:
    return f"fails ({missing})"
  return "holds" if b["mean"] - a["mean"] > Z * math.hypot(a["stderr"], b["stderr"]) else "fails"


def comparable(a: dict, b: dict, margin: float = COMPARABLE_MARGIN) -> str:
  """``'holds'`` when ``a - b``'s 2-standard-error interval lies within ``+- margin``
  times the better (lower) mean; else ``'fails'``."""
  missing = _missing(a, b)
  if missing:
    return f"fails ({missing})"
  diff, se = a["mean"] - b["mean"], math.hypot(a["stderr"], b["stderr"])
  bound = margin * min(a["mean"], b["mean"])
  return "holds" if abs(diff) + Z * se <= bound else "fails"


def learns(cell: dict, baseline: dict | None) -> bool:
  """Whether ``cell`` (mean, stderr over networks) is below ``baseline`` (mean, stderr
  over lifetimes) by 2 standard errors. False without a baseline or 2 finite networks."""
  if not baseline or cell.get("mean") is None or cell.get("stderr") is None:
    return False
  se = math.hypot(cell["stderr"], baseline.get("stderr") or 0.0)
  return baseline["mean"] - cell["mean"] > Z * se


def learns_per_network(per_lifetime: Sequence[float], baseline: Sequence[float]) -> bool:
  """One network below the baseline by 2 standard errors of the paired per-lifetime
  difference (the same lifetimes)."""
  d = np.asarray(baseline, np.float64) - np.asarray(per_lifetime, np.float64)
  if len(d) < 2 or not np.all(np.isfinite(d)):
    return False
  return float(d.mean()) > Z * float(d.std(ddof=1) / math.sqrt(len(d)))


def decide(claim_id: str, text: str, kind: str, a: dict | None, b: dict | None, *,
           scale: str, controls: Sequence[tuple[str, dict | None, dict | None]] = (),
           panel: str | None = None, margin: float = COMPARABLE_MARGIN) -> dict[str, Any]:
  """One claim's record for ``results/claims.json``.

  Args:
    claim_id: a short stable name.
    text: the claim as the paper makes it.
    kind: ``'below'`` (a below b) or ``'comparable'``.
    a, b: the two sides' statistics over networks (`over_networks`), or None
      when the cell has no result.
    scale: ``'mini'``, ``'reduced'`` or ``'paper'``.
    controls: ``(name, cell statistics, no-learning baseline)`` of every cell
      that must learn for the claim to be decided (the control, or both sides of
      a comparison).
    panel: the figure or table the claim belongs to.
    margin: ``comparable``'s margin.

  Returns:
    ``{'id', 'scale', 'claim', 'kind', 'a', 'b', 'se_a', 'se_b', 'networks_a',
    'networks_b', 'diverged_a', 'diverged_b', 'verdict', 'reason', 'panel'}``.
  """
  a, b = a or {}, b or {}
  record = {"id": claim_id, "scale": scale, "claim": text, "kind": kind,
            "a": a.get("mean"), "b": b.get("mean"), "se_a": a.get("stderr"),
            "se_b": b.get("stderr"), "networks_a": a.get("networks"),
            "networks_b": b.get("networks"), "diverged_a": a.get("diverged"),
            "diverged_b": b.get("diverged"), "panel": panel}
  if kind == "comparable":
    record["margin"] = margin
  if not a or not b:
    return {**record, "verdict": "fails", "reason": "not run"}
  for name, cell, baseline in controls:
    if not learns(cell or {}, baseline):
      level = f" ({baseline['mean']:.4g})" if baseline else " (no baseline recorded)"
      return {**record, "verdict": "fails",
              "reason": f"control did not learn: {name} not below its no-learning level{level} "
                        "by 2 standard errors"}
  verdict = below(a, b) if kind == "below" else comparable(a, b, margin)
  if verdict.startswith("fails ("):
    return {**record, "verdict": "fails", "reason": verdict[len("fails ("):-1]}
  se = math.hypot(a["stderr"], b["stderr"])
  diff = b["mean"] - a["mean"]
  if kind == "below":
    reason = f"difference {diff:.4g} = {diff / se:.1f} standard errors" if se else ""
  else:
    reason = (f"|a - b| + 2 se = {abs(diff) + Z * se:.4g} vs margin "
              f"{margin:g} x {min(a['mean'], b['mean']):.4g}")
  return {**record, "verdict": verdict, "reason": reason}
