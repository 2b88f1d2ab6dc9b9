"""What a meta-gradient estimator is (learned_optimization's ``GradientEstimator``, as pure functions).

An `Estimator` says how the meta-gradient of the meta-loss is obtained from a
learner's lifetimes, apart from the lifetime dynamics (`flpjax.lifetime`) and
from the update (`flpjax.meta.make_meta_step`, written once for every
estimator):

  init(params, key)                       -> estimator state (e.g. a partial
                                             lifetime for truncated backprop;
                                             ``()`` when it has none)
  meta_grad(params, state, key, data)     -> (grads, state, metrics)
  prepare(params, key, data)              -> the meta-parameters the step is
                                             taken at (OML's readout-row reset;
                                             default: unchanged)

``metrics`` must hold ``'loss'`` (the meta-loss of this step, before the
update) and may hold ``'grad_norm'`` (default: the norm of ``grads``).
``grads`` has the structure of ``params``. Everything is pure and jittable;
``key`` is the meta-step's key, so a run is a function of its seed and step.

Adding an estimator: a module with a constructor returning an `Estimator` and its
config plug-in names (``from_config``, ...; `flpjax.config.registry`), and one
`flpjax.config.register` call.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flpjax.types import Params

EstimatorState = Any


def _unchanged(params: Params, key: jax.Array, data: Any) -> Params:
  del key, data
  return params


def _no_state(params: Params, key: jax.Array) -> EstimatorState:
  del params, key
  return ()


class Estimator(NamedTuple):
  """A meta-gradient estimator (see the module docstring).

  ``params`` and ``grads`` are trees of the meta-parameters' layout
  (``learner.init_params``'s; leaf shapes: `learners.param_labels`); ``key`` is
  the meta-step's PRNG key ``()``; every metric is ``()``.
  """

  init: Callable[[Params, jax.Array], EstimatorState]
  meta_grad: Callable[[Params, EstimatorState, jax.Array, Any],
                      tuple[Params, EstimatorState, dict]]
  prepare: Callable[[Params, jax.Array, Any], Params] = _unchanged
  name: str = ""


def stateless(meta_grad, prepare=_unchanged, name: str = "") -> Estimator:
  """An `Estimator` without state from ``meta_grad(params, key, data) -> (grads, metrics)``.

  ``grads`` has the structure and shapes of ``params``; ``metrics`` are ``()``
  (as `Estimator`'s).
  """

  def wrapped(params, state, key, data):
    grads, metrics = meta_grad(params, key, data)
    return grads, state, metrics

  return Estimator(_no_state, wrapped, prepare, name)


#: Largest gradient entry Adam can take: its square must stay finite in float32.
MAX_GRADIENT = 1e18


def guard(loss: jax.Array, grads: Params, max_loss: float | None = None) -> Params:
  """Gradients that `optax.apply_if_finite` will skip when the step cannot be applied.

  A non-finite loss with finite gradients must not update either, nor may a
  finite gradient so large (a lifetime that nearly diverged) that its square
  overflows Adam's second-moment estimate (which would then stay infinite):
  in both cases every gradient becomes NaN, so the step is skipped and counted.
  With ``max_loss``, so is a step whose finite loss is above it (a lifetime that
  diverged by a bound of the task's scale, e.g. 10x its no-learning level).

  Args:
    loss: the meta-loss ``()``.
    grads: the meta-gradient, a tree of any leaf shapes (those of the meta-parameters).
    max_loss: skip a step whose loss is above this (None: no bound).

  Returns:
    ``grads``, the same structure and shapes.
  """
  big = jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grads)]).max()
  ok = jnp.isfinite(loss) & (big < MAX_GRADIENT)
  if max_loss is not None:
    ok = ok & (loss <= max_loss)
  return jax.tree.map(lambda g: jnp.where(ok, g, jnp.nan), grads)


def global_norm(grads: Params) -> jax.Array:
  """``sqrt(sum g^2)`` over every leaf of a tree (any leaf shapes): a scalar ``()``."""
  return jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
