"""Truncated backprop through time: the meta-gradient over K-step windows of a lifetime.

A lifetime of ``T`` support steps is cut into ``T / window`` windows, one per
meta-step. The estimator's state carries the current lifetime (its key, the
position ``t`` in it, the fast state after ``t`` steps); each meta-step runs
the next ``window`` steps from the carried fast state and takes as meta-loss
the episode's query loss with the fast state at the end of the window. The
carried fast state is a constant (`jax.lax.stop_gradient`): no gradient flows
into earlier windows, so memory and compute per meta-step are those of a
``window``-step lifetime, whatever ``T``.

Bias and variance: the forward pass is exact (the loss after the last window
of a lifetime is the full lifetime's query loss), but the gradient ignores how
the meta-parameters shaped the fast state before the window (the dependence
through earlier steps, e.g. of a plasticity rate through the whole
lifetime): the estimate is *biased* towards short-horizon effects, the more
so the smaller ``window``. Consecutive meta-steps see correlated windows of
the same lifetime. ``window == T`` is the full estimator (`full.make`): the
same operations, bit for bit on CPU for the settings tests/test_estimators.py
checks (FLP, one lifetime per meta-step; the gradient learner, two); in other
settings (e.g. ``remat='none'`` with several lifetimes per meta-step) XLA may
order a sum differently, and the two agree to rounding (one or two ulp).
Unbiased alternatives without reverse-mode memory: `es` (ES, and PES over
windows).

Keys: a lifetime is drawn from a *lifetime key* as `full.episode_loss` draws
it: ``k_episode, k_init = split(lifetime_key)``, the episode is
``task.sample(k_episode, data)`` (re-sampled, identically, at every window,
then sliced with `jax.lax.dynamic_slice_in_dim`) and the fast state at birth
is ``learner.init(params, k_init)``. A meta-step that finds the lifetime over
(``t == T``, also the state `init` returns) starts a new one whose lifetime key
is the meta-step's key (``meta_batch == 1``) or ``split(key, meta_batch)[i]``
(lifetime ``i``), the keys `full.make_loss` uses; later windows of that
lifetime ignore their meta-step's key. So with ``window == T`` every meta-step
is a fresh lifetime drawn from its key, as in `full`.

Example:
  >>> est = truncated.make(learner, task, window=10)
  >>> state = meta.init_state(learner, opt, jax.random.key(0), estimator=est)
  >>> step = meta.make_meta_step(est, opt)
  >>> state, metrics = step(state, jax.random.key(2), task.data)  # metrics['position'] == 10
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flpjax import lifetime
from flpjax.estimators import base
from flpjax.learners.base import Learner
from flpjax.types import FastState, Params, Task, loss_fn


class State(NamedTuple):
  """Truncated backprop's state: the lifetimes under way (``L = meta_batch``).

  Leaves have a leading axis ``(L,)`` when ``meta_batch > 1`` and none when it
  is 1 (``position`` never has one: the lifetimes advance together).

  Attributes:
    key: raw data of the lifetime keys, ``jax.random.key_data``: ``([L,] 2)``
      uint32 for threefry (raw, so that checkpoints hold plain arrays).
    position: steps of the current lifetimes already run, int32 ``()``;
      ``T`` when they are over (the next meta-step starts new ones).
    fast: the fast state after ``position`` steps, the structure of
      ``learner.init(params, key)`` (with the ``[L,]`` axis).
  """

  key: jax.Array
  position: jax.Array
  fast: FastState


def lifetime_steps(task: Task) -> int:
  """``T``, the support steps of the task's lifetimes (from the sampler's shapes)."""
  episode = jax.eval_shape(task.sample, jax.random.key(0), task.data)
  return episode.xs.shape[0]


def check_window(window: int, steps: int) -> None:
  """Raises ValueError unless ``window`` is a positive divisor of ``steps`` (``T``)."""
  if isinstance(window, bool) or not isinstance(window, int) or window < 1:
    raise ValueError(f"window must be a positive int, got {window!r}")
  if steps % window:
    raise ValueError(f"window={window} must divide the lifetime's T={steps} support steps")


def as_typed_key(key: jax.Array) -> jax.Array:
  """A typed PRNG key from a typed key or a legacy raw ``uint32`` key.

  A raw key ``(..., 2)`` (threefry) becomes typed keys ``(...)``; a typed key
  is returned as it is.
  """
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  return jax.random.wrap_key_data(key)


def lifetime_keys(key: jax.Array, meta_batch: int) -> jax.Array:
  """The lifetime keys `full.make_loss` derives from a meta-step key ``()``.

  Returns ``key`` itself ``()`` when ``meta_batch == 1``, else ``(L,)`` typed keys
  (``L = meta_batch``).
  """
  return key if meta_batch == 1 else jax.random.split(key, meta_batch)


def window_loss(learner: Learner, task: Task, *, window: int, remat: lifetime.Remat = "step",
                chunk: int | None = None) -> Callable[..., tuple[jax.Array, FastState]]:
  """``loss(params, key, start, fast, restart, data) -> (loss, fast_end)`` of one window.

  The lifetime drawn from ``key`` (as `full.episode_loss`) runs its support
  steps ``[start, start + window)`` from ``fast`` (a constant), or from
  ``learner.init(params, k_init)`` where ``restart``; the loss is the query
  loss after them. The trunk encodes the window's support and the query in one
  batch, as `lifetime.query_predictions` does.

  Args (of the returned function):
    params: meta-parameters.
    key: the lifetime key (typed).
    start: int32 scalar, the window's first step (``0`` where ``restart``).
    fast: the fast state after ``start`` steps (ignored where ``restart``).
    restart: bool scalar: start from the learner's fast state at birth.
    data: the task's data.

  Returns:
    ``(loss (), fast_end)``.
  """
  query_loss_fn = loss_fn(task.output)

  def loss(params, key, start, fast, restart, data):
    k_episode, k_init = jax.random.split(key)
    episode = task.sample(k_episode, data)
    fresh = learner.init(params, k_init)
    fast = jax.tree.map(lambda a, b: jnp.where(restart, a, b), fresh,
                        jax.lax.stop_gradient(fast))
    xs = jax.lax.dynamic_slice_in_dim(episode.xs, start, window)
    ys = jax.lax.dynamic_slice_in_dim(episode.ys, start, window)
    t, b = xs.shape[:2]
    x = jnp.concatenate([xs.reshape((t * b,) + xs.shape[2:]), episode.xq])
    h = learner.encode(params, x)
    fast, _ = lifetime.run_encoded(learner, params, h[: t * b].reshape((t, b) + h.shape[1:]), ys,
                                   fast=fast, remat=remat, chunk=chunk)
    pred = learner.predict(params, fast, h[t * b:])
    return query_loss_fn(pred, episode.yq), fast

  return loss


def init_state(learner: Learner, steps: int, meta_batch: int, params: Params,
               key: jax.Array) -> State:
  """A `State` whose lifetimes are over (``position == T``), with valid shapes.

  The fast state is ``learner.init(params, k_init)`` of lifetimes drawn from
  ``key``; it is never used (the first meta-step starts new lifetimes) but
  gives the state its structure, so that it can be checkpointed and `vmap`ped.
  """
  keys = lifetime_keys(as_typed_key(key), meta_batch)
  born = lambda k: learner.init(params, jax.random.split(k)[1])  # noqa: E731
  fast = born(keys) if meta_batch == 1 else jax.vmap(born)(keys)
  # Fresh buffers: the learner's fast state at birth may be the very arrays of ``params``,
  # and the meta-step donates the whole `TrainState`.
  fast = jax.tree.map(jnp.copy, fast)
  return State(jnp.copy(jax.random.key_data(keys)), jnp.asarray(steps, jnp.int32), fast)


def advance(state: State, key: jax.Array, steps: int, meta_batch: int):
  """Where this meta-step's window is: ``(keys, key_data, start, restart)``.

  ``restart`` (``state.position >= T``): new lifetimes from ``key``
  (`lifetime_keys`) starting at 0; otherwise the carried ones at
  ``state.position``.

  Returns:
    ``keys`` typed ``([L,])``, their raw ``key_data ([L,] 2)`` (for the next
    `State`), ``start`` int32 ``()`` and ``restart`` bool ``()``; ``[L,]`` only
    when ``meta_batch > 1``.
  """
  key = as_typed_key(key)
  restart = state.position >= steps
  data = jnp.where(restart, jax.random.key_data(lifetime_keys(key, meta_batch)), state.key)
  keys = jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
  start = jnp.where(restart, 0, state.position).astype(jnp.int32)
  return keys, data, start, restart


def make(learner: Learner, task: Task, *, window: int, meta_batch: int = 1,
         remat: lifetime.Remat = "step", chunk: int | None = None) -> base.Estimator:
  """Truncated backprop through ``window``-step windows (see the module docstring).

  Args:
    learner: the learner.
    task: the meta-training task; its lifetimes have ``T`` support steps.
    window: steps per meta-step; must divide ``T``. ``window == T`` is `full.make`.
    meta_batch: independent lifetimes per meta-step (`vmap`ped); the loss is
      their mean.
    remat, chunk: checkpointing of the window's scan, as `lifetime.run`.

  Returns:
    An `Estimator` whose state is a `State`; metrics ``'loss'`` (the query
    loss after this window, mean over lifetimes) and ``'position'`` (steps of
    the lifetimes run after this window, in ``[window, T]``).

  Raises:
    ValueError: a window that is not a positive divisor of ``T``, or a
      meta_batch < 1.
  """
  steps = lifetime_steps(task)
  check_window(window, steps)
  if meta_batch < 1:
    raise ValueError(f"meta_batch must be >= 1, got {meta_batch}")
  one = window_loss(learner, task, window=window, remat=remat, chunk=chunk)

  def init(params: Params, key: jax.Array) -> State:
    return init_state(learner, steps, meta_batch, params, key)

  def meta_grad(params: Params, state: State, key: jax.Array, data: Any):
    keys, key_data, start, restart = advance(state, key, steps, meta_batch)

    def loss(p):
      if meta_batch == 1:
        return one(p, keys, start, state.fast, restart, data)
      values, fast = jax.vmap(one, (None, 0, None, 0, None, None))(
          p, keys, start, state.fast, restart, data)
      return jnp.mean(values), fast

    (value, fast), grads = jax.value_and_grad(loss, has_aux=True)(params)
    position = start + window
    new = State(key_data, position, jax.lax.stop_gradient(fast))
    return grads, new, {"loss": value, "position": position}

  return base.Estimator(init, meta_grad, name="truncated")


# ----------------------------------------------------------------------------- config plug-in
# config.estimator = 'truncated' (flpjax.config.registry); ``truncated.window`` is also PES's.

CONFIG = {"truncated": dict(window=10)}


def validate_config(config) -> None:
  """``truncated.window`` divides the lifetime's steps (`check_window`)."""
  from flpjax.config import build, checks  # pylint: disable=g-import-not-at-top
  checks.check_int(config, "truncated.window", 1)
  steps = build.lifetime_steps(config)
  try:
    check_window(config.truncated.window, steps)
  except ValueError:
    divisors = [d for d in range(1, steps + 1) if steps % d == 0]
    checks.fail("truncated.window", config.truncated.window,
                f"a divisor of the lifetime's {steps} steps: one of {divisors}")


def from_config(config, learner: Learner, task: Task) -> base.Estimator:
  """`make` with ``truncated.window``, ``meta.batch_size``, ``meta.remat`` and ``meta.chunk``."""
  m = config.meta
  return make(learner, task, window=config.truncated.window, meta_batch=m.batch_size,
              remat=m.remat, chunk=m.chunk or None)
