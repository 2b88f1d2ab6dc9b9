"""Objects from a config: checks it, then builds its network, learner, tasks, estimator and
meta-optimizer from the plug-ins it names (`flpjax.config.registry`).

Nothing here names a task, learner, estimator or meta-parameter group: each
plug-in says what it needs, and the generic pieces (the meta-optimizer's
groups, the lifetime's length, memory) are asked of them.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import optax

from flpjax import meta, nets, trunks
from flpjax.config import checks, registry, schema
from flpjax.config.checks import ConfigError
from flpjax.learners.base import Learner, group_names
from flpjax.tasks.base import ORDERS
from flpjax.types import Task


def task_plugin(config):
  """The plug-in of ``config.task``."""
  return registry.get("task", config.task)


def learner_plugin(config):
  """The plug-in of ``config.learner``."""
  return registry.get("learner", config.learner)


def estimator_plugin(config):
  """The plug-in of ``config.estimator``."""
  return registry.get("estimator", config.estimator)


def reads(config, section: str) -> bool:
  """Whether ``config.learner`` reads the config section ``section`` (its own, or one of
  its ``READS``: e.g. every FLP learner reads ``'flp'``)."""
  plugin = learner_plugin(config)
  return section in getattr(plugin, "CONFIG", {}) or section in getattr(plugin, "READS", ())


def network(config) -> tuple[tuple[nets.Layer, ...], tuple[int, ...]]:
  """The network and the shape of one input example, from the config."""
  return task_plugin(config).network(config)


def output_kind(config) -> str:
  """``'regression'`` or ``'classification'``: the task's."""
  return task_plugin(config).OUTPUT


def make_learner(config) -> Learner:
  """The learner of a validated config: the learner plug-in's, behind the flax trunk that
  ``config.net.trunk`` names (`flpjax.trunks`; '' = the network's own frozen layers)."""
  layers, input_shape = network(config)
  plugin, output = learner_plugin(config), output_kind(config)
  return trunks.apply_trunk(
      config, lambda l, s: plugin.from_config(config, l, s, output), layers, input_shape)


def make_tasks(config) -> tuple[Task, Task]:
  """``(meta-train task, meta-test task)`` of a validated config (the estimator's own
  meta-training task where it has one, e.g. OML's proxy task).

  Every data file the run reads is checked first (the task's ``check_inputs``):
  a split needed only later, as the validation split of a sweep, stops the run
  here, before anything is loaded or compiled.
  """
  task = task_plugin(config)
  if hasattr(task, "check_inputs"):
    task.check_inputs(config)
  own = getattr(estimator_plugin(config), "train_task", None)
  return (own or task.train_task)(config), task.test_task(config)


def make_validation_task(config) -> Task:
  """Lifetimes for choosing hyper-parameters, never from the meta-test classes (the task's)."""
  return task_plugin(config).validation_task(config)


def make_estimator(config, learner: Learner, task: Task):
  """The meta-gradient estimator of a validated config, over ``task`` (the meta-train task)."""
  return estimator_plugin(config).from_config(config, learner, task)


def own_evaluation(config):
  """``evaluate(config, params, lifetimes) -> results`` when the estimator's rows are
  evaluated by a rule of their own (the original OML's); None: `flpjax.evaluate`."""
  return getattr(estimator_plugin(config), "evaluate", None)


def lifetime_steps(config) -> int:
  """``T``, the support steps of one meta-training lifetime, from the config alone (the
  estimator's own training task's when it has one, else the task's)."""
  own = getattr(estimator_plugin(config), "train_lifetime_steps", None)
  return (own or task_plugin(config).lifetime_steps)(config)


def meta_lrs(config, learner: Learner | None = None) -> dict[str, Any]:
  """Learning rate of every meta-parameter group of the learner (``meta.lr.<group>``; a group
  whose rate is None takes its fallback's; an optax schedule with ``meta.ff_milestones``).
  """
  learner = learner or make_learner(config)
  lr = config.meta.lr
  out = {}
  for g in learner.groups:
    rate = lr.get(g.name)
    if rate is None and g.fallback is not None:
      rate = lr.get(g.fallback)
    out[g.name] = g.default_lr if rate is None else rate
  if config.meta.ff_milestones and out.get("ff", 0) > 0:
    # torch's MultiStepLR stepped once per meta-step: optax evaluates the schedule
    # at the count of earlier updates, and scales from count >= milestone on.
    out["ff"] = optax.piecewise_constant_schedule(
        out["ff"], {int(m): config.meta.ff_decay for m in config.meta.ff_milestones})
  return out


def frozen_groups(config, learner: Learner) -> tuple[str, ...]:
  """The learner's groups whose meta-learning rate is 0 (ES and PES do not perturb them)."""
  lrs = meta_lrs(config, learner)
  return tuple(g for g, rate in lrs.items() if isinstance(rate, (int, float)) and rate == 0)


def make_optimizer(config, learner: Learner | None = None) -> optax.GradientTransformation:
  """The meta-optimizer of a config: `meta.make_optimizer` with `meta_lrs` and the
  ``meta.clip_norm`` / ``warmup_steps`` / ``nonnegative`` options."""
  learner = learner or make_learner(config)
  return meta.make_optimizer(
      meta_lrs(config, learner), learner, clip_norm=float(config.meta.clip_norm),
      warmup_steps=int(config.meta.warmup_steps), nonnegative=tuple(config.meta.nonnegative))


def on_nonfinite(config, learner: Learner | None = None):
  """What a skipped (non-finite) meta-step does to the meta-parameters
  (`meta.make_meta_step`'s ``on_nonfinite``): None (nothing, the paper's procedure), or
  `meta.scale_groups` of ``meta.nonfinite_backoff`` by ``meta.backoff_factor``."""
  groups = tuple(config.meta.get("nonfinite_backoff", ()))
  factor = float(config.meta.get("backoff_factor", 0.5))
  if not groups or factor == 1.0:
    return None
  return meta.scale_groups(learner or make_learner(config), groups, factor)


def max_loss(config) -> float | None:
  """``meta.max_loss`` as `meta.make_meta_step`'s ``max_loss``: None when 0 (no bound,
  the paper's procedure)."""
  bound = float(config.meta.get("max_loss", 0.0))
  return bound or None


def step_options(config, learner: Learner | None = None) -> dict:
  """What a config asks of a skipped meta-step, as keyword arguments of
  `meta.make_meta_step` / `meta.make_runs_meta_step`: ``on_nonfinite`` (`on_nonfinite`)
  and ``max_loss`` (`max_loss`)."""
  return {"on_nonfinite": on_nonfinite(config, learner), "max_loss": max_loss(config)}


def check_source_runs(config) -> None:
  """The runs a new run starts from (``init_ff_from``, ``extend_from``) exist, with a config
  and a checkpoint; `train.train_and_evaluate` checks them before anything is compiled
  when it starts a run (a resumed run reads its own checkpoint, not them)."""
  from flpjax.experiment import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from flpjax.reporting.errors import WorkdirError  # pylint: disable=g-import-not-at-top
  for name in ("init_ff_from", "extend_from"):
    path = config[name]
    if not path:
      continue
    where = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(where):
      checks.fail(name, path, f"a trained run's workdir; {where}: no such directory")
    try:
      workdir_lib.read_config(where)
    except WorkdirError as e:
      checks.fail(name, path, f"a trained run's workdir; {e}")
    saved = os.path.join(where, "checkpoints")
    steps = [d for d in (os.listdir(saved) if os.path.isdir(saved) else []) if d.isdigit()]
    if not steps:
      checks.fail(name, path, f"a trained run's workdir; no checkpoint in {saved} (train "
                  "that run first)")


def _memory_limit(config) -> int:
  if config.meta.max_lifetime_bytes:
    return config.meta.max_lifetime_bytes
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_lifetime_memory(config, learner: Learner) -> None:
  """An estimator that stores the fast state of every step for backprop (``STORES_LIFETIME``,
  with ``meta.remat='step'``) stops early if that cannot fit, and says what would."""
  if not getattr(estimator_plugin(config), "STORES_LIFETIME", False):
    return
  if config.meta.remat == "nested":
    return
  key = jax.random.key(0)
  fast = jax.eval_shape(lambda: learner.init(learner.init_params(key), key))
  fast_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(fast))
  t = lifetime_steps(config)
  need = t * fast_bytes * config.meta.batch_size * config.runs
  limit = _memory_limit(config)
  if need > limit:
    checks.fail("estimator", config.estimator,
                f"an estimator whose memory does not grow with the lifetime: the {t}-step "
                f"lifetime stores about {need / 2**30:.1f} GiB of fast weights for backprop, "
                f"more than the {limit / 2**30:.1f} GiB available; use "
                "estimator='truncated' (truncated.window=K), 'es' or 'pes', or "
                "meta.remat='nested'")




def validate(config) -> None:
  """Checks every field; raises `ConfigError` naming the first bad one."""
  for kind in registry.KINDS:
    checks.check_choice(config, kind, registry.names(kind))
  checks.check_choice(config, "order", ORDERS)
  schema.validate_common(config)
  task, learner_entry, estimator = (task_plugin(config), learner_plugin(config),
                                    estimator_plugin(config))
  if hasattr(task, "validate_config"):
    task.validate_config(config)
  layers, input_shape = network(config)
  try:
    nets.output_shapes(layers, input_shape)
  except ValueError as e:
    raise ConfigError(f"config.task={config.task!r}: its network does not fit its inputs "
                      f"{tuple(input_shape)}: {e}") from None
  n_dense = sum(isinstance(l, nets.Dense) for l in layers)
  checks.check_int(config, "plastic_layers", 1, n_dense)
  trunks.validate_config(config, layers, input_shape)
  if hasattr(learner_entry, "validate_config"):
    learner_entry.validate_config(config)
  allowed = getattr(estimator, "LEARNERS", None)
  if allowed is not None and config.learner not in allowed:
    checks.fail("learner", config.learner, f"one of {', '.join(map(repr, allowed))} with "
                f"estimator={config.estimator!r}")
  if hasattr(estimator, "validate_config"):
    estimator.validate_config(config)
  if config.run_orders and not getattr(estimator, "PER_RUN_ORDERS", False):
    able = [repr(n) for n in registry.names("estimator")
            if getattr(registry.get("estimator", n), "PER_RUN_ORDERS", False)]
    checks.fail("run_orders", tuple(config.run_orders), f"() with estimator="
                f"{config.estimator!r} (one stream order per run needs estimator="
                f"{' or '.join(able)})")
  if config.extend_from and not getattr(learner_entry, "EXTENDS", False):
    checks.fail("learner", config.learner, "a learner that can start from a feature-reuse "
                "run (section 7.1) with config.extend_from: one of "
                + ", ".join(repr(n) for n in registry.names("learner")
                            if getattr(registry.get("learner", n), "EXTENDS", False)))
  try:
    learner = make_learner(config)
  except ValueError as e:
    raise ConfigError(f"config.learner={config.learner!r}: {e}") from None
  check_lifetime_memory(config, learner)
  for path in ("meta.nonnegative", "meta.nonfinite_backoff"):
    groups = checks.field(config, path)
    if isinstance(groups, str) or any(g not in group_names(learner) for g in groups):
      checks.fail(path, groups if isinstance(groups, str) else tuple(groups),
                  f"a tuple of this learner's groups {group_names(learner)}")
  if config.sweep.lrs:  # the swept group must be one of the learner's
    checks.check_choice(config, "sweep.group", group_names(learner))
