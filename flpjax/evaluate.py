"""Meta-testing: many independent lifetimes, mean and standard error.

Two layers:

* pure and array-valued, for your own `jax.jit` / `jax.vmap`:
  `lifetime_metrics` (``{metric: (n,)}`` over ``n`` lifetimes' keys),
  `make_lifetime_metrics` (one lifetime) and `mean_and_stderr`;
* the host-side summary built on them: `evaluate` runs the lifetimes in
  chunks of ``batch`` (one jitted `lifetime_metrics` per chunk) from a host
  loop that logs progress (rate, ETA) and keeps the next chunk in flight while
  the previous one is fetched (the last chunk is padded to the same shape, so
  there is one compilation), and `summarize` turns the arrays into floats.

Example:
  >>> keys = jax.random.split(jax.random.key(0), 16)
  >>> per_lifetime = jax.jit(lambda p: evaluate.lifetime_metrics(learner, task, p, keys,
  ...                                                            task.data))(params)
  >>> per_lifetime["mse"].shape
  (16,)
  >>> evaluate.evaluate(learner, task, params, jax.random.key(0), lifetimes=16)["mse"]
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flpjax import lifetime
from flpjax.learners import Learner, Params, check_task
from flpjax.reporting.progress import Progress
from flpjax.tasks.base import Task
from flpjax.tasks.base import metrics as task_metrics


def make_lifetime_metrics(learner: Learner, task: Task):
  """``f(params, key (), data) -> {metric: ()}`` of one fresh lifetime (no gradient).

  The key is split into the episode's key and the learner's ``init`` key (as
  in meta-training). Metrics: ``mse`` (regression), or ``accuracy``,
  ``error`` and ``loss`` (classification), on the episode's query set.

  Raises:
    ValueError: the task's input shape is not the learner's (one line).
  """
  check_task(learner, task)

  def one(params: Params, key: jax.Array, data: Any) -> dict:
    k_episode, k_init = jax.random.split(key)
    episode = task.sample(k_episode, data)
    pred = lifetime.query_predictions(learner, params, episode, key=k_init, remat="none")
    return task_metrics(task.output, pred, episode.yq)

  return one


def lifetime_metrics(learner: Learner, task: Task, params: Params, keys: jax.Array,
                     data: Any) -> dict[str, jax.Array]:
  """Metrics of ``n`` independent lifetimes, one per key: ``{metric: (n,)}``.

  Pure and jittable, and `vmap`-able over ``params`` (e.g. the runs of
  `meta.make_runs_meta_step`, giving ``(R, n)``); lifetime ``i`` is the one
  `evaluate` draws from ``keys[i]``.

  Args:
    learner, task: as for `make_lifetime_metrics`.
    params: meta-parameters (``learner.init_params``'s tree).
    keys: PRNG keys ``(n,)``, e.g. ``jax.random.split(key, n)``.
    data: the task's data (``task.data``), an argument so that jit does not
      bake it into the program.

  Returns:
    ``{metric: (n,)}`` arrays.
  """
  return jax.vmap(make_lifetime_metrics(learner, task), (None, 0, None))(params, keys, data)


def mean_and_stderr(values: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """``{metric: mean (), metric_stderr: std (ddof 1) / sqrt(n) ()}`` of ``{metric: (n,)}`` arrays.

  The jittable counterpart of `summarize` (which also counts diverged
  lifetimes and returns Python floats).
  """
  out = {}
  for name, v in values.items():
    n = v.shape[0]
    out[name] = jnp.mean(v)
    out[f"{name}_stderr"] = (jnp.std(v, ddof=1) / math.sqrt(n) if n > 1
                             else jnp.full((), jnp.nan, v.dtype))
  return out


def summarize(values: dict[str, np.ndarray]) -> dict[str, Any]:
  """Mean, standard error (std with ddof 1 over sqrt n) and n of every metric.

  ``values`` is ``{metric: (n,)}`` (one entry per lifetime, e.g. `lifetime_metrics`'s
  on the host); the result's values are Python floats and ints. A lifetime
  whose metric is not finite (its fast weights diverged) makes the mean NaN,
  as it should; ``nonfinite_lifetimes`` counts them and, when there
  are some, ``<metric>_finite_mean`` is the mean over the others.
  """
  out = {}
  bad = 0
  for name, v in values.items():
    v = np.asarray(v, np.float64)
    n = v.shape[0]
    out[name] = float(v.mean())
    out[f"{name}_stderr"] = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    finite = np.isfinite(v)
    bad = max(bad, int(n - finite.sum()))
    if not finite.all() and finite.any():
      out[f"{name}_finite_mean"] = float(v[finite].mean())
  out["lifetimes"] = int(next(iter(values.values())).shape[0])
  out["nonfinite_lifetimes"] = bad
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
    params: meta-parameters (``learner.init_params``'s tree).
    key: PRNG key ``()``; lifetime ``i`` uses ``jax.random.split(key, lifetimes)[i]``
      whatever ``batch`` is, so other batch sizes evaluate the same lifetimes
      (equal up to float rounding; bit for bit for a given ``batch``).
    lifetimes: number of lifetimes (paper: 50 regression, 500 classification).
    batch: lifetimes evaluated together with `vmap`.

  Returns:
    ``{metric: mean, metric_stderr: ..., 'lifetimes': n, 'per_lifetime': {...}}``
    (Python floats and lists): `summarize` of `lifetime_metrics`'s
    ``{metric: (n,)}`` (``n = lifetimes``), which ``'per_lifetime'`` holds as lists.
  """
  check_task(learner, task)  # before anything is traced
  keys = jax.random.split(key, lifetimes)
  batch = min(batch, lifetimes)
  chunks = -(-lifetimes // batch)
  keys = jnp.concatenate([keys, keys[:chunks * batch - lifetimes]])  # pad the last chunk
  run_chunk = jax.jit(lambda p, k, d: lifetime_metrics(learner, task, p, k, d))
  progress = Progress("evaluation: lifetime", 0, lifetimes, every_s=10.0)

  def dispatch(c):  # asynchronous: returns before the chunk is computed
    return run_chunk(params, keys[c * batch:(c + 1) * batch], task.data)

  outputs, pending = [], dispatch(0)
  for c in range(chunks):
    following = dispatch(c + 1) if c + 1 < chunks else None
    outputs.append(jax.device_get(pending))
    pending = following
    done = min((c + 1) * batch, lifetimes)
    if c == 0:
      progress.mark(done)  # after compilation
    else:
      progress.update(done)
  values = {k: np.concatenate([o[k] for o in outputs])[:lifetimes] for k in outputs[0]}
  result = summarize(values)
  result["per_lifetime"] = {k: np.asarray(v).tolist() for k, v in values.items()}
  return result
