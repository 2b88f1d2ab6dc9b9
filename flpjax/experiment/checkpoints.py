"""Checkpoints: orbax managers, saving and restoring a run's state, stored meta-parameters.

A checkpoint holds the item ``state`` (`Checkpointed`: step, meta-parameters,
optimizer state with the non-finite counters), ``run`` (JSON: seed, step,
how randomness follows from the step, the metrics window, the config) and,
for estimators with state (truncated backprop), ``estimator``. orbax writes
into a temporary directory renamed into place, so a process killed at any
moment leaves the previous or the new checkpoint, never a broken one.

A writing manager (`checkpoint_manager` without ``read_only``) holds the
workdir's lock (`workdir.WorkdirLock`) from before orbax looks at the directory
until it is closed, so a second process on the same workdir stops at once
instead of racing on orbax's temporary directories and the metrics file.
Files damaged afterwards (a disk error, a copy cut short) are handled on
resume: `restore_latest` sets an unreadable latest checkpoint aside and
restores the newest good one.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from flpjax import meta
from flpjax.config import build, schema
from flpjax.experiment.workdir import WorkdirLock, lock_workdir, read_config
from flpjax.reporting import metrics as metrics_lib
from flpjax.reporting.errors import WorkdirError, one_line

#: Where `restore_latest` moves checkpoints that cannot be restored: ``<workdir>/<this>/<step>``.
SET_ASIDE_DIR = "checkpoints_unreadable"


class _LockedManager(ocp.CheckpointManager):
  """A checkpoint manager that releases its workdir's lock when closed."""

  def __init__(self, *args, lock: WorkdirLock, **kwargs):
    self._workdir_lock = lock
    try:
      super().__init__(*args, **kwargs)
    except BaseException:
      lock.release()
      raise

  def close(self):
    try:
      # orbax removes stale temporary folders in a background thread that its close()
      # does not wait for: a run that stops at once (a resume with another run's config)
      # would exit under it, and the thread's traceback would follow the one-line error.
      wait = getattr(super(), "_maybe_await_cleanup_tmp_directory", None)
      if wait is not None:
        wait()
      super().close()
    finally:
      self._workdir_lock.release()


def checkpoint_manager(workdir: str, keep: int = 3, read_only: bool = False
                       ) -> ocp.CheckpointManager:
  """The orbax manager of ``<workdir>/checkpoints`` (items ``state`` and ``run``).

  Unless ``read_only``, it takes the workdir's lock first and releases it in
  ``close()`` (call it, e.g. in a ``finally``).

  Raises:
    WorkdirError: (writing) another process holds the workdir; the message names it.
  """
  kwargs = {}
  cls = ocp.CheckpointManager
  if not read_only:
    kwargs, cls = {"lock": lock_workdir(workdir)}, _LockedManager
  return cls(
      os.path.join(workdir, "checkpoints"),
      item_handlers={"state": ocp.StandardCheckpointHandler(),
                     "estimator": ocp.StandardCheckpointHandler(),
                     "run": ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(
          max_to_keep=None if read_only else keep, save_interval_steps=0 if read_only else 1,
          create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
          enable_async_checkpointing=False), **kwargs)


class Checkpointed(NamedTuple):
  """The ``state`` item of a checkpoint: `meta.TrainState` without the estimator's state.

  (The layout of checkpoints written before estimators had state; an estimator
  state with leaves, e.g. truncated backprop's partial lifetime, is the
  separate item ``estimator``.)
  """

  step: Any
  params: Any
  opt_state: Any


def _abstract_state(config, estimator=None) -> meta.TrainState:
  learner = build.make_learner(config)
  optimizer = build.make_optimizer(config, learner)
  if config.runs > 1:
    return jax.eval_shape(lambda: meta.init_states(learner, optimizer, run_keys(config),
                                                   estimator=estimator))
  return jax.eval_shape(lambda: meta.init_state(learner, optimizer, jax.random.key(0),
                                                estimator=estimator))


def run_keys(config) -> jax.Array:
  """Run ``r`` of a multi-run config uses ``key(seed + r)``: the run a single config
  with seed ``seed + r`` makes."""
  return jax.vmap(jax.random.key)(config.seed + jnp.arange(config.runs))


def all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact))


def restore(mngr: ocp.CheckpointManager, step: int, config=None, estimator=None):
  """The run metadata of checkpoint ``step``, and its state if ``config`` is given.

  The estimator's state (item ``estimator``) is restored when ``estimator`` has
  one; otherwise the returned state's ``estimator`` is the abstract ``()``.

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
      # Restore onto this process's first device, whatever device wrote the checkpoint
      # (a run trained on a GPU resumes or is evaluated on a CPU).
      device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      abstract = jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)
          if hasattr(x, "shape") else x, _abstract_state(config, estimator))
      items = {"state": ocp.args.StandardRestore(Checkpointed(*abstract[:3]))}
      if jax.tree.leaves(abstract.estimator):
        items["estimator"] = ocp.args.StandardRestore(abstract.estimator)
      restored = mngr.restore(step, args=ocp.args.Composite(**items))
      state = meta.TrainState(*restored.state, restored.estimator if "estimator" in items
                              else ())
  except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore: unreadable files
    detail = one_line(e).split(" [tensorstore_spec")[0]
    detail = detail if len(detail) < 300 else detail[:300] + "..."
    raise WorkdirError(f"{where}: cannot restore this checkpoint ({type(e).__name__}: "
                       f"{detail})") from None
  if not isinstance(run, dict) or run.get("step") != step or (
      state is not None and int(np.max(jax.device_get(state.step))) != step):
    raise WorkdirError(f"{where}: inconsistent checkpoint (metadata {run!r:.80})")
  return run, state


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> str:
  """Moves checkpoint ``step`` to ``<workdir>/checkpoints_unreadable/<step>[.n]``; returns where."""
  source = os.path.join(str(mngr.directory), str(step))
  root = os.path.join(os.path.dirname(str(mngr.directory)), SET_ASIDE_DIR)
  os.makedirs(root, exist_ok=True)
  target, n = os.path.join(root, str(step)), 1
  while os.path.exists(target):
    target, n = os.path.join(root, f"{step}.{n}"), n + 1
  os.rename(source, target)
  return target


def restore_latest(mngr: ocp.CheckpointManager, config, estimator=None, check=None):
  """`restore` of the newest checkpoint that can be restored, setting newer broken ones aside.

  Checkpoints are tried from the latest down. When one restores (and passes
  ``check``), every newer one that failed is moved to
  ``<workdir>/checkpoints_unreadable/`` with a warning naming it and why, and
  the run goes on from the good one (a resumed run recomputes the same steps).
  When none restores, nothing is moved and the latest one's error is raised.

  Args:
    mngr: a writing manager of the workdir.
    config, estimator: as for `restore`.
    check: ``check(run, step)`` called with the run metadata before the state
      is restored; what it raises (e.g. a config of another run) propagates
      unchanged, without trying older checkpoints.

  Returns:
    ``(step, run, state)``, or ``(None, None, None)`` when there is no checkpoint.

  Raises:
    WorkdirError: no checkpoint can be restored (the latest one's error).
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  failed = []
  for step in steps:
    try:
      run, _ = restore(mngr, step)
    except WorkdirError as e:
      failed.append((step, e))
      continue
    if check is not None:
      check(run, step)
    try:
      _, state = restore(mngr, step, config, estimator)
      if not all_finite(state):
        raise WorkdirError(f"{os.path.join(str(mngr.directory), str(step))}: holds non-finite "
                           "values")
    except WorkdirError as e:
      failed.append((step, e))
      continue
    for bad, error in failed:
      where = _set_aside(mngr, bad)
      logging.warning("checkpoint %d cannot be restored (%s); moved to %s; resuming from "
                      "checkpoint %d", bad, error, where, step)
    if failed:
      mngr.reload()
    return step, run, state
  if failed:
    raise failed[0][1]
  return None, None, None


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
    build.validate(config)
  directory = os.path.join(workdir, "checkpoints")
  steps = checkpoint_manager(workdir, read_only=True).all_steps() if os.path.isdir(directory) else []
  if not steps:
    raise WorkdirError(f"--workdir={workdir}: no checkpoint in {directory} (train the run first)")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise WorkdirError(f"--step={step}: no such checkpoint in {directory} "
                       f"(available: {', '.join(map(str, sorted(steps)))})")
  _, state = restore(checkpoint_manager(workdir, read_only=True), step, config)
  return config, state.params, step


def _leaf_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def export_params(workdir: str, path: str, step: int | None = None,
                  run: int | None = None) -> str:
  """Stores a run's meta-parameters (no optimizer state) as ``path.npz`` + ``path.json``.

  The pair is all `load_params_file` (and ``experiments/evaluate.py --params``)
  needs to evaluate the network without its workdir: float32 arrays, and the
  config, step and source of the run. ``run``: only network ``run`` of a
  multi-run workdir, with its single-run config (`aggregate.run_config`).
  """
  from flpjax.experiment import aggregate  # pylint: disable=g-import-not-at-top
  config, params, step = load_run(workdir, step=step)
  if run is not None and config.runs > 1:
    if not 0 <= run < config.runs:
      raise ValueError(f"run={run}: expected 0 <= run < {config.runs} (the workdir's runs)")
    params = jax.tree.map(lambda a: a[run], params)
    config = aggregate.run_config(config, run)
  config = config.copy_and_resolve_references()
  config.fewshot.data_dir = ""  # where the data was is not part of the network
  flat = {_leaf_name(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez_compressed(path + ".npz", **flat)
  source = os.path.relpath(workdir)  # relative to where it ran: the pair may be committed
  source = workdir if source.startswith("..") else source
  info = {"step": step, "source": source, "config": json.loads(config.to_json_best_effort())}
  if run is not None:
    info["run"] = run
  metrics_lib.write_json(path + ".json", info)
  return path


def load_params_file(path: str):
  """``(config, params, step)`` of meta-parameters stored by `export_params`."""
  try:
    with open(path + ".json") as f:
      info = json.load(f)
    config = ml_collections.ConfigDict(schema.with_defaults(info["config"]))
    build.validate(config)
    data = np.load(path + ".npz")
    abstract = _abstract_state(config).params
    leaves = []
    for k, leaf in jax.tree_util.tree_leaves_with_path(abstract):
      value = data[_leaf_name(k)]
      if value.shape != leaf.shape:
        raise ValueError(f"{_leaf_name(k)} has shape {value.shape}, expected {leaf.shape}")
      leaves.append(jnp.asarray(value))
  except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
    raise WorkdirError(f"--params={path}: not stored meta-parameters ({type(e).__name__}: "
                       f"{one_line(e)})") from None
  return config, jax.tree.unflatten(jax.tree.structure(abstract), leaves), int(info["step"])


def restore_params(workdir: str, config, step: int | None = None):
  """Meta-parameters of the latest (or given) checkpoint of a run: ``(params, step)``."""
  _, params, step = load_run(workdir, config, step)
  return params, step
