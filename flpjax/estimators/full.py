"""Full backprop through the lifetime: the exact meta-gradient (the paper's estimator).

The meta-loss is the query loss after the whole support stream, averaged over
``meta_batch`` lifetimes; its gradient is taken by reverse-mode
differentiation through the scanned lifetime (memory: `lifetime.run`'s
``remat``).

Example:
  >>> est = full.make(learner, task)
  >>> grads, _, metrics = est.meta_grad(params, (), jax.random.key(0), task.data)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from flpjax import lifetime
from flpjax.estimators import base
from flpjax.learners.base import Learner
from flpjax.types import Params, Task, loss_fn


def episode_loss(learner: Learner, task: Task, *, remat: lifetime.Remat = "step",
                 chunk: int | None = None) -> Callable[[Params, jax.Array, Any], jax.Array]:
  """``loss(params, key, data) -> ()``: query loss of one lifetime drawn from ``key ()``.

  The key is split into the episode's key and the learner's ``init`` key.
  ``params`` is ``learner.init_params``'s tree.
  """
  query_loss_fn = loss_fn(task.output)

  def loss(params, key, data):
    k_episode, k_init = jax.random.split(key)
    episode = task.sample(k_episode, data)
    value, _ = lifetime.query_loss(learner, params, episode, query_loss_fn, key=k_init,
                                   remat=remat, chunk=chunk)
    return value

  return loss


def make_loss(learner: Learner, task: Task, *, meta_batch: int = 1,
              remat: lifetime.Remat = "step", chunk: int | None = None
              ) -> Callable[[Params, jax.Array, Any], jax.Array]:
  """``loss(params, key, data) -> ()``: mean query loss over ``meta_batch`` lifetimes.

  ``key`` ``()`` is the meta-step's; lifetime ``i`` is `episode_loss`'s of
  ``split(key, meta_batch)[i]`` (of ``key`` itself when ``meta_batch == 1``).
  """
  one = episode_loss(learner, task, remat=remat, chunk=chunk)

  def loss(params, key, data):
    if meta_batch == 1:
      return one(params, key, data)
    keys = jax.random.split(key, meta_batch)
    return jnp.mean(jax.vmap(one, (None, 0, None))(params, keys, data))

  return loss


def make(learner: Learner, task: Task, *, meta_batch: int = 1, remat: lifetime.Remat = "step",
         chunk: int | None = None) -> base.Estimator:
  """The exact meta-gradient of `make_loss`."""
  loss = make_loss(learner, task, meta_batch=meta_batch, remat=remat, chunk=chunk)

  def meta_grad(params, key, data):
    value, grads = jax.value_and_grad(loss)(params, key, data)
    return grads, {"loss": value}

  return base.stateless(meta_grad, name="full")


# ----------------------------------------------------------------------------- config plug-in
# config.estimator = 'full' (flpjax.config.registry): backprop through the whole lifetime.

#: Its memory grows with the lifetime (``meta.remat='step'`` stores every step's state).
STORES_LIFETIME = True
#: ``config.run_orders``: one stream order per vmapped run.
PER_RUN_ORDERS = True


def from_config(config, learner: Learner, task: Task) -> base.Estimator:
  """`make` with ``meta.batch_size``, ``meta.remat`` and ``meta.chunk``."""
  m = config.meta
  return make(learner, task, meta_batch=m.batch_size, remat=m.remat, chunk=m.chunk or None)
