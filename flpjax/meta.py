"""Meta-learning: the meta-loss of a lifetime, its gradient, and the update.

The meta-gradient estimator here is the exact gradient of the query loss after
a whole lifetime, by reverse-mode differentiation through the scanned lifetime
(`lifetime.run`; memory controlled by ``remat``). The optimizer gives each
meta-parameter group its own Adam and learning rate through one
`optax.partition` (the reference used four separate torch Adams with the same
defaults: b1=0.9, b2=0.999, eps=1e-8 added to sqrt(v_hat)); a group with
learning rate 0 is frozen (`optax.set_to_zero`). `optax.apply_if_finite`
guards the update: a meta-step whose loss or gradient is not finite leaves
the parameters and the optimizer state untouched and is counted.

Example:
  >>> learner = learners.flp(nets.regression_mlp(), (11,), 3)
  >>> task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 400))
  >>> opt = make_optimizer(PAPER_REGRESSION_LRS, learner)
  >>> state = init_state(learner, opt, jax.random.key(0))
  >>> step = make_meta_step(learner, task, opt)
  >>> state, metrics = step(state, jax.random.key(2), task.data)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flpjax import lifetime
from flpjax.learners import Learner, Params, param_labels
from flpjax.tasks.base import Task, loss_fn

#: Table 3 of the paper (regression): meta-learning rate of every group.
PAPER_REGRESSION_LRS = {"ff": 1e-4, "fb": 1e-4, "alpha": 1e-8, "beta": 1e-4}
GROUPS = ("ff", "fb", "alpha", "alpha_readout", "beta")


class TrainState(NamedTuple):
  """Meta-training state: step count, meta-parameters, optimizer state."""

  step: jax.Array
  params: Params
  opt_state: optax.OptState


def make_optimizer(
    lrs: Mapping[str, float | optax.Schedule], learner: Learner,
    max_consecutive_nonfinite: int = 2**30,
) -> optax.GradientTransformation:
  """Adam per meta-parameter group, guarded against non-finite gradients.

  Every Adam is wrapped in `optax.inject_hyperparams`, so its learning rate is
  part of the optimizer state: independent runs `vmap`ped together can each
  have their own (`set_learning_rates`), e.g. in a sweep.

  Args:
    lrs: learning rate per group (``'ff'``, ``'fb'``, ``'alpha'``, ``'beta'``,
      optionally ``'alpha_readout'``, which defaults to ``lrs['alpha']``): a
      number, or an optax schedule of the meta-step (e.g. the reference OML's
      step decay). A rate of 0 freezes the group (`optax.set_to_zero`).
    learner: the learner whose parameters are optimized (for the readout's
      index).
    max_consecutive_nonfinite: passed to `optax.apply_if_finite`; the training
      loop stops the run well before this (``meta.max_nonfinite``), since
      apply_if_finite lets updates through after that many.

  Returns:
    The optimizer.
  """
  lrs = dict(lrs)
  unknown = set(lrs) - set(GROUPS)
  if unknown:
    raise ValueError(f"unknown meta-parameter groups {sorted(unknown)}; expected {GROUPS}")
  lrs.setdefault("alpha_readout", lrs.get("alpha", 0.0))

  def group(lr):
    if callable(lr) or lr > 0:
      return optax.inject_hyperparams(optax.adam)(learning_rate=lr)
    return optax.set_to_zero()

  transforms = {g: group(lr) for g, lr in lrs.items()}
  for g in GROUPS:
    transforms.setdefault(g, optax.set_to_zero())
  opt = optax.partition(transforms, lambda p: param_labels(p, learner.readout))
  return optax.apply_if_finite(opt, max_consecutive_nonfinite)


def set_learning_rates(opt_state, lrs: Mapping[str, Any]):
  """The optimizer state with new learning rates for some groups.

  Args:
    opt_state: a state of `make_optimizer` (possibly with a leading run axis).
    lrs: ``{group: rate}``; a rate may be an array with the run axis.

  Returns:
    The updated state.

  Raises:
    ValueError: for a group that is frozen or has a schedule.
  """
  partition = opt_state.inner_state
  inner = dict(partition.inner_states)
  for g, lr in lrs.items():
    masked = inner.get(g)
    hp = getattr(getattr(masked, "inner_state", None), "hyperparams", None)
    if hp is None or "learning_rate" not in hp:
      raise ValueError(f"group {g!r} has no learning rate to set (frozen, or unknown)")
    hp = dict(hp, learning_rate=jnp.asarray(lr, hp["learning_rate"].dtype)
              * jnp.ones_like(hp["learning_rate"]))
    inner[g] = masked._replace(inner_state=masked.inner_state._replace(hyperparams=hp))
  return opt_state._replace(inner_state=partition._replace(inner_states=inner))


def init_state(learner: Learner, optimizer: optax.GradientTransformation, key: jax.Array,
               params: Params | None = None) -> TrainState:
  """Fresh meta-parameters (or ``params``) with a fresh optimizer state."""
  params = learner.init_params(key) if params is None else params
  return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


def make_loss(
    learner: Learner, task: Task, *, meta_batch: int = 1, remat: lifetime.Remat = "step",
    chunk: int | None = None,
) -> Callable[[Params, jax.Array, Any], jax.Array]:
  """``loss(params, key, data)``: mean query loss over ``meta_batch`` lifetimes."""
  query_loss_fn = loss_fn(task.output)

  def episode_loss(params, key, data):
    k_episode, k_init = jax.random.split(key)
    episode = task.sample(k_episode, data)
    loss, _ = lifetime.query_loss(learner, params, episode, query_loss_fn, key=k_init,
                                  remat=remat, chunk=chunk)
    return loss

  def loss(params, key, data):
    if meta_batch == 1:
      return episode_loss(params, key, data)
    keys = jax.random.split(key, meta_batch)
    return jnp.mean(jax.vmap(episode_loss, (None, 0, None))(params, keys, data))

  return loss


#: Largest gradient entry Adam can take: its square must stay finite in float32.
MAX_GRADIENT = 1e18


def guard(loss: jax.Array, grads: Params) -> Params:
  """Gradients that `optax.apply_if_finite` will skip when the step cannot be applied.

  A non-finite loss with finite gradients must not update either, nor may a
  finite gradient so large (a lifetime that nearly diverged) that its square
  overflows Adam's second-moment estimate (which would then stay infinite):
  in both cases every gradient becomes NaN, so the step is skipped and counted.
  """
  big = jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grads)]).max()
  ok = jnp.isfinite(loss) & (big < MAX_GRADIENT)
  return jax.tree.map(lambda g: jnp.where(ok, g, jnp.nan), grads)


def make_meta_step(
    learner: Learner,
    task: Task,
    optimizer: optax.GradientTransformation,
    *,
    meta_batch: int = 1,
    remat: lifetime.Remat = "step",
    chunk: int | None = None,
    jit: bool = True,
) -> Callable[[TrainState, jax.Array, Any], tuple[TrainState, dict]]:
  """The meta-training step ``(state, key, data) -> (state, metrics)``.

  Metrics: ``loss`` (meta-loss before the update), ``grad_norm``, ``finite``
  (whether the update was applied), ``nonfinite_total`` and
  ``nonfinite_in_row`` (from `optax.apply_if_finite`).
  """
  loss = make_loss(learner, task, meta_batch=meta_batch, remat=remat, chunk=chunk)

  def meta_step(state: TrainState, key: jax.Array, data: Any):
    value, grads = jax.value_and_grad(loss)(state.params, key, data)
    grads = guard(value, grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": value,
        "grad_norm": jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads))),
        "finite": opt_state.last_finite,
        "nonfinite_total": opt_state.total_notfinite,
        "nonfinite_in_row": opt_state.notfinite_count,
    }
    return TrainState(state.step + 1, params, opt_state), metrics

  return jax.jit(meta_step, donate_argnums=0) if jit else meta_step


def init_states(learner: Learner, optimizer: optax.GradientTransformation,
                keys: jax.Array) -> TrainState:
  """`init_state` for ``R`` independent runs: every leaf gets a leading run axis."""
  return jax.vmap(lambda k: init_state(learner, optimizer, k))(keys)


def make_runs_meta_step(
    learner: Learner,
    task: Task,
    optimizer: optax.GradientTransformation,
    *,
    meta_batch: int = 1,
    remat: lifetime.Remat = "step",
    chunk: int | None = None,
) -> Callable[[TrainState, jax.Array, Any], tuple[TrainState, dict]]:
  """The meta-step of ``R`` independent runs as one `vmap`ped program.

  ``(states, keys (R,), data) -> (states, metrics)``: run ``r`` takes the step
  `make_meta_step` takes with ``states[r]`` and ``keys[r]``; the task's data is
  shared. Independent seeds of a table row, or a sweep over learning rates
  (`set_learning_rates`), become one program: on a GPU a single 300-wide
  lifetime leaves most of the chip idle. When the states are sharded along the
  run axis (`flpjax.parallel.shard_runs`), jit spreads the runs over devices.
  """
  step = make_meta_step(learner, task, optimizer, meta_batch=meta_batch, remat=remat,
                        chunk=chunk, jit=False)
  return jax.jit(jax.vmap(step, in_axes=(0, 0, None)), donate_argnums=0)
