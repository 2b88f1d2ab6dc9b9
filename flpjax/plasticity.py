"""Local plasticity rules: ``(w, pre, post, alpha) -> w'``.

Each rule sees only quantities local to a synapse: its weight, the activity of
its pre- and post-synaptic neurons, and its own plasticity coefficient.
Updates are **summed** over the batch, as in the reference code (REFERENCE.md
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


def oja(w: jax.Array, pre: jax.Array, post: jax.Array, alpha: jax.Array) -> jax.Array:
  """Oja's rule, batch-summed, per-synapse ``alpha`` (REFERENCE.md 2.5)."""
  decay = jnp.sum(post * post, axis=0)[:, None]
  return w + alpha * (post.T @ pre - decay * w)


def hebb(w: jax.Array, pre: jax.Array, post: jax.Array, alpha: jax.Array) -> jax.Array:
  """Hebb's rule ``w + alpha * post.T @ pre``, batch-summed."""
  return w + alpha * (post.T @ pre)


RULES: dict[str, Rule] = {"oja": oja, "hebb": hebb}


def get_rule(name: str) -> Rule:
  """The rule called ``name``; raises ValueError listing the known rules."""
  try:
    return RULES[name]
  except KeyError:
    raise ValueError(
        f"unknown plasticity rule {name!r}; expected one of {sorted(RULES)}") from None
