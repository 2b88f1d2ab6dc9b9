"""The meta-training loop: meta-steps, metrics windows, non-finite steps, checkpoints.

Everything random about meta-step ``s`` comes from ``fold_in(key(seed), s)``
(the episode it samples, and so the data it reads), so the PRNG state and
the data position of a run are its step: a resumed run takes exactly the
steps, and writes exactly the metrics, of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from flpjax import meta, parallel
from flpjax.experiment import checkpoints
from flpjax.experiment.warmstart import initial_state
from flpjax.experiment.workdir import RESUMABLE_FIELDS, changed_fields
from flpjax.reporting.errors import NonFiniteError, WorkdirError
from flpjax.reporting.progress import Progress


@dataclasses.dataclass
class Window:
  """Per-run sums over the finite meta-steps since the last train record (saved with checkpoints)."""

  steps: list
  loss_sum: list
  grad_norm_sum: list

  @classmethod
  def empty(cls, runs: int) -> "Window":
    return cls([0] * runs, [0.0] * runs, [0.0] * runs)

  @classmethod
  def restore(cls, saved: dict, runs: int) -> "Window":
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * runs  # format 1
    return cls(*(as_list(saved[k]) for k in ("steps", "loss_sum", "grad_norm_sum")))

  def add(self, metrics: dict) -> None:
    """Adds the finite runs of one meta-step (metrics arrays of shape (runs,))."""
    for r, ok in enumerate(metrics["finite"]):
      if ok:
        self.steps[r] += 1
        self.loss_sum[r] += float(metrics["loss"][r])
        self.grad_norm_sum[r] += float(metrics["grad_norm"][r])

  def means(self) -> dict[str, Any]:
    """Means over the window: scalars for one run, the mean over runs plus per-run lists."""
    n = np.asarray(self.steps, np.float64)
    n = np.where(n > 0, n, np.nan)
    loss = np.asarray(self.loss_sum) / n
    grad = np.asarray(self.grad_norm_sum) / n
    if len(n) == 1:
      return {"loss": float(loss[0]), "grad_norm": float(grad[0])}
    with np.errstate(all="ignore"):
      return {"loss": float(np.nanmean(loss)), "grad_norm": float(np.nanmean(grad)),
              "loss_runs": loss.tolist(), "grad_norm_runs": grad.tolist()}


def _run_metadata(config, step: int, window: Window) -> dict:
  return {"format": 1, "step": step, "seed": config.seed,
          "rng": "meta-step s uses fold_in(key(seed), s); its episode is drawn from that key",
          "data_position": step, "window": dataclasses.asdict(window),
          "config": json.loads(config.to_json_best_effort())}


def open_run(mngr: ocp.CheckpointManager, config, workdir: str, learner, optimizer, estimator):
  """``(state, window, start)``: the newest good checkpoint's, or fresh ones (start None).

  A latest checkpoint that cannot be restored is set aside with a warning and
  the run resumes from the newest one that can (`checkpoints.restore_latest`).
  """

  def same_run(run, step):
    changed = changed_fields(run.get("config", {}), config)
    if changed:
      listed = "; ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4
                                         else "")
      raise WorkdirError(
          f"--workdir={workdir}: its checkpoint (step {step}) is of another run: {listed}; "
          f"resume with the run's config (only {', '.join(RESUMABLE_FIELDS)} may change) or "
          "use a new --workdir")

  start, run, state = checkpoints.restore_latest(mngr, config, estimator, check=same_run)
  if start is None:
    return (initial_state(config, learner, optimizer, estimator), Window.empty(config.runs),
            None)
  if config.runs > 1:
    state = parallel.shard_runs(state)
  logging.info("resumed from step %d of %s", start, workdir)
  if start > config.meta.steps:
    logging.warning("the checkpoint's step %d is beyond config.meta.steps=%d: evaluating it",
                    start, config.meta.steps)
  return state, Window.restore(run["window"], config.runs), start


def train(config, workdir, task, estimator, optimizer, mngr, writer, state, window, start,
          curve=None, step_options=None):
  """The meta-training loop from step ``start``; returns the final state.

  ``curve`` (`aggregate.make_curve`): called every ``config.eval.curve_every``
  meta-steps (and at step 0), its values written as ``'curve'`` records. A run
  with ``config.meta.max_nonfinite_total`` skipped (non-finite) meta-steps in all
  is stopped: it stays at its last good meta-parameters, a ``'stopped'`` record
  names it, and its result counts as diverged; when every run has stopped the
  job ends with `NonFiniteError`. ``step_options`` (`config.step_options`): keyword
  arguments of the meta-step, ``on_nonfinite`` (what a skipped step does to a run's
  meta-parameters) and ``max_loss`` (a loss above it counts as a skipped step); None: none.
  """
  runs = config.runs
  every = int(config.eval.get("curve_every", 0) or 0)

  def record_curve(done):
    values = curve(state.params)
    writer.write(done, "curve", dict(values, lifetimes=int(config.eval.curve_lifetimes)))

  if curve is not None and every and start == 0:
    record_curve(0)
  step_options = step_options or {}
  bound = step_options.get("max_loss")  # the bound in force, if any, for the log line
  skipped_why = ("non-finite meta-loss or gradient" if not bound else
                 f"non-finite meta-loss or gradient, or loss above config.meta.max_loss={bound:g}")
  if runs == 1:
    meta_step = meta.make_meta_step(estimator, optimizer, **step_options)
  else:  # one vmapped program over the runs (sharded over devices by shard_runs)
    meta_step = meta.make_runs_meta_step(estimator, optimizer, task.data_axes, **step_options)
  keys = checkpoints.run_keys(config) if runs > 1 else jax.random.key(config.seed)
  failed, stopped = set(), set()
  progress = Progress("meta-step", start, config.meta.steps)
  step_times = []

  def save(done):
    if not checkpoints.all_finite(state):  # never write a non-finite value
      raise NonFiniteError(
          f"the meta-parameters or optimizer state became non-finite at step {done}; not "
          f"saved. {_last_good(mngr, workdir)}")
    items = {"state": ocp.args.StandardSave(checkpoints.Checkpointed(*state[:3])),
             "run": ocp.args.JsonSave(_run_metadata(config, done, window))}
    if jax.tree.leaves(state.estimator):
      items["estimator"] = ocp.args.StandardSave(state.estimator)
    mngr.save(done, args=ocp.args.Composite(**items))

  for step in range(start, config.meta.steps):
    t0 = time.perf_counter()
    step_keys = (jax.vmap(jax.random.fold_in, (0, None))(keys, step) if runs > 1
                 else jax.random.fold_in(keys, step))
    state, metrics = meta_step(state, step_keys, task.data)
    metrics = {k: np.reshape(v, (runs,)) for k, v in jax.device_get(metrics).items()}
    step_times.append(time.perf_counter() - t0)
    done = step + 1
    if step == start:
      progress.mark(done)  # after compilation
    window.add(metrics)
    for r in np.flatnonzero(~metrics["finite"].astype(bool)):
      which = f"run {r}: " if runs > 1 else ""
      logging.warning("meta-step %d: %s%s (loss %s); skipped (%d in a row, %d in all)", done,
                      which, skipped_why, metrics["loss"][r], metrics["nonfinite_in_row"][r],
                      metrics["nonfinite_total"][r])
      record = {"loss": metrics["loss"][r], "in_row": metrics["nonfinite_in_row"][r],
                "total": metrics["nonfinite_total"][r]}
      writer.write(done, "nonfinite", dict(record, run=int(r)) if runs > 1 else record)
      total_limit = int(config.meta.get("max_nonfinite_total", 0) or 0)
      if total_limit and metrics["nonfinite_total"][r] >= total_limit and r not in stopped:
        stopped.add(r)
        failed.add(r)
        writer.write(done, "stopped", {"run": int(r), "nonfinite_total":
                                       int(metrics["nonfinite_total"][r])})
        if len(stopped) == runs:
          raise NonFiniteError(
              f"{int(metrics['nonfinite_total'][r])} meta-steps (up to step {done}) had a "
              f"non-finite loss or gradient (config.meta.max_nonfinite_total={total_limit})"
              f"{' in every run' if runs > 1 else ''}; stopped. {_last_good(mngr, workdir)}")
        logging.warning("run %d: %d non-finite meta-steps in all; stopped (it stays at its "
                        "last good parameters and counts as diverged)", r,
                        metrics["nonfinite_total"][r])
      if metrics["nonfinite_in_row"][r] >= config.meta.max_nonfinite and r not in failed:
        failed.add(r)
        if len(failed) == runs:
          raise NonFiniteError(
              f"{int(metrics['nonfinite_in_row'][r])} meta-steps in a row (up to step {done}) "
              f"had a non-finite loss or gradient (config.meta.max_nonfinite="
              f"{config.meta.max_nonfinite}){' in every run' if runs > 1 else ''}; stopped. "
              f"{_last_good(mngr, workdir)}")
        logging.warning("run %d: %d non-finite meta-steps in a row; it stays at its last good "
                        "parameters (its steps are skipped) while the other runs go on", r,
                        metrics["nonfinite_in_row"][r])
    if done % config.log_every == 0 or done == config.meta.steps:
      # The last step of a run off the log grid gets a record too; its window goes
      # on, so that a run extended from here records what an uninterrupted one does.
      means = window.means()
      skipped = (int(metrics["nonfinite_total"][0]) if runs == 1
                 else metrics["nonfinite_total"].astype(int).tolist())
      writer.write(done, "train", {**means, "skipped_total": skipped,
                                   "step_time_s": float(np.median(step_times))})
      progress.update(done, f"loss {means['loss']:.4g}")
      if done % config.log_every == 0:
        window, step_times = Window.empty(runs), []
    if curve is not None and every and (done % every == 0 or done == config.meta.steps):
      record_curve(done)
    if done % config.checkpoint_every == 0 or done == config.meta.steps:
      save(done)
  final_step = int(np.max(jax.device_get(state.step)))
  if mngr.latest_step() != final_step:  # e.g. meta.steps = 0: keep the initial state
    save(final_step)
  return state


def _last_good(mngr: ocp.CheckpointManager, workdir: str) -> str:
  last = mngr.latest_step()
  if last is None:
    return "No checkpoint had been written yet."
  return f"The last good checkpoint (step {last}) is intact in {workdir}."
