"""What a task is: a sampler of lifetimes plus the kind of output it asks for."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flpjax.learners import inner_loss
from flpjax.lifetime import Episode


class Task(NamedTuple):
  """A family of lifetimes.

  Attributes:
    sample: ``sample(key, data) -> Episode``, pure and jittable.
    data: arrays the sampler reads (a pool of functions, images); passed to
      ``sample`` as an argument so that jit does not bake them into the
      program.
    output: ``'regression'`` or ``'classification'``.
    input_shape: shape of one input example.
    output_dim: width of a regression target (classification: number of
      classes per episode).
  """

  sample: Callable[[jax.Array, Any], Episode]
  data: Any
  output: str
  input_shape: tuple[int, ...]
  output_dim: int


def loss_fn(output: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The meta-loss: mean squared error, or mean cross-entropy of integer labels."""
  return lambda pred, y: inner_loss(output, pred, y)


def metrics(output: str, pred: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
  """Per-lifetime metrics on the query set: ``mse``, or ``accuracy`` and ``error``."""
  if output == "classification":
    acc = jnp.mean(jnp.argmax(pred, axis=-1) == y)
    return {"accuracy": acc, "error": 1.0 - acc, "loss": loss_fn(output)(pred, y)}
  return {"mse": jnp.mean((pred - y) ** 2)}
