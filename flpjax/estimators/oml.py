"""The original OML procedure's meta-gradient (Javed & White 2019; docs/fidelity.md OML 2.3).

Full backprop through the proxy task's lifetime (`flpjax.tasks.oml_proxy`),
with OML's two changes:

1. ``reset_row`` (`prepare`): before the step, the readout row of every
   episode's trajectory class (``episode.ys[0, 0]``) is re-initialised in the
   meta-parameters (`reset_readout_row`, keys from ``fold_in(key, 1)``); the
   step's update applies to the reset parameters and Adam's moments are kept.
   A skipped (non-finite) step keeps neither update nor reset
   (`meta.make_meta_step`). Classification only: regression has no class rows.
2. ``clamp``: the meta-gradient is clamped elementwise to ``[-clamp, clamp]``
   (torch's ``clip_grad_value_``; 5 for classification, none for regression).
   ``grad_norm`` is the norm before clamping.

Episodes and lifetimes are drawn from the key exactly as `full.make_loss`
draws them, so ``clamp=None, reset_row=False`` is the full estimator.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flpjax import lifetime
from flpjax.estimators import base, full
from flpjax.learners.base import Learner
from flpjax.types import Params, Task


def reset_readout_row(params: Params, readout: int, row: jax.Array, key: jax.Array) -> Params:
  """Re-initialises row ``row`` of the readout weight (OML's reset trick, docs/fidelity.md OML 2.3).

  The row gets kaiming-normal values with fan_in = the readout's input width
  (std ``sqrt(2 / in)``); the bias and every other row are untouched.

  Args:
    params: meta-parameters (``params['ff'][readout]['w']`` is ``(out, in)``).
    readout: index of the readout layer.
    row: the class id (int scalar, may be traced).
    key: PRNG key of the new row.

  Returns:
    New meta-parameters (the input is not modified).
  """
  w = params["ff"][readout]["w"]
  new_row = math.sqrt(2.0 / w.shape[1]) * jax.random.normal(key, w.shape[1:], w.dtype)
  ff = list(params["ff"])
  ff[readout] = {**ff[readout], "w": w.at[row].set(new_row)}
  return {**params, "ff": ff}


def make(learner: Learner, task: Task, *, clamp: float | None = 5.0, reset_row: bool = True,
         meta_batch: int = 1, remat: lifetime.Remat = "step", chunk: int | None = None
         ) -> base.Estimator:
  """OML's estimator (see the module docstring).

  Args:
    learner: the learner (`learners.gradient`, first-order, in OML).
    task: the meta-training task (`tasks.oml_proxy.make_train_task`, or sine).
    clamp: elementwise bound of the meta-gradient, or None.
    reset_row: re-initialise the trajectory class's readout row.
    meta_batch: episodes per meta-step (OML: 1).
    remat, chunk: as `lifetime.run`.

  Raises:
    ValueError: a bad clamp, or ``reset_row`` on a regression task.
  """
  if clamp is not None and not clamp > 0:
    raise ValueError(f"clamp must be > 0 or None, got {clamp}")
  if reset_row and task.output != "classification":
    raise ValueError("reset_row needs a classification task (its targets are readout rows)")
  loss = full.make_loss(learner, task, meta_batch=meta_batch, remat=remat, chunk=chunk)

  def prepare(params, key, data):
    if not reset_row:
      return params
    if meta_batch == 1:
      classes = task.sample(jax.random.split(key)[0], data).ys[:1, 0]
    else:
      ks = jax.vmap(jax.random.split)(jax.random.split(key, meta_batch))
      classes = jax.vmap(task.sample, (0, None))(ks[:, 0], data).ys[:, 0, 0]
    for i, k in enumerate(jax.random.split(jax.random.fold_in(key, 1), meta_batch)):
      params = reset_readout_row(params, learner.readout, classes[i], k)
    return params

  def meta_grad(params, key, data):
    value, grads = jax.value_and_grad(loss)(params, key, data)
    grads = base.guard(value, grads)
    metrics = {"loss": value, "grad_norm": base.global_norm(grads)}
    if clamp is not None:
      grads = jax.tree.map(lambda g: jnp.clip(g, -clamp, clamp), grads)
    return grads, metrics

  return base.stateless(meta_grad, prepare, name="oml")
