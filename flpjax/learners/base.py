"""What a learner is: the pure functions of one lifetime, and what it declares about itself.

A `Learner` is a bundle of pure functions (in the spirit of an optax
``GradientTransformation``), plus the facts the rest of the library asks it
instead of assuming:

  init_params(key)                 -> meta-parameters at the start of meta-training
  init(params, key)                -> fast state at birth
  encode(params, x)                -> input of the first plastic layer (frozen trunk)
  step(params, fast, (h, y))       -> fast state after one example (or batch)
  predict(params, fast, h)         -> outputs for encoded inputs ``h``
  groups                           -> its meta-parameter groups (`types.Group`:
                                      name, default meta-learning rate)
  labels(params)                   -> the group name of every leaf of ``params``
  plastic_weights(fast)            -> ``{layer: W (out, in)}``, the weights that
                                      change within a lifetime (for the analyses)

The network is split into a *frozen trunk* (meta-learned, fixed within a
lifetime) and the last ``n_plastic`` dense layers, whose weights are in the
fast state. The trunk does not change within a lifetime, so `encode` runs once
per lifetime on every example, outside the scan (`lifetime.run`).

Meta-parameters are one dict of groups; per-layer entries are keyed by the
layer's index in the network, as a string. Every learner has ``'ff'`` (the
initial weights ``[{'w', 'b'}] * n_layers``, frozen layers too); the others
are the learner's own (see each learner's ``groups``).

Adding a learner: a module in this package with a constructor returning a
`Learner`, and one line in `flpjax.experiment.registry.LEARNERS`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax

from flpjax import nets
from flpjax.types import FastState, Group, Params, loss as _loss

Example = tuple  # (h (B, in), y (B, ...)): encoded inputs and targets.

#: Groups of every learner: the initial feed-forward weights.
FF = Group("ff", 1e-4, "initial feed-forward weights and biases of every layer")


class Learner(NamedTuple):
  """The pure functions that define a lifetime, and the learner's declarations."""

  init_params: Callable[[jax.Array], Params]
  init: Callable[[Params, jax.Array], FastState]
  encode: Callable[[Params, jax.Array], jax.Array]
  step: Callable[[Params, FastState, Example], FastState]
  predict: Callable[[Params, FastState, jax.Array], jax.Array]
  plastic_layers: tuple[int, ...]
  readout: int
  groups: tuple[Group, ...] = (FF,)
  labels: Callable[[Params], Any] | None = None
  plastic_weights: Callable[[FastState], dict] | None = None


def group_names(learner: Learner) -> tuple[str, ...]:
  """Names of the learner's meta-parameter groups."""
  return tuple(g.name for g in learner.groups)


def labels_by_top_level(params: Params) -> Any:
  """Every leaf labelled with its top-level key (``params['fb'][...] -> 'fb'``)."""
  return {group: jax.tree.map(lambda _, g=group: g, sub) for group, sub in params.items()}


def labels_with_readout(name: str, readout: int) -> Callable[[Params], Any]:
  """Labels by top-level key, except group ``name``'s readout entry: ``name + '_readout'``."""

  def labels(params: Params) -> Any:
    out = labels_by_top_level(params)
    if name in params:
      out[name] = {k: jax.tree.map(lambda _, k=k: f"{name}_readout" if int(k) == readout
                                   else name, v) for k, v in params[name].items()}
    return out

  return labels


def weights_of(fast: FastState) -> dict:
  """``{layer: w}`` of a fast state laid out as ``{layer: {'w': ..., ...}}``."""
  return {k: v["w"] for k, v in fast.items()}


def inner_loss(output: str, y_hat: jax.Array, y: jax.Array) -> jax.Array:
  """Loss of one lifetime step: `flpjax.types.loss`."""
  return _loss(output, y_hat, y)


def check_structure(layers: Sequence[nets.Layer], n_plastic: int) -> tuple[int, ...]:
  """Indices of the last ``n_plastic`` layers, which must be dense."""
  n = len(layers)
  if not 1 <= n_plastic <= n:
    raise ValueError(f"plastic_layers must be in [1, {n}] for this {n}-layer network,"
                     f" got {n_plastic}")
  plastic = tuple(range(n - n_plastic, n))
  for l in plastic:
    if not isinstance(layers[l], nets.Dense):
      raise ValueError(
          f"plastic_layers={n_plastic} makes layer {l} ({type(layers[l]).__name__}) plastic;"
          " only dense layers can be plastic (conv plasticity is not supported)")
  return plastic


def encoder(layers, plastic):
  """``encode(params, x)``: the frozen trunk, ``(B, *input_shape) -> (B, in)``."""
  trunk = tuple(layers[: plastic[0]])

  def encode(params: Params, x: jax.Array) -> jax.Array:
    return nets.apply(trunk, params["ff"][: plastic[0]], x)

  return encode


def plastic_forward(layers, plastic, params, fast, h):
  """Activities ``[h, h_1, ..., y_hat]`` of the plastic stack (pre-feedback)."""
  hs = [h]
  for l in plastic:
    p = fast[str(l)]
    b = p["b"] if "b" in p else params["ff"][l]["b"]
    hs.append(nets.activate(nets.dense(p["w"], b, hs[-1]), layers[l].activation))
  return hs


def param_labels(params: Params, learner_or_readout) -> Any:
  """Optimizer group of every leaf, as the learner labels it.

  Args:
    params: meta-parameters.
    learner_or_readout: a `Learner` (asked for its ``labels``), or the readout's
      index (the FLP labelling: ``'alpha_readout'`` for the readout's plasticity).
  """
  if isinstance(learner_or_readout, Learner):
    if learner_or_readout.labels is not None:
      return learner_or_readout.labels(params)
    return labels_by_top_level(params)
  return labels_with_readout("alpha", learner_or_readout)(params)
