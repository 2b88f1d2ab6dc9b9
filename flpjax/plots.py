"""Learning curves of one or more workdirs, drawn to a PNG (``experiments/plot.py``)."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

from flpjax.experiment.errors import WorkdirError
from flpjax.experiment.metrics import read_metrics

def smooth(values: Sequence[float], weight: float) -> list[float]:
  """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped."""
  out, acc, norm = [], 0.0, 0.0
  for v in values:
    if math.isfinite(v):
      acc, norm = weight * acc + (1 - weight) * v, weight * norm + (1 - weight)
    out.append(acc / norm if norm > 0 else float("nan"))
  return out


def _float(v: Any) -> float:
  try:
    return float(v)
  except (TypeError, ValueError):
    return float("nan")


def plot_curves(workdirs: Sequence[str], output: str, metric: str = "loss",
                smoothing: float = 0.6) -> None:
  """Draws the learning curves of ``workdirs`` to the PNG file ``output``.

  Left: the train records' ``metric`` (the meta-loss by default) against the
  meta-step, raw (faint) and smoothed, on a log scale when it spans more than
  a decade, with skipped (non-finite) meta-steps marked. Right: the evaluation
  results (MSE or error, with standard errors) against the meta-step.

  Args:
    workdirs: run directories holding ``metrics.jsonl``.
    output: the PNG file to write.
    metric: a field of the train records.
    smoothing: weight of the moving average in [0, 1) (0: no smoothing).

  Raises:
    WorkdirError: a workdir has no metrics, or none has ``metric``; ``output``
      cannot be written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  if not 0 <= smoothing < 1:
    raise ValueError(f"smoothing={smoothing}: expected a number in [0, 1)")
  runs = [(os.path.basename(os.path.normpath(w)) or w, read_metrics(w)) for w in workdirs]
  if not any(r.get(metric) is not None for _, records in runs for r in records
             if r["kind"] == "train"):
    fields = sorted({k for _, records in runs for r in records if r["kind"] == "train"
                     for k in r} - {"step", "kind"})
    raise WorkdirError(f"--metric={metric}: no train record of {', '.join(workdirs)} has it"
                       f" (available: {', '.join(fields) or 'none yet'})")

  fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
  positive, spans = True, []
  for i, (label, records) in enumerate(runs):
    color = f"C{i % 10}"
    train = [(r["step"], _float(r.get(metric))) for r in records if r["kind"] == "train"]
    if train:
      steps, values = zip(*train)
      ax_train.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
      ax_train.plot(steps, smooth(values, smoothing), color=color, label=label)
      finite = [v for v in values if math.isfinite(v)]
      positive &= all(v > 0 for v in finite)
      spans += finite
    skipped = [r["step"] for r in records if r["kind"] == "nonfinite"]
    if skipped:
      ax_train.plot(skipped, [0] * len(skipped), "x", color=color,
                    transform=ax_train.get_xaxis_transform(), clip_on=False,
                    label=f"{label}: skipped steps")
    evals = [r for r in records if r["kind"] == "eval"]
    if evals:
      name = "mse" if "mse" in evals[0] else "error"
      ax_eval.errorbar([r["step"] for r in evals], [_float(r.get(name)) for r in evals],
                       yerr=[_float(r.get(f"{name}_stderr")) for r in evals], color=color,
                       marker="o", capsize=3, label=f"{label} ({name})")
  if positive and spans and max(spans) > 10 * min(spans):
    ax_train.set_yscale("log")
  ax_train.set(xlabel="meta-step", ylabel=metric, title=f"train: {metric}"
               + (f" (smoothed {smoothing})" if smoothing else ""))
  ax_train.legend(fontsize="small")
  ax_eval.set(xlabel="meta-step", ylabel="meta-test", title="evaluation (mean +- s.e.)")
  if ax_eval.has_data():
    ax_eval.legend(fontsize="small")
  else:
    ax_eval.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                 transform=ax_eval.transAxes)
  fig.tight_layout()
  try:
    fig.savefig(output, dpi=120)
  except OSError as e:
    raise WorkdirError(f"--output={output}: cannot write it ({e.strerror})") from None
  finally:
    plt.close(fig)
