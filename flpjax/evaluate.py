"""Meta-testing: many independent lifetimes, mean and standard error.

Lifetimes are `vmap`ped in groups of ``batch`` (`jax.lax.map` with
``batch_size``), so memory stays bounded while the device is kept busy.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flpjax import lifetime
from flpjax.learners import Learner, Params
from flpjax.tasks.base import Task, metrics as task_metrics


def make_lifetime_metrics(learner: Learner, task: Task):
  """``f(params, key, data) -> metrics`` of one fresh lifetime (no gradient)."""

  def one(params: Params, key: jax.Array, data: Any) -> dict:
    k_episode, k_init = jax.random.split(key)
    episode = task.sample(k_episode, data)
    fast, _ = lifetime.run(learner, params, episode.xs, episode.ys, key=k_init, remat="none")
    pred = lifetime.predict(learner, params, fast, episode.xq)
    return task_metrics(task.output, pred, episode.yq)

  return one


def summarize(values: dict[str, np.ndarray]) -> dict[str, Any]:
  """Mean, standard error (std with ddof 1 over sqrt n) and n of every metric."""
  out = {}
  for name, v in values.items():
    v = np.asarray(v, np.float64)
    n = v.shape[0]
    out[name] = float(v.mean())
    out[f"{name}_stderr"] = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
  out["lifetimes"] = int(next(iter(values.values())).shape[0])
  return out


def evaluate(
    learner: Learner,
    task: Task,
    params: Params,
    key: jax.Array,
    *,
    lifetimes: int = 50,
    batch: int = 10,
) -> dict[str, Any]:
  """Meta-test metrics over ``lifetimes`` lifetimes drawn from ``key``.

  Args:
    learner: the learner.
    task: the meta-test task (fresh functions, or meta-test classes).
    params: meta-parameters.
    key: PRNG key; lifetime ``i`` uses ``jax.random.split(key, lifetimes)[i]``,
      so results do not depend on ``batch``.
    lifetimes: number of lifetimes (paper: 50 regression, 500 classification).
    batch: lifetimes evaluated together with `vmap`.

  Returns:
    ``{metric: mean, metric_stderr: ..., 'lifetimes': n, 'per_lifetime': {...}}``.
  """
  one = make_lifetime_metrics(learner, task)
  keys = jax.random.split(key, lifetimes)

  @jax.jit
  def run_all(params, keys, data):
    return jax.lax.map(lambda k: one(params, k, data), keys, batch_size=min(batch, lifetimes))

  values = jax.device_get(run_all(params, keys, task.data))
  result = summarize(values)
  result["per_lifetime"] = {k: np.asarray(v).tolist() for k, v in values.items()}
  return result
