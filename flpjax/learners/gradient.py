"""The gradient-based (OML-style) learner: inner SGD on the plastic layers (docs/fidelity.md 4).

The exact-gradient (backprop) member of the family that `dfa` and `fa`
approximate. Meta-parameter groups: ``'ff'``, and with ``learn_lr`` the
per-parameter inner learning rates ``'lr'``: ``{layer: {'w', 'b'}}``.
Fast state: ``{layer: {'w': (out, in), 'b': (out,)}}``.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from flpjax import feedback as fb_lib
from flpjax import nets, types
from flpjax.learners import base
from flpjax.learners.base import Example, Learner
from flpjax.types import FastState, Group, Params

LR = Group("lr", 1e-4, "per-parameter inner learning rates (gradient.learn_lr)")


def gradient(
    layers: Sequence[nets.Layer],
    input_shape: Sequence[int],
    n_plastic: int,
    *,
    output: fb_lib.Output = "regression",
    lr: float = 0.003,
    learn_lr: bool = False,
    second_order: bool = False,
    reset_readout: bool = False,
) -> Learner:
  """The gradient-based (OML-style) learner (docs/fidelity.md 4).

  Each step takes one SGD step on the plastic layers' weights *and biases*:
  ``p <- p - lr * dloss/dp`` with the step's own loss (`inner_loss`).

  Args:
    layers, input_shape, n_plastic, output: as for `flp`.
    lr: the inner learning rate (fixed), or the initial value of every
      per-parameter rate when ``learn_lr``.
    learn_lr: meta-learn one learning rate per parameter (the reference's
      ``--plastic_update``); they form the ``'lr'`` group.
    second_order: differentiate through the inner gradients (full MAML-style
      meta-gradient). Off: the reference's first-order meta-gradient (inner
      gradients are constants, ``stop_gradient``).
    reset_readout: re-initialise the readout (kaiming weights, zero bias) at
      the start of every lifetime, the reference's classification baseline.

  Returns:
    The `Learner`; fast state ``{layer: {'w': (out, in), 'b': (out,)}}``, and
    with ``learn_lr`` ``params['lr']`` of the same layout.
  """
  layers = tuple(layers)
  plastic = base.check_structure(layers, n_plastic)
  readout = len(layers) - 1
  in_dims = nets.input_dims(layers, input_shape)
  if lr < 0:
    raise ValueError(f"lr must be >= 0, got {lr}")

  def init_params(key: jax.Array) -> Params:
    params = {"ff": nets.init(key, layers, input_shape)}
    if learn_lr:
      params["lr"] = {
          str(l): {"w": jnp.full_like(params["ff"][l]["w"], lr),
                   "b": jnp.full_like(params["ff"][l]["b"], lr)} for l in plastic}
    return params

  def init(params: Params, key: jax.Array | None = None) -> FastState:
    fast = {str(l): {"w": params["ff"][l]["w"], "b": params["ff"][l]["b"]} for l in plastic}
    if reset_readout:
      if key is None:
        raise ValueError("reset_readout needs a PRNG key in init(params, key)")
      std = math.sqrt(2.0 / in_dims[readout])
      w = params["ff"][readout]["w"]
      fast[str(readout)] = {"w": std * jax.random.normal(key, w.shape, w.dtype),
                            "b": jnp.zeros_like(params["ff"][readout]["b"])}
    return fast

  def predict(params: Params, fast: FastState, h: jax.Array) -> jax.Array:
    return base.plastic_forward(layers, plastic, params, fast, h)[-1]

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    h, y = example
    grads = jax.grad(lambda f: types.loss(output, predict(params, f, h), y))(fast)
    if not second_order:
      grads = jax.lax.stop_gradient(grads)
    rates = params["lr"] if learn_lr else jax.tree.map(lambda _: lr, fast)
    return jax.tree.map(lambda p, g, r: p - r * g, fast, grads, rates)

  groups = (base.FF, LR) if learn_lr else (base.FF,)
  return Learner(init_params, init, base.encoder(layers, plastic), step, predict, plastic,
                 readout, groups, base.labels_by_top_level, base.weights_of)


# ----------------------------------------------------------------------------- config plug-in
# config.learner = 'gradient' (flpjax.config.registry).

CONFIG = {"gradient": dict(lr=0.003, learn_lr=False, second_order=False, reset_readout=False)}
GROUPS = (base.FF, LR)


def validate_config(config) -> None:
  """Checks ``config.gradient``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  checks.check_float(config, "gradient.lr", 0.0)
  for f in ("learn_lr", "second_order", "reset_readout"):
    checks.check_bool(config, f"gradient.{f}")


def from_config(config, layers, input_shape, output) -> Learner:
  """`gradient` with ``config.plastic_layers`` plastic layers and the ``config.gradient`` options."""
  g = config.gradient
  return base.records_input_shape(gradient)(
      layers, input_shape, config.plastic_layers, output=output, lr=g.lr,
      learn_lr=g.learn_lr, second_order=g.second_order, reset_readout=g.reset_readout)
