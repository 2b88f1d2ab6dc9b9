"""Local plasticity rules: ``(w, pre, post, alpha) -> w'``.

Each rule sees only quantities local to a synapse: its weight, the activity of
its pre- and post-synaptic neurons, and its own plasticity coefficient.
Updates are **summed** over the batch, as in the reference code (docs/fidelity.md
2.5): for a batch of ``B`` examples

  oja:  w' = w + alpha * (post.T @ pre - diag(sum_b post[b]**2) @ w)
  hebb: w' = w + alpha * (post.T @ pre)

Shapes: ``w, alpha`` are ``(out, in)`` (``alpha`` may be anything that
broadcasts, e.g. a scalar), ``pre`` is ``(B, in)``, ``post`` is ``(B, out)``.

Example:
  >>> w = jnp.zeros((3, 2)); pre = jnp.ones((1, 2)); post = jnp.ones((1, 3))
  >>> oja(w, pre, post, 0.5)
  Array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], dtype=float32)
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Rule = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def oja_increment(w: jax.Array, pre: jax.Array, post: jax.Array,
                  alpha: jax.Array) -> jax.Array:
  """Oja's change ``alpha * (post.T @ pre - diag(sum_b post**2) @ w)``, ``(out, in)``."""
  decay = jnp.sum(post * post, axis=0)[:, None]
  return alpha * (post.T @ pre - decay * w)


def hebb_increment(w: jax.Array, pre: jax.Array, post: jax.Array,
                   alpha: jax.Array) -> jax.Array:
  """Hebb's change ``alpha * post.T @ pre``, ``(out, in)`` (``w`` only for its signature)."""
  del w
  return alpha * (post.T @ pre)


def oja(w: jax.Array, pre: jax.Array, post: jax.Array, alpha: jax.Array) -> jax.Array:
  """Oja's rule, batch-summed, per-synapse ``alpha`` (docs/fidelity.md 2.5).

  Args:
    w: weights ``(out, in)``.
    pre: pre-synaptic activity ``(B, in)``.
    post: post-synaptic activity ``(B, out)``.
    alpha: plasticity ``(out, in)``, or anything that broadcasts (e.g. ``()``).

  Returns:
    The new weights ``(out, in)``.
  """
  return w + oja_increment(w, pre, post, alpha)


def hebb(w: jax.Array, pre: jax.Array, post: jax.Array, alpha: jax.Array) -> jax.Array:
  """Hebb's rule ``w + alpha * post.T @ pre``, batch-summed; shapes as `oja`, ``(out, in)``."""
  return w + hebb_increment(w, pre, post, alpha)


def oja_stable_increment(w: jax.Array, pre: jax.Array, post: jax.Array,
                         alpha: jax.Array) -> jax.Array:
  """Oja's change with its decay factor bounded: ``alpha post.T @ pre - min(alpha D, 1) w``.

  ``D = diag(sum_b post**2)``. Where ``alpha D <= 1`` this is Oja's rule; beyond,
  the decay term removes at most the whole weight in one step instead of
  flipping its sign (Oja's rule oscillates and explodes once ``alpha D > 2``).
  A sign-free stabiliser: it bounds the step whatever the sign of ``alpha``.
  Shapes as `oja`: ``w, alpha (out, in)``, ``pre (B, in)``, ``post (B, out)``;
  returns ``(out, in)``.
  """
  decay = jnp.sum(post * post, axis=0)[:, None]
  return alpha * (post.T @ pre) - jnp.clip(alpha * decay, -1.0, 1.0) * w


def oja_stable(w: jax.Array, pre: jax.Array, post: jax.Array, alpha: jax.Array) -> jax.Array:
  """`oja_stable_increment` applied: Oja's rule with its decay factor bounded by 1.

  Shapes as `oja`: ``w, alpha (out, in)``, ``pre (B, in)``, ``post (B, out)``;
  returns ``(out, in)``.
  """
  return w + oja_stable_increment(w, pre, post, alpha)


RULES: dict[str, Rule] = {"oja": oja, "hebb": hebb, "oja_stable": oja_stable}
#: The same rules as changes, ``w' - w`` (computed without forming ``w'``).
INCREMENTS: dict[str, Rule] = {"oja": oja_increment, "hebb": hebb_increment,
                               "oja_stable": oja_stable_increment}


def get_rule(name: str, *, increment: bool = False) -> Rule:
  """The rule called ``name`` (its change ``w' - w`` with ``increment=True``).

  Raises ValueError listing the known rules.
  """
  try:
    return (INCREMENTS if increment else RULES)[name]
  except KeyError:
    raise ValueError(
        f"unknown plasticity rule {name!r}; expected one of {sorted(RULES)}") from None
