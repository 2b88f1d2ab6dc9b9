"""Direct feedback alignment (Nøkland 2016): random direct feedback instead of backprop.

One of Figure 1's family of learners, next to `gradient` (backpropagation, the
exact member) and `flp`: the output error reaches every plastic layer through
its own matrix ``B_l`` straight from the output, instead of through the
transposes of the downstream forward weights. `fa` (feedback alignment) sends
it back layer by layer through random matrices; this module also holds the
machinery the two share (`feedback_learner`).

Meta-parameter groups (`Learner.groups`):

  'ff' : [{'w', 'b'}] * n_layers        initial feed-forward weights and biases
  'fb' : {layer: {'B': (out_l, m)}}     direct feedback of every non-readout
                                        plastic layer (``m``: readout width);
                                        default meta-learning rate 0 (fixed
                                        random feedback) unless ``learn_feedback``

Fast state: ``{layer: {'w': (out, in), 'b': (out,)}}``, as `gradient`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from flpjax import nets, types
from flpjax.learners import base
from flpjax.learners.base import Example, Learner
from flpjax.types import FastState, Group, Params

#: ``backward(fb, zs, e) -> [delta_l (B, out_l)] per plastic layer``: the learner's credit
#: assignment from the feedback parameters, pre-activations and output error.
Backward = Callable[[Params, list, jax.Array], list]


def feedback_group(learn_feedback: bool, doc: str) -> Group:
  """The ``'fb'`` group: default meta-learning rate 1e-4 if learned, else 0 (fixed)."""
  return Group("fb", 1e-4 if learn_feedback else 0.0, doc)


def derivative(z: jax.Array, activation: nets.Activation) -> jax.Array:
  """``f'(z)`` of a layer's activation at its pre-activation ``z (B, out)`` (ReLU: ``z > 0``).

  Elementwise: the result has the shape of ``z``.
  """
  if activation == "relu":
    return (z > 0).astype(z.dtype)
  return jnp.ones_like(z)


def forward(layers: Sequence[nets.Layer], plastic: Sequence[int], fast: FastState,
            h: jax.Array) -> tuple[list, list]:
  """Activities and pre-activations of the plastic stack.

  Args:
    layers: the network.
    plastic: indices of the plastic layers.
    fast: ``{layer: {'w': (out, in), 'b': (out,)}}``.
    h: encoded inputs ``(B, in)`` (the first plastic layer's input).

  Returns:
    ``(hs, zs)``: ``hs = [h, h_1, ..., y_hat]`` (``len(plastic) + 1`` arrays,
    ``hs[i]`` is the input of ``plastic[i]``) and ``zs[i] = hs[i] @ W.T + b``
    ``(B, out)``, the pre-activation of ``plastic[i]``.
  """
  hs, zs = [h], []
  for l in plastic:
    z = nets.dense(fast[str(l)]["w"], fast[str(l)]["b"], hs[-1])
    zs.append(z)
    hs.append(nets.activate(z, layers[l].activation))
  return hs, zs


def output_error(output: str, y_hat: jax.Array, y: jax.Array) -> jax.Array:
  """``e = dL/dy_hat`` ``(B, m)`` of the step's own loss (`flpjax.types.loss`).

  Regression: ``2 (y_hat - y) / (B m)``; classification: ``(softmax(y_hat) -
  onehot(y)) / B`` (one-hot over the readout width).
  """
  return jax.grad(lambda p: types.loss(output, p, y))(y_hat)


def feedback_learner(
    layers: Sequence[nets.Layer],
    input_shape: Sequence[int],
    n_plastic: int,
    *,
    output: str,
    lr: float,
    second_order: bool,
    learn_feedback: bool,
    reset_readout: bool,
    init_feedback: Callable[[jax.Array, Params], Params],
    backward: Backward,
    group: Group,
) -> Learner:
  """A learner that takes SGD-like steps along a credit signal ``delta_l`` of its own.

  Every step: forward through the plastic layers (pre-activations ``z_l``,
  activities ``h_l``), the output error ``e = dL/dy_hat`` (`output_error`),
  ``delta_l = backward(fb, zs, e)`` ``(B, out_l)`` for every plastic layer,
  then ``W_l -= lr * delta_l^T h_{l-1}`` and ``b_l -= lr * sum_batch delta_l``.
  With ``backward`` = backprop this is exactly `gradient`'s step.

  Differentiation (meta-gradients): as `gradient`, first-order by default:
  the update direction ``(delta_l^T h_{l-1}, sum delta_l)`` is a constant
  (``stop_gradient``), so the meta-gradient reaches the initial weights only
  through the identity path ``W_{t+1} = W_t - lr * const``. ``second_order``
  differentiates through the direction (the error, the activities, and the
  feedback). The feedback parameters reach the loss only through the update
  direction, so learning them (``learn_feedback``) needs ``second_order``;
  without ``learn_feedback`` they are wrapped in ``stop_gradient`` (their
  meta-gradient is exactly zero in either order) and their group's default
  meta-learning rate is 0.

  Args:
    layers, input_shape, n_plastic, output, lr, second_order, learn_feedback,
      reset_readout: see `dfa`.
    init_feedback: ``init_feedback(key, ff) -> params['fb']`` given the initial
      forward weights ``ff``.
    backward: the credit assignment (`Backward`).
    group: the ``'fb'`` group (`feedback_group`).

  Returns:
    The `Learner`.

  Raises:
    ValueError: for an unknown output, a negative ``lr``, or ``learn_feedback``
      without ``second_order``.
  """
  layers = tuple(layers)
  plastic = base.check_structure(layers, n_plastic)
  readout = len(layers) - 1
  in_dims = nets.input_dims(layers, input_shape)
  if output not in types.OUTPUTS:
    raise ValueError(f"unknown output {output!r}; expected one of {types.OUTPUTS}")
  if lr < 0:
    raise ValueError(f"lr must be >= 0, got {lr}")
  if learn_feedback and not second_order:
    raise ValueError(
        "learn_feedback=True needs second_order=True: the feedback weights reach the "
        "meta-loss only through the update direction, which first-order meta-gradients "
        "treat as a constant, so their meta-gradient would be identically zero")

  def init_params(key: jax.Array) -> Params:
    k_ff, k_fb = jax.random.split(key)
    ff = nets.init(k_ff, layers, input_shape)
    return {"ff": ff, "fb": init_feedback(k_fb, ff)}

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
    del params
    return forward(layers, plastic, fast, h)[0][-1]

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    h, y = example
    fb = params["fb"] if learn_feedback else jax.lax.stop_gradient(params["fb"])
    hs, zs = forward(layers, plastic, fast, h)
    deltas = backward(fb, zs, output_error(output, hs[-1], y))
    direction = {str(l): {"w": d.T @ hs[i], "b": jnp.sum(d, axis=0)}
                 for i, (l, d) in enumerate(zip(plastic, deltas))}
    if not second_order:
      direction = jax.lax.stop_gradient(direction)
    return jax.tree.map(lambda p, g: p - lr * g, fast, direction)

  return Learner(init_params, init, base.encoder(layers, plastic), step, predict, plastic,
                 readout, (base.FF, group), base.labels_by_top_level, base.weights_of)


def dfa(
    layers: Sequence[nets.Layer],
    input_shape: Sequence[int],
    n_plastic: int,
    *,
    output: types.Output = "regression",
    lr: float = 0.003,
    second_order: bool = False,
    learn_feedback: bool = False,
    reset_readout: bool = False,
) -> Learner:
  """Direct feedback alignment (Nøkland 2016) on the plastic layers.

  One step on a batch ``(h, y)``, with ``e = dL/dy_hat`` ``(B, m)`` the
  gradient of the step's own loss (`flpjax.types.loss`) at the output:

    readout L:         delta_L = e * f_L'(z_L)                    (B, m)
    other plastic l:   delta_l = (e @ B_l.T) * f_l'(z_l)          (B, out_l)
    every plastic l:   W_l <- W_l - lr * delta_l.T @ h_{l-1}      (out_l, in_l)
                       b_l <- b_l - lr * sum_batch delta_l         (out_l,)

  where ``z_l`` is layer ``l``'s pre-activation and ``h_{l-1}`` its input.
  The readout gets its exact gradient (its activation is linear in the
  paper's networks, so ``delta_L = e``); with ``n_plastic=1`` this learner is
  `gradient`. ``B_l`` ``(out_l, m)`` is drawn once in ``init_params`` (kaiming
  normal, std ``sqrt(2 / m)``, as `flp`'s feedback) and never changes within
  a lifetime.

  Args:
    layers: the network (`nets.regression_mlp`, `nets.conv_classifier`).
    input_shape: shape of one input example.
    n_plastic: number of plastic layers, counted from the output.
    output: ``'regression'`` (targets ``(B, m)``) or ``'classification'``
      (integer labels ``(B,)`` over the readout's logits).
    lr: the inner learning rate.
    second_order: differentiate the meta-loss through the update direction;
      off: first-order meta-gradients, as `gradient` (see `feedback_learner`).
    learn_feedback: meta-learn the ``B_l`` (group ``'fb'``, default rate 1e-4);
      needs ``second_order``. Off: fixed random feedback (default rate 0,
      meta-gradient exactly zero).
    reset_readout: re-initialise the readout at the start of every lifetime,
      as `gradient`.

  Returns:
    The `Learner`; ``params['fb'] = {layer: {'B': (out_l, m)}}`` for every
    non-readout plastic layer.
  """
  layers = tuple(layers)
  plastic = base.check_structure(layers, n_plastic)
  width = layers[-1].features
  fed = plastic[:-1]

  def init_feedback(key: jax.Array, ff: Params) -> Params:
    std = math.sqrt(2.0 / width)
    return {str(l): {"B": std * jax.random.normal(k, (layers[l].features, width),
                                                  ff[l]["w"].dtype)}
            for l, k in zip(fed, jax.random.split(key, max(len(fed), 1)))}

  def backward(fb: Params, zs: list, e: jax.Array) -> list:
    deltas = [(e @ fb[str(l)]["B"].T) * derivative(z, layers[l].activation)
              for l, z in zip(fed, zs)]
    return deltas + [e * derivative(zs[-1], layers[-1].activation)]

  group = feedback_group(learn_feedback,
                         "direct feedback matrices B of the non-readout plastic layers (DFA)")
  return feedback_learner(layers, input_shape, n_plastic, output=output, lr=lr,
                          second_order=second_order, learn_feedback=learn_feedback,
                          reset_readout=reset_readout, init_feedback=init_feedback,
                          backward=backward, group=group)


# ----------------------------------------------------------------------------- config plug-in
# config.learner = 'dfa' (flpjax.config.registry); 'fa' shares the section (learners/fa.py).

#: The ``alignment`` section (dfa and fa): inner SGD along the feedback's credit signal at
#: ``lr``; ``learn_feedback`` meta-learns B (dfa) / R (fa) and needs ``second_order``.
CONFIG = {"alignment": dict(lr=0.003, second_order=False, learn_feedback=False,
                            reset_readout=False)}
GROUPS = (base.FF, feedback_group(True, "feedback weights of every plastic layer"))


def validate_config(config) -> None:
  """Checks ``config.alignment``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  checks.check_float(config, "alignment.lr", 0.0)
  for f in ("second_order", "learn_feedback", "reset_readout"):
    checks.check_bool(config, f"alignment.{f}")
  if config.alignment.learn_feedback and not config.alignment.second_order:
    checks.fail("alignment.learn_feedback", True, "False, or alignment.second_order=True (the "
                "feedback reaches the meta-loss only through the update direction)")


def alignment_options(config) -> dict:
  """The keyword arguments of `dfa` / `fa` from ``config.alignment``."""
  a = config.alignment
  return dict(lr=a.lr, second_order=a.second_order, learn_feedback=a.learn_feedback,
              reset_readout=a.reset_readout)


def from_config(config, layers, input_shape, output) -> Learner:
  """`dfa` with ``config.plastic_layers`` plastic layers and the ``config.alignment`` options."""
  return base.records_input_shape(dfa)(layers, input_shape, config.plastic_layers,
                                       output=output, **alignment_options(config))
