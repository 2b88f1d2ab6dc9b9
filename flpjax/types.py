"""The shared vocabulary of flpjax (the lowest layer: imports nothing from flpjax).

* `Episode`: one lifetime's data.
* `Task`: a sampler of episodes plus the kind of output it asks for.
* `Output`: ``'regression'`` or ``'classification'``; it belongs to the task
  and decides the loss (`loss`) and the per-lifetime metrics (`metrics`).
* `Group`: a meta-parameter group that a learner declares (name, default
  meta-learning rate), so that the optimizer, the config validation and the
  analyses ask the learner instead of repeating names.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp

Output = Literal["regression", "classification"]
OUTPUTS = ("regression", "classification")
Params = dict
FastState = dict


class Episode(NamedTuple):
  """One lifetime's data.

  Attributes:
    xs: support stream ``(T, B, *input_shape)``: ``T`` steps of ``B`` examples.
    ys: support targets ``(T, B, ...)``.
    xq: query inputs ``(Q, *input_shape)``.
    yq: query targets ``(Q, ...)``.
  """

  xs: jax.Array
  ys: jax.Array
  xq: jax.Array
  yq: jax.Array


class Task(NamedTuple):
  """A family of lifetimes.

  Attributes:
    sample: ``sample(key, data) -> Episode``, pure and jittable.
    data: arrays the sampler reads (a pool of functions ``(N,)``, uint8 images
      ``(classes, images_per_class, H, W, C)``); passed to ``sample`` as an
      argument so that jit does not bake them into the program.
    output: ``'regression'`` or ``'classification'``.
    input_shape: shape of one input example, e.g. ``(11,)`` or ``(84, 84, 1)``.
    output_dim: width of a regression target (classification: number of
      classes per episode).
    data_axes: how ``data`` maps over the runs of `meta.make_runs_meta_step`
      (its ``vmap`` ``in_axes``): None, shared by every run; e.g. ``(None, 0)``
      for ``(shared arrays, one stream order per run)`` (order flags ``(R,)``).
  """

  sample: Callable[[jax.Array, Any], Episode]
  data: Any
  output: str
  input_shape: tuple[int, ...]
  output_dim: int
  data_axes: Any = None


class Group(NamedTuple):
  """A meta-parameter group: its own Adam and meta-learning rate (`meta.make_optimizer`).

  Attributes:
    name: the label of its leaves (`Learner.labels`), e.g. ``'alpha'``.
    default_lr: the meta-learning rate used when a config does not set one.
    doc: one line saying what the group holds.
    fallback: another group whose rate this one takes when it is not given
      (the readout's plasticity takes the plasticity's rate).
  """

  name: str
  default_lr: float
  doc: str = ""
  fallback: str | None = None


def loss(output: str, y_hat: jax.Array, y: jax.Array) -> jax.Array:
  """Loss of one lifetime step (gradient learners) or of the query (meta-loss).

  Regression: mean squared error over the batch (targets ``(B, m)``).
  Classification: mean cross-entropy of integer labels ``(B,)`` over all
  readout logits (the reference's 1000-way softmax).

  Args:
    output: ``'regression'`` or ``'classification'``.
    y_hat: outputs ``(B, m)`` (``(Q, m)`` on the query set).
    y: targets ``(B, m)``, or integer labels ``(B,)``.

  Returns:
    The loss, ``()``.
  """
  chex.assert_equal_shape_prefix((y_hat, y), 1)
  if output == "classification":
    logp = jax.nn.log_softmax(y_hat, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1))
  return jnp.mean((y_hat - y) ** 2)


def loss_fn(output: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The meta-loss of an output kind (`loss`): ``f(pred (Q, m), yq (Q, m) or (Q,)) -> ()``."""
  return lambda pred, y: loss(output, pred, y)


def metrics(output: str, pred: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
  """Per-lifetime metrics on the query set: ``mse``, or ``accuracy``, ``error`` and ``loss``.

  ``pred`` is ``(Q, m)``, ``y`` ``(Q, m)`` (regression) or integer labels ``(Q,)``;
  every metric is ``()``.
  """
  if output == "classification":
    acc = jnp.mean(jnp.argmax(pred, axis=-1) == y)
    return {"accuracy": acc, "error": 1.0 - acc, "loss": loss(output, pred, y)}
  return {"mse": jnp.mean((pred - y) ** 2)}
