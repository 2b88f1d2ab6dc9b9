"""Learners: what one lifetime step does.

A `Learner` is a pytree-free bundle of pure functions (in the spirit of an
optax ``GradientTransformation``):

  init_params(key)                 -> meta-parameters at the start of meta-training
  init(params, key)                -> fast state at birth
  encode(params, x)                -> input of the first plastic layer (frozen trunk)
  step(params, fast, (h, y))       -> fast state after one example (or batch)
  predict(params, fast, h)         -> outputs for encoded inputs ``h``

The network is split into a *frozen trunk* (meta-learned, but fixed within a
lifetime) and the last ``n_plastic`` dense layers, whose weights are the fast
state. Because the trunk does not change within a lifetime, `encode` runs once
per lifetime on every example, outside the scan (`lifetime.run`), instead of
once per step.

Meta-parameters are one pytree with top-level groups (each gets its own
optimizer in `meta.make_optimizer`):

  'ff'    : [{'w', 'b'}] * n_layers     initial feed-forward weights, frozen layers too
  'fb'    : {layer: {'B': (out, m), 'c': (out,)}}    feedback weights (FLP)
  'alpha' : {layer: (out, in)}          per-synapse plasticity (FLP), or
            {layer: {'w', 'b'}}         per-parameter learning rates (gradient)
  'beta'  : {layer: ()}                 feedback strength (FLP)

Per-layer dicts are keyed by the layer's index in the network, as a string.
Fast states are ``{layer: {'w': (out, in)}}`` (FLP; biases are not plastic) or
``{layer: {'w', 'b'}}`` (gradient learner).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from flpjax import feedback as fb_lib
from flpjax import nets
from flpjax import plasticity

Params = dict
FastState = dict
Example = tuple  # (h (B, in), y (B, ...)): encoded inputs and targets.


class Learner(NamedTuple):
  """The pure functions that define a lifetime (see the module docstring)."""

  init_params: Callable[[jax.Array], Params]
  init: Callable[[Params, jax.Array], FastState]
  encode: Callable[[Params, jax.Array], jax.Array]
  step: Callable[[Params, FastState, Example], FastState]
  predict: Callable[[Params, FastState, jax.Array], jax.Array]
  plastic_layers: tuple[int, ...]
  readout: int


def _check_structure(layers: Sequence[nets.Layer], n_plastic: int) -> tuple[int, ...]:
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


def _encoder(layers, plastic):
  trunk = tuple(layers[: plastic[0]])

  def encode(params: Params, x: jax.Array) -> jax.Array:
    """Frozen trunk: ``(B, *input_shape) -> (B, in)`` of the first plastic layer."""
    return nets.apply(trunk, params["ff"][: plastic[0]], x)

  return encode


def _plastic_forward(layers, plastic, params, fast, h):
  """Activities ``[h, h_1, ..., y_hat]`` of the plastic stack (pre-feedback)."""
  hs = [h]
  for l in plastic:
    p = fast[str(l)]
    b = p["b"] if "b" in p else params["ff"][l]["b"]
    hs.append(nets.activate(nets.dense(p["w"], b, hs[-1]), layers[l].activation))
  return hs


def flp(
    layers: Sequence[nets.Layer],
    input_shape: Sequence[int],
    n_plastic: int,
    *,
    output: fb_lib.Output = "regression",
    rule: str = "oja",
    signal: fb_lib.Signal = "error",
    presynaptic: Literal["pre", "post"] = "pre",
    clip_beta: bool = False,
    clamp_readout: bool = False,
    init_alpha: float = 0.0,
    init_beta: float = 0.5,
) -> Learner:
  """Feedback and local plasticity (REFERENCE.md 2 and 3).

  One step on a batch ``(h, y)``: forward through the plastic layers with the
  current fast weights; the signal (error or target) is projected to every
  plastic layer ``l`` as ``f_l = ReLU(s B_l^T + c_l)``; the post-synaptic
  activity is ``beta_l f_l + (1 - beta_l) h_l`` (or the target itself for a
  clamped readout); the local rule updates ``W_l`` from the pre-synaptic
  activity and that post-synaptic activity, with per-synapse ``alpha_l``.
  Biases are not plastic.

  Args:
    layers: the network (`nets.regression_mlp`, `nets.conv_classifier`).
    input_shape: shape of one input example.
    n_plastic: number of plastic layers, counted from the output; 1 is the
      feature-reuse control (only the readout learns).
    output: ``'regression'`` (targets ``(B, m)``) or ``'classification'``
      (integer labels ``(B,)``, one-hot over the readout width).
    rule: ``'oja'`` or ``'hebb'`` (applied on every step).
    signal: feedback from the ``'error'`` or the ``'target'``.
    presynaptic: ``'pre'``: pre-synaptic activity is the feed-forward activity
      before feedback (the reference and the paper's results); ``'post'``: the
      presynaptic layer's post-feedback activity when that layer is plastic.
    clip_beta: clip every feedback strength to [0, 1] (the paper's range; the
      reference leaves it unconstrained).
    clamp_readout: the readout's post-synaptic activity is the (one-hot)
      target; the readout then has no feedback weights or feedback strength.
      On for classification in the reference, off for regression.
    init_alpha: initial plasticity of every synapse (paper: 0).
    init_beta: initial feedback strength (paper: 0.5 regression, 1.0 classification).

  Returns:
    The `Learner`.
  """
  layers = tuple(layers)
  plastic = _check_structure(layers, n_plastic)
  readout = len(layers) - 1
  in_dims = nets.input_dims(layers, input_shape)
  width = layers[readout].features
  update = plasticity.get_rule(rule)
  if signal not in fb_lib.SIGNALS:
    raise ValueError(f"unknown feedback signal {signal!r}; expected one of {fb_lib.SIGNALS}")
  if presynaptic not in ("pre", "post"):
    raise ValueError(f"presynaptic must be 'pre' or 'post', got {presynaptic!r}")
  fed = tuple(l for l in plastic if not (clamp_readout and l == readout))

  def init_params(key: jax.Array) -> Params:
    k_ff, k_fb = jax.random.split(key)
    fb = {}
    for l, k in zip(fed, jax.random.split(k_fb, max(len(fed), 1))):
      # kaiming normal with fan_in = m (the signal's width), as the reference.
      std = math.sqrt(2.0 / width)
      fb[str(l)] = {"B": std * jax.random.normal(k, (layers[l].features, width)),
                    "c": jnp.zeros((layers[l].features,))}
    return {
        "ff": nets.init(k_ff, layers, input_shape),
        "fb": fb,
        "alpha": {str(l): jnp.full((layers[l].features, in_dims[l]), init_alpha, jnp.float32)
                  for l in plastic},
        "beta": {str(l): jnp.asarray(init_beta, jnp.float32) for l in fed},
    }

  def init(params: Params, key: jax.Array | None = None) -> FastState:
    del key
    return {str(l): {"w": params["ff"][l]["w"]} for l in plastic}

  def predict(params: Params, fast: FastState, h: jax.Array) -> jax.Array:
    return _plastic_forward(layers, plastic, params, fast, h)[-1]

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    h, y = example
    hs = _plastic_forward(layers, plastic, params, fast, h)
    target = fb_lib.encode_target(y, output, width)
    s = fb_lib.signal(target, hs[-1], signal, output)
    new, posts = {}, {}
    for i, l in enumerate(plastic):
      if l in fed:
        f = fb_lib.project(params["fb"][str(l)], s)
        post = fb_lib.mix(hs[i + 1], f, params["beta"][str(l)], clip_beta)
      else:
        post = target
      posts[l] = post
      pre = posts[l - 1] if presynaptic == "post" and (l - 1) in posts else hs[i]
      new[str(l)] = {"w": update(fast[str(l)]["w"], pre, post, params["alpha"][str(l)])}
    return new

  return Learner(init_params, init, _encoder(layers, plastic), step, predict, plastic, readout)


def inner_loss(output: fb_lib.Output, y_hat: jax.Array, y: jax.Array) -> jax.Array:
  """Loss of one lifetime step (gradient learner) or of the query (meta-loss).

  Regression: mean squared error over the batch (targets ``(B, m)``).
  Classification: mean cross-entropy of integer labels ``(B,)`` over all
  readout logits (the reference's 1000-way softmax).
  """
  if output == "classification":
    logp = jax.nn.log_softmax(y_hat, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1))
  return jnp.mean((y_hat - y) ** 2)


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
  """The gradient-based (OML-style) learner (REFERENCE.md 4).

  Each step takes one SGD step on the plastic layers' weights *and biases*:
  ``p <- p - lr * dloss/dp`` with the step's own loss (`inner_loss`).

  Args:
    layers, input_shape, n_plastic, output: as for `flp`.
    lr: the inner learning rate (fixed), or the initial value of every
      per-parameter rate when ``learn_lr``.
    learn_lr: meta-learn one learning rate per parameter (the reference's
      ``--plastic_update``); they form the ``'alpha'`` group.
    second_order: differentiate through the inner gradients (full MAML-style
      meta-gradient). Off: the reference's first-order meta-gradient (inner
      gradients are constants, ``stop_gradient``).
    reset_readout: re-initialise the readout (kaiming weights, zero bias) at
      the start of every lifetime, the reference's classification baseline.

  Returns:
    The `Learner`.
  """
  layers = tuple(layers)
  plastic = _check_structure(layers, n_plastic)
  readout = len(layers) - 1
  in_dims = nets.input_dims(layers, input_shape)
  if lr < 0:
    raise ValueError(f"lr must be >= 0, got {lr}")

  def init_params(key: jax.Array) -> Params:
    params = {"ff": nets.init(key, layers, input_shape)}
    if learn_lr:
      params["alpha"] = {
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
    return _plastic_forward(layers, plastic, params, fast, h)[-1]

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    h, y = example
    grads = jax.grad(lambda f: inner_loss(output, predict(params, f, h), y))(fast)
    if not second_order:
      grads = jax.lax.stop_gradient(grads)
    rates = params["alpha"] if learn_lr else jax.tree.map(lambda _: lr, fast)
    return jax.tree.map(lambda p, g, r: p - r * g, fast, grads, rates)

  return Learner(init_params, init, _encoder(layers, plastic), step, predict, plastic, readout)


def param_labels(params: Params, readout: int) -> Any:
  """Optimizer group of every leaf: 'ff', 'fb', 'alpha', 'alpha_readout', 'beta'."""
  labels = {}
  for group, sub in params.items():
    if group == "alpha":
      labels[group] = {k: jax.tree.map(lambda _, k=k: "alpha_readout" if int(k) == readout
                                       else "alpha", v) for k, v in sub.items()}
    else:
      labels[group] = jax.tree.map(lambda _, g=group: g, sub)
  return labels
