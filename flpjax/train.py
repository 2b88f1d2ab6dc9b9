"""Meta-training and evaluation of one configuration, resumable.

`train_and_evaluate(config, workdir)` is the whole job: validate the config,
restore the latest checkpoint of ``workdir`` if there is one, meta-train to
``config.meta.steps``, evaluate on fresh lifetimes and write the results.
The randomness of meta-step ``s`` is ``fold_in(key(seed), s)``, so a resumed
run takes exactly the steps an uninterrupted one takes.

Workdir layout::

  config.json             the config of the run
  checkpoints/<step>/     orbax checkpoints (meta-parameters, optimizer state, step)
  metrics.jsonl           one JSON line per logged train step and per evaluation
  tensorboard/            the same scalars as TensorBoard events
  eval.json               the final meta-test results
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from flpjax import config as config_lib
from flpjax import evaluate as evaluate_lib
from flpjax import meta
from flpjax import summary


class WorkdirError(ValueError):
  """The workdir cannot be created or written."""


class NonFiniteError(RuntimeError):
  """Too many meta-steps in a row had a non-finite loss or gradient."""


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that it is writable."""
  if not workdir:
    raise WorkdirError("--workdir is empty: expected a directory to write checkpoints and metrics")
  workdir = os.path.abspath(os.path.expanduser(workdir))
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: cannot create it ({e.strerror})") from None
  if not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir}: exists and is not a directory")
  probe = os.path.join(workdir, ".write_test")
  try:
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: not writable ({e.strerror})") from None
  return workdir


def checkpoint_manager(workdir: str, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(workdir, "checkpoints"),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=not read_only, read_only=read_only,
          enable_async_checkpointing=False))


def _all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating))


def restore_params(workdir: str, config, step: int | None = None):
  """Meta-parameters of the latest (or given) checkpoint of a run."""
  learner = config_lib.make_learner(config)
  abstract = jax.eval_shape(learner.init_params, jax.random.key(0))
  mngr = checkpoint_manager(workdir, read_only=True)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
  optimizer = meta.make_optimizer(config_lib.meta_lrs(config), learner)
  abstract_state = jax.eval_shape(lambda p: meta.init_state(learner, optimizer, jax.random.key(0), p),
                                  abstract)
  state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  return state.params, int(state.step)


def _initial_params(config, learner):
  params = learner.init_params(jax.random.key(config.seed))
  if config.init_ff_from:
    source = json.load(open(os.path.join(config.init_ff_from, "config.json")))
    import ml_collections  # pylint: disable=g-import-not-at-top
    other, _ = restore_params(config.init_ff_from, ml_collections.ConfigDict(source))
    shapes = jax.tree.map(jnp.shape, params["ff"]), jax.tree.map(jnp.shape, other["ff"])
    if shapes[0] != shapes[1]:
      raise config_lib.ConfigError(
          f"config.init_ff_from={config.init_ff_from!r}: its network does not match this one")
    params["ff"] = other["ff"]
    logging.info("feed-forward initialisation from %s", config.init_ff_from)
  return params


def evaluate_params(config, params, lifetimes: int | None = None) -> dict[str, Any]:
  """Meta-test results of ``params`` under ``config.eval``."""
  learner = config_lib.make_learner(config)
  _, eval_task = config_lib.make_tasks(config)
  return evaluate_lib.evaluate(
      learner, eval_task, params, jax.random.key(config.eval.seed),
      lifetimes=lifetimes or config.eval.lifetimes, batch=config.eval.batch)


def _headline(result: dict) -> str:
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


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Meta-trains ``config`` in ``workdir`` (resuming if possible) and evaluates it.

  Args:
    config: an `ml_collections.ConfigDict` (see `config.base_config`).
    workdir: where checkpoints, metrics and results go.

  Returns:
    The final evaluation results (also written to ``workdir/eval.json``).

  Raises:
    ConfigError, WorkdirError: bad inputs, before anything is compiled.
    NonFiniteError: ``config.meta.max_nonfinite`` non-finite meta-steps in a row.
  """
  config_lib.validate(config)
  workdir = prepare_workdir(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))

  learner = config_lib.make_learner(config)
  train_task, _ = config_lib.make_tasks(config)
  optimizer = meta.make_optimizer(config_lib.meta_lrs(config), learner)
  mngr = checkpoint_manager(workdir, config.keep_checkpoints)
  writer = summary.MetricWriter(workdir)

  start = mngr.latest_step()
  if start is not None:
    params = jax.eval_shape(learner.init_params, jax.random.key(0))
    abstract = jax.eval_shape(lambda p: meta.init_state(learner, optimizer, jax.random.key(0), p),
                              params)
    state = mngr.restore(start, args=ocp.args.StandardRestore(abstract))
    writer.truncate_after(start)
    logging.info("resumed from step %d of %s", start, workdir)
  else:
    start = 0
    state = meta.init_state(learner, optimizer, jax.random.key(config.seed),
                            _initial_params(config, learner))
    writer.truncate_after(-1)

  results = []
  if config.eval.at_start and start == 0:
    r = evaluate_params(config, state.params)
    writer.write(0, "eval", {k: v for k, v in r.items() if k != "per_lifetime"})
    results.append(("before meta-training (step 0)", r))
    logging.info("evaluation at step 0: %s", _headline(r))

  meta_step = meta.make_meta_step(
      learner, train_task, optimizer, meta_batch=config.meta.batch_size,
      remat=config.meta.remat, chunk=config.meta.chunk or None)
  base_key = jax.random.key(config.seed)
  progress = summary.Progress("meta-step", start, config.meta.steps)
  last_saved = start
  step_times = []
  for step in range(start, config.meta.steps):
    t0 = time.perf_counter()
    state, metrics = meta_step(state, jax.random.fold_in(base_key, step), train_task.data)
    metrics = jax.device_get(metrics)
    step_times.append(time.perf_counter() - t0)
    done = step + 1
    if step == start:
      progress.mark(done)
    if not metrics["finite"]:
      logging.warning("meta-step %d: non-finite meta-loss or gradient (loss %s); skipped "
                      "(%d in a row, %d in all)", done, metrics["loss"],
                      metrics["nonfinite_in_row"], metrics["nonfinite_total"])
      writer.write(done, "nonfinite", {"loss": metrics["loss"],
                                       "in_row": metrics["nonfinite_in_row"],
                                       "total": metrics["nonfinite_total"]})
      if metrics["nonfinite_in_row"] >= config.meta.max_nonfinite:
        writer.close()
        saved = (f"The last good checkpoint (step {last_saved}) is intact in {workdir}."
                 if mngr.latest_step() is not None else "No checkpoint had been written yet.")
        raise NonFiniteError(
            f"{int(metrics['nonfinite_in_row'])} meta-steps in a row (up to step {done}) had a "
            f"non-finite loss or gradient (config.meta.max_nonfinite={config.meta.max_nonfinite});"
            f" stopped. {saved}")
    if done % config.log_every == 0 or done == config.meta.steps:
      writer.write(done, "train", {
          "loss": metrics["loss"], "grad_norm": metrics["grad_norm"],
          "skipped_total": metrics["nonfinite_total"],
          "step_time_s": float(np.median(step_times))})
      progress.update(done, f"loss {float(metrics['loss']):.4g}")
      step_times = []
    if done % config.checkpoint_every == 0 or done == config.meta.steps:
      if not _all_finite(state.params):  # never write a non-finite value
        raise NonFiniteError(f"meta-parameters became non-finite at step {done}; not saved")
      mngr.save(done, args=ocp.args.StandardSave(state))
      last_saved = done
  if mngr.latest_step() != int(state.step):  # e.g. meta.steps = 0: keep the initial state
    mngr.save(int(state.step), args=ocp.args.StandardSave(state))
  mngr.wait_until_finished()

  final = evaluate_params(config, state.params)
  writer.write(int(state.step), "eval", {k: v for k, v in final.items() if k != "per_lifetime"})
  writer.close()
  final.update({"step": int(state.step), "device": jax.devices()[0].device_kind})
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(final, f, indent=1)
  results.append((f"after {int(state.step)} meta-steps", final))
  logging.info("evaluation at step %d: %s", int(state.step), _headline(final))
  print(results_table(results), flush=True)
  return final
