"""No-learning baselines: what a learner reaches without learning anything within its lifetime.

Every "it learns" claim is measured against these, on the very lifetimes the
learners are meta-tested on (`evaluate.evaluate` draws lifetime ``i`` from
``split(key, lifetimes)[i]``, its episode from the first half of
``split(that)``; so does `no_learning`):

* regression (sine): ``family_mean``, the mean squared error of predicting the
  family's mean function ``E[A sin(x + phi)]`` (`sine.family_mean`), the best
  prediction from ``x`` alone. It is the same for both stream orders (the
  order changes only the support stream).
* classification (Omniglot, mini-ImageNet): ``pixel_prototype``, the error of
  a nearest-class-mean classifier on the raw pixels of the episode's support
  images (Euclidean distance; a learner whose features carry nothing beyond
  the pixels and which stores its support set perfectly); and ``chance``,
  ``1 - 1 / ways``.

Each baseline comes with its standard error over lifetimes and its
per-lifetime values (for paired comparisons with a network's lifetimes).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flpjax.tasks import sine
from flpjax.types import Task


def family_mean_mse(xq: jax.Array, yq: jax.Array) -> jax.Array:
  """Query MSE ``()`` of the family-mean predictor; ``xq (Q, F + 1)`` (``x`` last), ``yq (Q, 1)``."""
  return jnp.mean(jnp.square(yq[:, 0] - sine.family_mean(xq[:, -1])))


def pixel_prototype_error(xs: jax.Array, ys: jax.Array, xq: jax.Array, yq: jax.Array,
                          ways: int) -> jax.Array:
  """Query error ``()`` of the nearest class mean of raw support pixels.

  Args:
    xs: support images ``(T, B, H, W, C)``; ys: their labels ``(T, B)`` in ``[0, ways)``.
    xq: query images ``(Q, H, W, C)``; yq: their labels ``(Q,)``.
    ways: classes of the episode.
  """
  support = xs.reshape((-1, math.prod(xs.shape[2:])))
  onehot = jax.nn.one_hot(ys.reshape(-1), ways, dtype=support.dtype)  # (N, ways)
  means = (onehot.T @ support) / jnp.maximum(onehot.sum(0), 1.0)[:, None]  # (ways, D)
  query = xq.reshape((xq.shape[0], -1))
  dist = (jnp.sum(query * query, 1, keepdims=True) - 2 * query @ means.T
          + jnp.sum(means * means, 1)[None])
  return jnp.mean(jnp.argmin(dist, axis=1) != yq)


def _summary(values: np.ndarray) -> dict[str, Any]:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()),
          "stderr": float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1
          else None, "per_lifetime": values.tolist()}


def no_learning(task: Task, key: jax.Array, lifetimes: int, *, ways: int | None = None,
                batch: int = 10) -> dict[str, dict]:
  """The no-learning baselines of ``task`` on the lifetimes `evaluate.evaluate` draws from ``key``.

  Args:
    task: the meta-test task (sine, or a few-shot task).
    key: the evaluation key (``config.eval.seed``).
    lifetimes: number of lifetimes.
    ways: classes per episode (classification only).
    batch: lifetimes sampled at once.

  Returns:
    ``{name: {'mean', 'stderr', 'per_lifetime'}}``: ``family_mean`` for
    regression; ``pixel_prototype`` and ``chance`` for classification.
  """
  keys = jax.random.split(key, lifetimes)
  if task.output == "regression":
    one = lambda k, data: family_mean_mse(*task.sample(jax.random.split(k)[0], data)[2:])  # noqa: E731
  else:
    if not ways:
      raise ValueError("no_learning: a classification task needs ways (classes per episode)")

    def one(k, data):
      e = task.sample(jax.random.split(k)[0], data)
      return pixel_prototype_error(e.xs, e.ys, e.xq, e.yq, ways)

  run = jax.jit(jax.vmap(one, (0, None)))
  values = np.concatenate([np.asarray(run(keys[i:i + batch], task.data))
                           for i in range(0, lifetimes, batch)])
  if task.output == "regression":
    return {"family_mean": _summary(values)}
  chance = 1.0 - 1.0 / ways
  return {"pixel_prototype": _summary(values),
          "chance": {"mean": chance, "stderr": 0.0, "per_lifetime": None}}
