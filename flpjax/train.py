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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from flpjax import config as config_lib
from flpjax import evaluate as evaluate_lib
from flpjax import meta
from flpjax import parallel
from flpjax import summary
from flpjax.datasets import DataError
from flpjax.summary import WorkdirError

#: Config fields that may change when a run is resumed: they decide how long
#: it runs, what it records and how it is evaluated, not the meta-parameters
#: its steps compute (``meta.remat`` and ``meta.chunk`` trade memory for time
#: and compute the same maths).
RESUMABLE_FIELDS = ("meta.steps", "meta.max_nonfinite", "meta.remat", "meta.chunk",
                    "log_every", "checkpoint_every", "keep_checkpoints", "eval",
                    "fewshot.data_dir", "oml.eval_rule", "oml.eval_lrs", "oml.lr_searches")

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


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config of the run in ``workdir`` (its ``config.json``), validated."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(config_lib.with_defaults(json.load(f)))
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
                     "estimator": ocp.StandardCheckpointHandler(),
                     "run": ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(
          max_to_keep=None if read_only else keep, save_interval_steps=0 if read_only else 1,
          create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
          enable_async_checkpointing=False))


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
  learner = config_lib.make_learner(config)
  optimizer = meta.make_optimizer(config_lib.meta_lrs(config, learner), learner)
  if config.runs > 1:
    return jax.eval_shape(lambda: meta.init_states(learner, optimizer, _run_keys(config),
                                                   estimator=estimator))
  return jax.eval_shape(lambda: meta.init_state(learner, optimizer, jax.random.key(0),
                                                estimator=estimator))


def _run_keys(config) -> jax.Array:
  """Run ``r`` of a multi-run config uses ``key(seed + r)``: the run a single config
  with seed ``seed + r`` makes."""
  return jax.vmap(jax.random.key)(config.seed + jnp.arange(config.runs))


def _all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact))


def _restore(mngr: ocp.CheckpointManager, step: int, config=None, estimator=None):
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
    detail = summary._one_line(e).split(" [tensorstore_spec")[0]  # pylint: disable=protected-access
    detail = detail if len(detail) < 300 else detail[:300] + "..."
    raise WorkdirError(f"{where}: cannot restore this checkpoint ({type(e).__name__}: "
                       f"{detail})") from None
  if not isinstance(run, dict) or run.get("step") != step or (
      state is not None and int(np.max(jax.device_get(state.step))) != step):
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
  before = _flat(config_lib.with_defaults(saved))
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


def _leaf_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def export_params(workdir: str, path: str, step: int | None = None) -> str:
  """Stores a run's meta-parameters (no optimizer state) as ``path.npz`` + ``path.json``.

  The pair is all `load_params_file` (and ``experiments/evaluate.py --params``)
  needs to evaluate the network without its workdir: float32 arrays, and the
  config, step and source of the run.
  """
  config, params, step = load_run(workdir, step=step)
  config = config.copy_and_resolve_references()
  config.fewshot.data_dir = ""  # where the data was is not part of the network
  flat = {_leaf_name(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez_compressed(path + ".npz", **flat)
  summary.write_json(path + ".json", {"step": step, "source": os.path.abspath(workdir),
                               "config": json.loads(config.to_json_best_effort())})
  return path


def load_params_file(path: str):
  """``(config, params, step)`` of meta-parameters stored by `export_params`."""
  try:
    with open(path + ".json") as f:
      info = json.load(f)
    config = ml_collections.ConfigDict(config_lib.with_defaults(info["config"]))
    config_lib.validate(config)
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
                       f"{summary._one_line(e)})") from None  # pylint: disable=protected-access
  return config, jax.tree.unflatten(jax.tree.structure(abstract), leaves), int(info["step"])


def restore_params(workdir: str, config, step: int | None = None):
  """Meta-parameters of the latest (or given) checkpoint of a run: ``(params, step)``."""
  _, params, step = load_run(workdir, config, step)
  return params, step


def _initial_state(config, learner, optimizer, estimator=None) -> meta.TrainState:
  """Fresh meta-parameters (one set per run), optimizer and estimator states, sweep rates applied."""
  if config.runs == 1:
    state = meta.init_state(learner, optimizer, jax.random.key(config.seed), estimator=estimator)
  else:
    state = meta.init_states(learner, optimizer, _run_keys(config), estimator=estimator)
  if config.extend_from:
    state = state._replace(params=_extended_from(config, learner, state.params))
  if config.init_ff_from or config.extend_from:
    if config.init_ff_from:
      state = state._replace(params=_ff_from(config, state.params))
    state = state._replace(opt_state=optimizer.init(state.params) if config.runs == 1 else
                           jax.vmap(optimizer.init)(state.params))
  if config.sweep.lrs:
    groups = [config.sweep.group]
    if config.sweep.group == "alpha" and config.meta.lr.alpha_readout is None:
      groups.append("alpha_readout")  # the readout shares alpha's rate
    rates = jnp.asarray(config.sweep.lrs, jnp.float32)
    if config.runs == 1:
      rates = rates[0]
    try:
      state = state._replace(opt_state=meta.set_learning_rates(
          state.opt_state, {g: rates for g in groups}))
    except ValueError:
      raise config_lib.ConfigError(
          f"config.sweep.group={config.sweep.group!r}: that group is frozen "
          f"(config.meta.lr.{config.sweep.group} is 0); expected a trained group") from None
  return parallel.shard_runs(state) if config.runs > 1 else state


def _extended_from(config, learner, params):
  """Section 7.1: ``params`` built from a feature-reuse run (`analysis.extend_plasticity`)."""
  from flpjax import analysis  # pylint: disable=g-import-not-at-top
  try:
    source_config, source, _ = load_run(config.extend_from)
  except WorkdirError as e:
    raise config_lib.ConfigError(f"config.extend_from={config.extend_from!r}: {e}") from None
  lrs = config_lib.meta_lrs(config, learner)
  runs = config.runs
  try:
    if source_config.runs == runs > 1:  # run r from run r
      out = [analysis.extend_plasticity(learner, jax.tree.map(lambda a, r=r: a[r], source),
                                        jax.random.key(config.seed + r), lrs)[0]
             for r in range(runs)]
      return jax.tree.map(lambda *a: jnp.stack(a), *out)
    if source_config.runs > 1:  # one source network: its run 0
      source = jax.tree.map(lambda a: a[0], source)
    out = analysis.extend_plasticity(learner, source, jax.random.key(config.seed), lrs)[0]
  except ValueError as e:
    raise config_lib.ConfigError(f"config.extend_from={config.extend_from!r}: {e}") from None
  logging.info("section 7.1: starting from the feature-reuse run %s", config.extend_from)
  if runs > 1:
    return jax.tree.map(lambda a, p: jnp.broadcast_to(a, p.shape), out, params)
  return out


def _ff_from(config, params):
  """``params`` with the feed-forward weights of the run in ``config.init_ff_from`` (B.2)."""
  try:
    _, other, _ = load_run(config.init_ff_from)
  except WorkdirError as e:
    raise config_lib.ConfigError(f"config.init_ff_from={config.init_ff_from!r}: {e}") from None
  same_tree = jax.tree.structure(params["ff"]) == jax.tree.structure(other["ff"])
  mine = [p.shape for p in jax.tree.leaves(params["ff"])]
  theirs = [a.shape for a in jax.tree.leaves(other["ff"])]
  if not same_tree:
    mine = None
  if config.runs > 1 and mine is not None and theirs == [s[1:] for s in mine]:
    other_ff = jax.tree.map(lambda a, p: jnp.broadcast_to(a, p.shape), other["ff"], params["ff"])
  elif theirs == mine:
    other_ff = other["ff"]  # same number of runs: run r from run r
  else:
    raise config_lib.ConfigError(
        f"config.init_ff_from={config.init_ff_from!r}: its network (or number of runs) does "
        "not match this one")
  logging.info("feed-forward initialisation from %s", config.init_ff_from)
  return dict(params, ff=other_ff)


# ----------------------------------------------------------------------------- evaluation


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
    per_run = [_evaluate_one(config, jax.tree.map(lambda a, r=r: a[r], params), lifetimes,
                             validation) for r in range(config.runs)]
    return _aggregate(per_run)
  return _evaluate_one(config, params, lifetimes, validation)


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


def _aggregate(per_run: list[dict]) -> dict[str, Any]:
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
  """Per-run sums over the finite meta-steps since the last train record (saved with checkpoints)."""

  steps: list
  loss_sum: list
  grad_norm_sum: list

  @classmethod
  def empty(cls, runs: int) -> "_Window":
    return cls([0] * runs, [0.0] * runs, [0.0] * runs)

  @classmethod
  def restore(cls, saved: dict, runs: int) -> "_Window":
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


def _scalars(result: dict) -> dict:
  return {k: v for k, v in result.items() if k not in ("per_lifetime", "runs", "sweep")}


def _run_metadata(config, step: int, window: _Window) -> dict:
  return {"format": 1, "step": step, "seed": config.seed,
          "rng": "meta-step s uses fold_in(key(seed), s); its episode is drawn from that key",
          "data_position": step, "window": dataclasses.asdict(window),
          "config": json.loads(config.to_json_best_effort())}


def _open(mngr: ocp.CheckpointManager, config, workdir: str, learner, optimizer, estimator):
  """``(state, window, start)``: the latest checkpoint's, or fresh ones (start None)."""
  start = mngr.latest_step()
  if start is None:
    return (_initial_state(config, learner, optimizer, estimator), _Window.empty(config.runs),
            None)
  run, _ = _restore(mngr, start)
  changed = changed_fields(run.get("config", {}), config)
  if changed:
    listed = "; ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    raise WorkdirError(
        f"--workdir={workdir}: its checkpoint (step {start}) is of another run: {listed}; "
        f"resume with the run's config (only {', '.join(RESUMABLE_FIELDS)} may change) or "
        "use a new --workdir")
  _, state = _restore(mngr, start, config, estimator)
  if config.runs > 1:
    state = parallel.shard_runs(state)
  if not _all_finite(state):
    raise WorkdirError(f"--workdir={workdir}: checkpoint {start} holds non-finite values")
  logging.info("resumed from step %d of %s", start, workdir)
  if start > config.meta.steps:
    logging.warning("the checkpoint's step %d is beyond config.meta.steps=%d: evaluating it",
                    start, config.meta.steps)
  return state, _Window.restore(run["window"], config.runs), start


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
  optimizer = meta.make_optimizer(config_lib.meta_lrs(config, learner), learner)
  mngr = checkpoint_manager(workdir, config.keep_checkpoints)
  writer, results = None, []
  try:
    train_task, _ = config_lib.make_tasks(config)
    estimator = config_lib.make_estimator(config, learner, train_task)
    state, window, start = _open(mngr, config, workdir, learner, optimizer, estimator)
    summary.write_json(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    writer = summary.MetricWriter(workdir, resume_step=start)
    start = start or 0
    if config.eval.at_start and start == 0:
      r = evaluate_params(config, state.params)
      writer.write(0, "eval", _scalars(r))
      results.append(("before meta-training (step 0)", r))
      logging.info("evaluation at step 0: %s", _headline(r))
    state = _train(config, workdir, train_task, estimator, optimizer, mngr, writer, state,
                   window, start)
    mngr.wait_until_finished()
    step = int(np.max(jax.device_get(state.step)))
    final = evaluate_params(config, state.params)
    writer.write(step, "eval", _scalars(final))
    if config.sweep.lrs:  # choose on validation lifetimes, never on the meta-test classes
      val = evaluate_params(config, state.params, validation=True)
      metric = "mse" if "mse" in val else "error"
      scores = [r[metric] for r in val.get("runs", [val])]
      best = int(np.nanargmin(np.where(np.isfinite(scores), scores, np.nan))) if np.any(
          np.isfinite(scores)) else -1
      final["sweep"] = {"group": config.sweep.group, "lrs": list(config.sweep.lrs),
                        f"validation_{metric}": scores, "best_run": best,
                        "best_lr": config.sweep.lrs[best] if best >= 0 else None}
      writer.write(step, "sweep", {f"validation_{metric}_run{r}": v for r, v in enumerate(scores)})
  finally:
    mngr.close()
    if writer is not None:
      writer.close()
  final.update({"step": step, "device": jax.devices()[0].device_kind})
  summary.write_json(os.path.join(workdir, "eval.json"), final)
  results.append((f"after {step} meta-steps", final))
  logging.info("evaluation at step %d: %s", step, _headline(final))
  print(results_table(results), flush=True)
  return final


def _train(config, workdir, task, estimator, optimizer, mngr, writer, state, window, start):
  """The meta-training loop from step ``start``; returns the final state."""
  runs = config.runs
  if runs == 1:
    meta_step = meta.make_meta_step(estimator, optimizer)
  else:  # one vmapped program over the runs (sharded over devices by shard_runs)
    meta_step = meta.make_runs_meta_step(estimator, optimizer)
  keys = _run_keys(config) if runs > 1 else jax.random.key(config.seed)
  failed = set()
  progress = summary.Progress("meta-step", start, config.meta.steps)
  step_times = []

  def save(done):
    if not _all_finite(state):  # never write a non-finite value
      raise NonFiniteError(
          f"the meta-parameters or optimizer state became non-finite at step {done}; not "
          f"saved. {_last_good(mngr, workdir)}")
    items = {"state": ocp.args.StandardSave(Checkpointed(*state[:3])),
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
      logging.warning("meta-step %d: %snon-finite meta-loss or gradient (loss %s); skipped "
                      "(%d in a row, %d in all)", done, which, metrics["loss"][r],
                      metrics["nonfinite_in_row"][r], metrics["nonfinite_total"][r])
      record = {"loss": metrics["loss"][r], "in_row": metrics["nonfinite_in_row"][r],
                "total": metrics["nonfinite_total"][r]}
      writer.write(done, "nonfinite", dict(record, run=int(r)) if runs > 1 else record)
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
        window, step_times = _Window.empty(runs), []
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
