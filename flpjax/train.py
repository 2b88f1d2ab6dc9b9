"""Meta-training and evaluation of one configuration, resumable.

`train_and_evaluate(config, workdir)` is the whole job: validate the config
and the workdir, restore the workdir's latest checkpoint if there is one,
meta-train to ``config.meta.steps``, evaluate on fresh lifetimes and write the
results.

Everything random about meta-step ``s`` comes from ``fold_in(key(seed), s)``
(the episode it samples, and so the data it reads), so the PRNG state and
the data position of a run are its step: a checkpoint holds the step, the
meta-parameters and the optimizer state (`meta.TrainState`, including the
non-finite counters of `optax.apply_if_finite`), plus a small JSON item with
the seed, the step, the config and the running sums of the current metrics
window. A resumed run therefore takes exactly the steps, and writes exactly
the metrics, of an uninterrupted one. It must keep every config field that
changes the run; only `RESUMABLE_FIELDS` may differ.

Checkpoints are written by orbax into a temporary directory renamed into
place, so a process killed at any moment leaves the previous or the new
checkpoint, never a broken one; leftover temporary directories are removed
when the next run opens the workdir.

Workdir layout::

  config.json             the config of the latest invocation
  checkpoints/<step>/     orbax checkpoints: state/ (TrainState), run/ (JSON)
  metrics.jsonl           one JSON line per train record, skipped step and evaluation
  tensorboard/            the same scalars as TensorBoard events
  eval.json               the final meta-test results
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from flpjax import config as config_lib
from flpjax import evaluate as evaluate_lib
from flpjax import meta
from flpjax import summary
from flpjax.datasets import DataError
from flpjax.summary import WorkdirError

#: Config fields that may change when a run is resumed: they decide how long
#: it runs, what it records and how it is evaluated, not the meta-parameters
#: its steps compute (``meta.remat`` and ``meta.chunk`` trade memory for time
#: and compute the same maths).
RESUMABLE_FIELDS = ("meta.steps", "meta.max_nonfinite", "meta.remat", "meta.chunk",
                    "log_every", "checkpoint_every", "keep_checkpoints", "eval",
                    "fewshot.data_dir")

#: Errors caused by the inputs (config, flags, workdir, data): the binaries
#: print their one-line message and exit with status 2.
USER_ERRORS = (config_lib.ConfigError, WorkdirError, DataError)


class NonFiniteError(RuntimeError):
  """Too many meta-steps in a row had a non-finite loss or gradient."""


# ----------------------------------------------------------------------------- workdir


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that it is writable; returns its absolute path."""
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


def _write_json(path: str, value: Any) -> None:
  """Writes ``value`` to ``path`` atomically (a killed process leaves the old file)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(value if isinstance(value, str) else json.dumps(value, indent=1))
  os.replace(tmp, path)


def _with_defaults(saved: dict) -> dict:
  """A saved config over today's defaults: fields added since then take their defaults."""

  def merge(default, value):
    if not (isinstance(default, dict) and isinstance(value, dict)):
      return value
    return {**default, **{k: merge(default.get(k), v) for k, v in value.items()}}

  return merge(json.loads(config_lib.base_config().to_json_best_effort()), saved)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config of the run in ``workdir`` (its ``config.json``), validated."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(_with_defaults(json.load(f)))
  except OSError as e:
    raise WorkdirError(f"{path}: cannot read it ({e.strerror}); is --workdir a training "
                       "run's directory?") from None
  except (json.JSONDecodeError, TypeError, ValueError) as e:
    raise WorkdirError(f"{path}: not a config ({type(e).__name__}: {e})") from None
  try:
    config_lib.validate(config)
  except (config_lib.ConfigError, KeyError, AttributeError) as e:
    raise WorkdirError(f"{path}: not a valid config ({str(e).strip()})") from None
  return config


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_manager(workdir: str, keep: int = 3, read_only: bool = False
                       ) -> ocp.CheckpointManager:
  """The orbax manager of ``<workdir>/checkpoints`` (items ``state`` and ``run``)."""
  return ocp.CheckpointManager(
      os.path.join(workdir, "checkpoints"),
      item_handlers={"state": ocp.StandardCheckpointHandler(),
                     "run": ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(
          max_to_keep=None if read_only else keep, save_interval_steps=0 if read_only else 1,
          create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
          enable_async_checkpointing=False))


def _abstract_state(config) -> meta.TrainState:
  learner = config_lib.make_learner(config)
  optimizer = meta.make_optimizer(config_lib.meta_lrs(config), learner)
  return jax.eval_shape(lambda: meta.init_state(learner, optimizer, jax.random.key(0)))


def _all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact))


def _restore(mngr: ocp.CheckpointManager, step: int, config=None):
  """The run metadata of checkpoint ``step``, and its state if ``config`` is given.

  Returns:
    ``(run, state)`` (state None without ``config``).

  Raises:
    WorkdirError: the checkpoint cannot be read, or does not fit ``config``.
  """
  where = os.path.join(str(mngr.directory), str(step))
  try:
    run = mngr.restore(step, args=ocp.args.Composite(run=ocp.args.JsonRestore())).run
    state = None
    if config is not None:
      state = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_abstract_state(config)))).state
  except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore: unreadable files
    detail = summary._one_line(e).split(" [tensorstore_spec")[0]  # pylint: disable=protected-access
    detail = detail if len(detail) < 300 else detail[:300] + "..."
    raise WorkdirError(f"{where}: cannot restore this checkpoint ({type(e).__name__}: "
                       f"{detail})") from None
  if not isinstance(run, dict) or run.get("step") != step or (
      state is not None and int(state.step) != step):
    raise WorkdirError(f"{where}: inconsistent checkpoint (metadata {run!r:.80})")
  return run, state


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def changed_fields(saved: dict, config) -> list[str]:
  """``'field (saved -> now)'`` for every field outside `RESUMABLE_FIELDS` that differs."""
  before = _flat(_with_defaults(saved))
  now = _flat(json.loads(config.to_json_best_effort()))
  missing = "<absent>"
  out = []
  for path in sorted(set(before) | set(now)):
    if any(path == f or path.startswith(f + ".") for f in RESUMABLE_FIELDS):
      continue
    a, b = before.get(path, missing), now.get(path, missing)
    if a != b:
      out.append(f"config.{path} ({a!r} -> {b!r})")
  return out


def load_run(workdir: str, config=None, step: int | None = None):
  """The config and the meta-parameters of a trained run, for evaluation or analysis.

  Args:
    workdir: the run's directory.
    config: its config (default: the run's ``config.json``), validated here.
    step: a checkpoint step (default: the latest).

  Returns:
    ``(config, params, step)``.

  Raises:
    WorkdirError: no such directory, no (such) checkpoint, unreadable files,
      or a config that does not match the checkpoint.
    ConfigError: ``config`` is invalid.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir}: no such directory")
  if config is None:
    config = read_config(workdir)
  else:
    config_lib.validate(config)
  directory = os.path.join(workdir, "checkpoints")
  steps = checkpoint_manager(workdir, read_only=True).all_steps() if os.path.isdir(directory) else []
  if not steps:
    raise WorkdirError(f"--workdir={workdir}: no checkpoint in {directory} (train the run first)")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise WorkdirError(f"--step={step}: no such checkpoint in {directory} "
                       f"(available: {', '.join(map(str, sorted(steps)))})")
  _, state = _restore(checkpoint_manager(workdir, read_only=True), step, config)
  return config, state.params, step


def restore_params(workdir: str, config, step: int | None = None):
  """Meta-parameters of the latest (or given) checkpoint of a run: ``(params, step)``."""
  _, params, step = load_run(workdir, config, step)
  return params, step


def _initial_params(config, learner):
  params = learner.init_params(jax.random.key(config.seed))
  if config.init_ff_from:
    try:
      _, other, _ = load_run(config.init_ff_from)
    except WorkdirError as e:
      raise config_lib.ConfigError(f"config.init_ff_from={config.init_ff_from!r}: {e}") from None
    shapes = jax.tree.map(jnp.shape, params["ff"]), jax.tree.map(jnp.shape, other["ff"])
    if shapes[0] != shapes[1]:
      raise config_lib.ConfigError(
          f"config.init_ff_from={config.init_ff_from!r}: its network does not match this one")
    params["ff"] = other["ff"]
    logging.info("feed-forward initialisation from %s", config.init_ff_from)
  return params


# ----------------------------------------------------------------------------- evaluation


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


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass
class _Window:
  """Sums over the finite meta-steps since the last train record (saved with checkpoints)."""

  steps: int = 0
  loss_sum: float = 0.0
  grad_norm_sum: float = 0.0

  def add(self, metrics: dict) -> None:
    self.steps += 1
    self.loss_sum += float(metrics["loss"])
    self.grad_norm_sum += float(metrics["grad_norm"])

  def means(self) -> dict[str, float]:
    n = self.steps or float("nan")
    return {"loss": self.loss_sum / n, "grad_norm": self.grad_norm_sum / n}


def _run_metadata(config, step: int, window: _Window) -> dict:
  return {"format": 1, "step": step, "seed": config.seed,
          "rng": "meta-step s uses fold_in(key(seed), s); its episode is drawn from that key",
          "data_position": step, "window": dataclasses.asdict(window),
          "config": json.loads(config.to_json_best_effort())}


def _open(mngr: ocp.CheckpointManager, config, workdir: str, learner, optimizer):
  """``(state, window, start)``: the latest checkpoint's, or fresh ones (start None)."""
  start = mngr.latest_step()
  if start is None:
    state = meta.init_state(learner, optimizer, jax.random.key(config.seed),
                            _initial_params(config, learner))
    return state, _Window(), None
  run, _ = _restore(mngr, start)
  changed = changed_fields(run.get("config", {}), config)
  if changed:
    listed = "; ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    raise WorkdirError(
        f"--workdir={workdir}: its checkpoint (step {start}) is of another run: {listed}; "
        f"resume with the run's config (only {', '.join(RESUMABLE_FIELDS)} may change) or "
        "use a new --workdir")
  _, state = _restore(mngr, start, config)
  if not _all_finite(state):
    raise WorkdirError(f"--workdir={workdir}: checkpoint {start} holds non-finite values")
  logging.info("resumed from step %d of %s", start, workdir)
  if start > config.meta.steps:
    logging.warning("the checkpoint's step %d is beyond config.meta.steps=%d: evaluating it",
                    start, config.meta.steps)
  return state, _Window(**run["window"]), start


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Meta-trains ``config`` in ``workdir`` (resuming if possible) and evaluates it.

  Checks every input before compiling anything: the config's fields, the
  workdir (created if needed, writable), the checkpoint to resume from (that
  of the same run) and the data files. Non-finite meta-steps are skipped
  (parameters and optimizer state untouched), logged and recorded; a state
  with a non-finite value is never saved.

  Args:
    config: an `ml_collections.ConfigDict` (see `config.base_config`).
    workdir: where checkpoints, metrics and results go.

  Returns:
    The final evaluation results (also written to ``workdir/eval.json``).

  Raises:
    ConfigError, WorkdirError, DataError: bad inputs, before anything is compiled.
    NonFiniteError: ``config.meta.max_nonfinite`` non-finite meta-steps in a row
      (the last good checkpoint stays the latest).
  """
  config_lib.validate(config)
  jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  workdir = prepare_workdir(workdir)
  learner = config_lib.make_learner(config)
  optimizer = meta.make_optimizer(config_lib.meta_lrs(config), learner)
  mngr = checkpoint_manager(workdir, config.keep_checkpoints)
  writer, results = None, []
  try:
    state, window, start = _open(mngr, config, workdir, learner, optimizer)
    train_task, _ = config_lib.make_tasks(config)
    _write_json(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    writer = summary.MetricWriter(workdir, resume_step=start)
    start = start or 0
    if config.eval.at_start and start == 0:
      r = evaluate_params(config, state.params)
      writer.write(0, "eval", {k: v for k, v in r.items() if k != "per_lifetime"})
      results.append(("before meta-training (step 0)", r))
      logging.info("evaluation at step 0: %s", _headline(r))
    state = _train(config, workdir, train_task, learner, optimizer, mngr, writer, state,
                   window, start)
    mngr.wait_until_finished()
    step = int(state.step)
    final = evaluate_params(config, state.params)
    writer.write(step, "eval", {k: v for k, v in final.items() if k != "per_lifetime"})
  finally:
    mngr.close()
    if writer is not None:
      writer.close()
  final.update({"step": step, "device": jax.devices()[0].device_kind})
  _write_json(os.path.join(workdir, "eval.json"), final)
  results.append((f"after {step} meta-steps", final))
  logging.info("evaluation at step %d: %s", step, _headline(final))
  print(results_table(results), flush=True)
  return final


def _train(config, workdir, task, learner, optimizer, mngr, writer, state, window, start):
  """The meta-training loop from step ``start``; returns the final state."""
  meta_step = meta.make_meta_step(
      learner, task, optimizer, meta_batch=config.meta.batch_size,
      remat=config.meta.remat, chunk=config.meta.chunk or None)
  base_key = jax.random.key(config.seed)
  progress = summary.Progress("meta-step", start, config.meta.steps)
  step_times = []

  def save(done):
    if not _all_finite(state):  # never write a non-finite value
      raise NonFiniteError(
          f"the meta-parameters or optimizer state became non-finite at step {done}; not "
          f"saved. {_last_good(mngr, workdir)}")
    mngr.save(done, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        run=ocp.args.JsonSave(_run_metadata(config, done, window))))

  for step in range(start, config.meta.steps):
    t0 = time.perf_counter()
    state, metrics = meta_step(state, jax.random.fold_in(base_key, step), task.data)
    metrics = jax.device_get(metrics)
    step_times.append(time.perf_counter() - t0)
    done = step + 1
    if step == start:
      progress.mark(done)  # after compilation
    if metrics["finite"]:
      window.add(metrics)
    else:
      logging.warning("meta-step %d: non-finite meta-loss or gradient (loss %s); skipped "
                      "(%d in a row, %d in all)", done, metrics["loss"],
                      metrics["nonfinite_in_row"], metrics["nonfinite_total"])
      writer.write(done, "nonfinite", {"loss": metrics["loss"],
                                       "in_row": metrics["nonfinite_in_row"],
                                       "total": metrics["nonfinite_total"]})
      if metrics["nonfinite_in_row"] >= config.meta.max_nonfinite:
        raise NonFiniteError(
            f"{int(metrics['nonfinite_in_row'])} meta-steps in a row (up to step {done}) had a "
            f"non-finite loss or gradient (config.meta.max_nonfinite="
            f"{config.meta.max_nonfinite}); stopped. {_last_good(mngr, workdir)}")
    if done % config.log_every == 0 or done == config.meta.steps:
      # The last step of a run off the log grid gets a record too; its window goes
      # on, so that a run extended from here records what an uninterrupted one does.
      means = window.means()
      writer.write(done, "train", {**means, "skipped_total": metrics["nonfinite_total"],
                                   "step_time_s": float(np.median(step_times))})
      progress.update(done, f"loss {means['loss']:.4g}")
      if done % config.log_every == 0:
        window, step_times = _Window(), []
    if done % config.checkpoint_every == 0 or done == config.meta.steps:
      save(done)
  if mngr.latest_step() != int(state.step):  # e.g. meta.steps = 0: keep the initial state
    save(int(state.step))
  return state


def _last_good(mngr: ocp.CheckpointManager, workdir: str) -> str:
  last = mngr.latest_step()
  if last is None:
    return "No checkpoint had been written yet."
  return f"The last good checkpoint (step {last}) is intact in {workdir}."
