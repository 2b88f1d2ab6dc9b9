"""A lifetime: `jax.lax.scan` of a learner's step over a stream of examples.

The dynamics live here and nowhere else; how the meta-gradient of the
end-of-lifetime loss is estimated (`flpjax.estimators`) is separate, as in
learned_optimization's split between unrolls and gradient estimators.

Memory: reverse-mode differentiation of a scan stores what each step needs for
its backward pass. With ``remat='step'`` (default) the step is wrapped in
`jax.checkpoint`, so only the carried fast weights of every step are stored
(``T x |fast|``) and each step's intermediates are recomputed in the backward
pass. ``remat='nested'`` checkpoints chunks of ``chunk`` steps as well, storing
about ``T / chunk + chunk`` fast states at the price of one more forward pass;
use it for long lifetimes or wide plastic layers. ``remat='none'`` stores every
intermediate (fastest for short lifetimes, most memory).

Everything here is a pure function of arrays: compose it with `jax.jit`,
`jax.vmap` (e.g. over lifetimes' keys, or over runs' parameters) and `jax.grad`.
Inputs whose example shape is not the learner's ``input_shape`` are refused
with one ``ValueError`` line before anything is traced (`learners.check_inputs`).

Example (``learner``, ``params`` and a task as in `flpjax.meta`'s example):
  >>> episode = task.sample(jax.random.key(3), task.data)
  >>> fast, _ = lifetime.run(learner, params, episode.xs, episode.ys)
  >>> y_hat = lifetime.predict(learner, params, fast, episode.xq)   # (Q, m)
  >>> loss, _ = lifetime.query_loss(learner, params, episode, types.loss_fn("regression"))
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import chex
import jax
import jax.numpy as jnp

from flpjax.learners.base import Learner, check_inputs
from flpjax.types import Episode, FastState, Params

Remat = Literal["none", "step", "nested"]
REMATS = ("none", "step", "nested")


def encode_stream(learner: Learner, params: Params, xs: jax.Array) -> jax.Array:
  """Frozen-trunk features of a whole stream ``(T, B, *input_shape) -> (T, B, in)`` in one call.

  ``in`` is the first plastic layer's input width (``learner.encode``'s output).
  """
  check_inputs(learner, xs.shape[2:], "xs (T, B, *input_shape)")
  t, b = xs.shape[:2]
  h = learner.encode(params, xs.reshape((t * b,) + xs.shape[2:]))
  return h.reshape((t, b) + h.shape[1:])


def _scan(body, carry, xs, remat: Remat, chunk: int):
  if remat == "none":
    return jax.lax.scan(body, carry, xs)
  body = jax.checkpoint(body)
  if remat == "step":
    return jax.lax.scan(body, carry, xs)
  if remat != "nested":
    raise ValueError(f"unknown remat {remat!r}; expected one of {REMATS}")
  t = jax.tree.leaves(xs)[0].shape[0]
  c = max(1, min(chunk, t))
  n = t // c
  head = jax.tree.map(lambda a: a[: n * c].reshape((n, c) + a.shape[1:]), xs)

  @jax.checkpoint
  def outer(carry, chunk_xs):
    return jax.lax.scan(body, carry, chunk_xs)

  carry, ys = jax.lax.scan(outer, carry, head)
  ys = jax.tree.map(lambda a: a.reshape((n * c,) + a.shape[2:]), ys)
  if n * c < t:
    carry, tail_ys = jax.lax.scan(body, carry, jax.tree.map(lambda a: a[n * c:], xs))
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, tail_ys)
  return carry, ys


def run(
    learner: Learner,
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    *,
    key: jax.Array | None = None,
    fast: FastState | None = None,
    remat: Remat = "step",
    chunk: int | None = None,
    observe: Callable[[Params, FastState, FastState, Any], Any] | None = None,
) -> tuple[FastState, Any]:
  """Runs a lifetime and returns the final fast state.

  Args:
    learner: the learner.
    params: meta-parameters.
    xs: inputs ``(T, B, *input_shape)``.
    ys: targets ``(T, B, ...)``.
    key: PRNG key ``()`` for the learner's ``init`` (readout reset).
    fast: the fast state to start from (default ``learner.init(params, key)``).
    remat: checkpointing of the scan (see module docstring).
    chunk: steps per chunk for ``remat='nested'`` (default ``ceil(sqrt(T))``).
    observe: optional ``observe(params, fast_before, fast_after, (h, y))``
      evaluated at every step; its outputs are stacked over steps (for the
      analyses). Not differentiated through by `meta`.

  Returns:
    ``(fast_T, observations)``: the fast state after ``T`` steps, laid out as
    ``learner.init``'s (each learner's module docstring; FLP's is
    ``{layer: {'w': (out, in)}}``), and ``observe``'s outputs with a leading
    ``(T, ...)`` axis (None without ``observe``).
  """
  return run_encoded(learner, params, encode_stream(learner, params, xs), ys, key=key,
                     fast=fast, remat=remat, chunk=chunk, observe=observe)


def run_encoded(learner: Learner, params: Params, h: jax.Array, ys: jax.Array, *,
                key: jax.Array | None = None, fast: FastState | None = None,
                remat: Remat = "step", chunk: int | None = None, observe=None):
  """`run` on a stream already through the frozen trunk: ``h (T, B, in)``, ``ys (T, B, ...)``.

  ``in`` is the first plastic layer's input width (`encode_stream`'s output);
  the other arguments and the result are `run`'s.
  """
  chex.assert_rank(h, 3)
  chex.assert_equal_shape_prefix((h, ys), 2)  # one target per example, step for step
  if fast is None:
    fast = learner.init(params, key)

  def body(f, ex):
    new = learner.step(params, f, ex)
    return new, (observe(params, f, new, ex) if observe is not None else None)

  chunk = chunk or math.isqrt(max(h.shape[0] - 1, 0)) + 1
  return _scan(body, fast, (h, ys), remat, chunk)


def predict(learner: Learner, params: Params, fast: FastState, x: jax.Array) -> jax.Array:
  """Outputs ``(N, m)`` of the network with fast weights ``fast`` on raw inputs ``(N, *input_shape)``."""
  check_inputs(learner, x.shape[1:], "x (N, *input_shape)")
  return learner.predict(params, fast, learner.encode(params, x))


def query_predictions(
    learner: Learner,
    params: Params,
    episode: Episode,
    *,
    key: jax.Array | None = None,
    remat: Remat = "step",
    chunk: int | None = None,
) -> jax.Array:
  """Outputs on the query inputs after a lifetime on the episode's support stream.

  The frozen trunk runs once on support and query together (one batch of
  ``T B + Q`` examples).

  Args:
    learner, params: the learner and its meta-parameters.
    episode: support ``xs (T, B, *input_shape)``, ``ys (T, B, ...)``; query
      ``xq (Q, *input_shape)``.
    key: PRNG key for the learner's ``init``.
    remat, chunk: as for `run`.

  Returns:
    The predictions on the query inputs, ``(Q, m)``.
  """
  check_inputs(learner, episode.xs.shape[2:], "episode.xs (T, B, *input_shape)")
  check_inputs(learner, episode.xq.shape[1:], "episode.xq (Q, *input_shape)")
  t, b = episode.xs.shape[:2]
  x = jnp.concatenate([episode.xs.reshape((t * b,) + episode.xs.shape[2:]), episode.xq])
  h = learner.encode(params, x)
  fast, _ = run_encoded(learner, params, h[: t * b].reshape((t, b) + h.shape[1:]), episode.ys,
                        key=key, remat=remat, chunk=chunk)
  return learner.predict(params, fast, h[t * b:])


def query_loss(
    learner: Learner,
    params: Params,
    episode: Episode,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    key: jax.Array | None = None,
    remat: Remat = "step",
    chunk: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Meta-loss of one lifetime: the query loss after the whole support stream.

  Differentiable with `jax.grad` with respect to ``params`` (the meta-gradient
  of full backprop, `flpjax.estimators.full`).

  Args:
    learner, params, episode, key, remat, chunk: as for `query_predictions`.
    loss_fn: ``loss_fn(pred (Q, m), yq) -> ()``, e.g. `flpjax.types.loss_fn`.

  Returns:
    ``(loss (), predictions (Q, m))`` with predictions on the query inputs.
  """
  pred = query_predictions(learner, params, episode, key=key, remat=remat, chunk=chunk)
  return loss_fn(pred, episode.yq), pred
