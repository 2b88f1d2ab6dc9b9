"""Pure feed-forward networks that expose each layer's activity.

A network is a tuple of layer specs (`Dense`, `Conv`); its parameters are a
list with one ``{'w': ..., 'b': ...}`` dict per layer. Dense weights are stored
``(out, in)`` (post-synaptic x pre-synaptic, the layout of the plasticity
rules); convolution kernels are ``(k, k, in, out)`` (HWIO) applied to NHWC
inputs with 'VALID' padding, as the reference's unpadded convolutions.
Activations are flattened automatically before the first `Dense` layer that
follows a `Conv`.

Example:
  >>> layers = regression_mlp()
  >>> params = init(jax.random.key(0), layers, (11,))
  >>> y, hs = forward(layers, params, jnp.zeros((32, 11)))
  >>> y.shape, len(hs)
  ((32, 1), 10)
"""

from __future__ import annotations

import functools
import math
from typing import Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp

Activation = Literal["relu", "linear"]


class Dense(NamedTuple):
  """A fully connected layer ``act(x @ w.T + b)``; ``w`` is ``(features, in)``."""

  features: int
  activation: Activation = "relu"


class Conv(NamedTuple):
  """A 'VALID' 2-d convolution over NHWC inputs; kernel ``(k, k, in, features)``."""

  features: int
  kernel: int = 3
  stride: int = 1
  activation: Activation = "relu"


Layer = Dense | Conv
Params = list  # [{'w': Array, 'b': Array}, ...], one entry per layer.

#: Hidden widths of the regression network of the paper (docs/fidelity.md 1.2).
REGRESSION_WIDTHS = (300, 300, 300, 300, 300, 900, 300, 300)


def regression_mlp(
    widths: Sequence[int] = REGRESSION_WIDTHS, outputs: int = 1
) -> tuple[Layer, ...]:
  """The 9-layer ReLU MLP of the sine benchmark, linear scalar output.

  Args:
    widths: hidden widths; the paper's network has 8 hidden layers of 300
      units except the sixth, which is 900 wide.
    outputs: width of the linear output layer.

  Returns:
    ``len(widths) + 1`` dense layers.
  """
  return tuple(Dense(w, "relu") for w in widths) + (Dense(outputs, "linear"),)


def conv_classifier(
    channels: int = 128,
    hidden: int = 128,
    readout: int = 1000,
    strides: Sequence[int] = (2, 1, 2, 1, 2, 2),
) -> tuple[Layer, ...]:
  """The 6-conv + 2-dense classification network of docs/fidelity.md 1.4.

  Omniglot: ``channels=128, hidden=128``; mini-ImageNet: ``channels=256,
  hidden=1000``. The readout has ``readout`` units (1000 in the reference,
  although episodes are 5-way) and no activation (logits).
  """
  convs = tuple(Conv(channels, 3, s, "relu") for s in strides)
  return convs + (Dense(hidden, "relu"), Dense(readout, "linear"))


def _fan_in(layer: Layer, in_dim: int) -> int:
  if isinstance(layer, Conv):
    return layer.kernel * layer.kernel * in_dim
  return in_dim


def output_shapes(
    layers: Sequence[Layer], input_shape: Sequence[int]
) -> list[tuple[int, ...]]:
  """Per-example output shape of every layer (no batch axis).

  Raises:
    ValueError: if a convolution does not fit its input.
  """
  shapes = []
  shape = tuple(input_shape)
  for i, layer in enumerate(layers):
    if isinstance(layer, Conv):
      if len(shape) != 3:
        raise ValueError(f"layer {i}: Conv needs (H, W, C) inputs, got {shape}")
      h, w, _ = shape
      oh = (h - layer.kernel) // layer.stride + 1
      ow = (w - layer.kernel) // layer.stride + 1
      if oh < 1 or ow < 1:
        raise ValueError(
            f"layer {i}: a {layer.kernel}x{layer.kernel} stride-{layer.stride}"
            f" convolution does not fit a {h}x{w} input")
      shape = (oh, ow, layer.features)
    else:
      shape = (layer.features,)
    shapes.append(shape)
  return shapes


def input_dims(layers: Sequence[Layer], input_shape: Sequence[int]) -> list[int]:
  """Flattened input width of every layer (channels for a convolution)."""
  dims = []
  shape = tuple(input_shape)
  for layer, out in zip(layers, output_shapes(layers, input_shape)):
    dims.append(shape[-1] if isinstance(layer, Conv) else math.prod(shape))
    shape = out
  return dims


def init(key: jax.Array, layers: Sequence[Layer], input_shape: Sequence[int]) -> Params:
  """Kaiming-normal weights (fan-in, gain sqrt 2) and zero biases, as the reference.

  Args:
    key: a typed PRNG key.
    layers: the network.
    input_shape: shape of one input example, e.g. ``(11,)`` or ``(84, 84, 1)``.

  Returns:
    A list with one float32 ``{'w', 'b'}`` dict per layer: ``w (out, in)``,
    ``b (out,)`` for a dense layer; ``w (k, k, in, out)``, ``b (out,)`` for a
    convolution (``in``: `input_dims`).
  """
  params = []
  for layer, in_dim, k in zip(
      layers, input_dims(layers, input_shape), jax.random.split(key, len(layers))):
    std = math.sqrt(2.0 / _fan_in(layer, in_dim))
    if isinstance(layer, Conv):
      shape = (layer.kernel, layer.kernel, in_dim, layer.features)
    else:
      shape = (layer.features, in_dim)
    params.append({
        "w": std * jax.random.normal(k, shape, jnp.float32),
        "b": jnp.zeros((layer.features,), jnp.float32),
    })
  return params


def activate(z: jax.Array, activation: Activation) -> jax.Array:
  """``relu(z)`` or ``z`` (``'linear'``), elementwise: the shape of ``z``, e.g. ``(B, out)``."""
  return jax.nn.relu(z) if activation == "relu" else z


def dense(w: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
  """``x @ w.T + b`` for ``x`` of shape ``(..., in)`` and ``w`` of shape ``(out, in)``."""
  return x @ w.T + b


_CONV_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
  return jax.lax.conv_general_dilated(x, w, (stride, stride), "VALID",
                                      dimension_numbers=_CONV_DIMS)


def _kernel_grad_by_matmuls(x: jax.Array, dy: jax.Array, shape, stride: int) -> jax.Array:
  """d loss / d kernel as one matmul per kernel tap: sum over batch and positions."""
  kh, kw, c, o = shape
  ho, wo = dy.shape[1], dy.shape[2]
  dy = dy.reshape(-1, o)
  taps = [x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
          .reshape(-1, c).T @ dy for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, c, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
  """'VALID' convolution of NHWC ``x (B, H, W, C)`` with HWIO ``w (k, k, C, O)``.

  The same function as `jax.lax.conv_general_dilated`, with its own VJP: on
  CPU the kernel gradient is computed as ``k * k`` matmuls over the batch and
  positions, which XLA:CPU runs about twice as fast as its backward-filter
  convolution (BUILD_NOTES, "Measured speed"); on other platforms it is XLA's.
  The input gradient is XLA's everywhere. Agrees with plain autodiff to float
  rounding (tests/test_nets.py).
  """
  return _conv(x, w, stride)


def _conv2d_fwd(x, w, stride):
  return _conv(x, w, stride), (x, w)


def _conv2d_bwd(stride, residuals, dy):
  x, w = residuals
  dx = jax.vjp(lambda x: _conv(x, w, stride), x)[1](dy)[0]
  dw = jax.lax.platform_dependent(
      x, dy,
      cpu=lambda x, dy: _kernel_grad_by_matmuls(x, dy, w.shape, stride),
      default=lambda x, dy: jax.vjp(lambda w: _conv(x, w, stride), w)[1](dy)[0])
  return dx, dw


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def apply_layer(layer: Layer, p: dict, x: jax.Array) -> jax.Array:
  """One layer (with its activation) on a batch ``x`` of shape ``(B, ...)``.

  A dense layer flattens ``x`` to ``(B, in)`` and gives ``(B, out)``; a
  convolution takes ``(B, H, W, C)`` and gives ``(B, H', W', out)``.
  """
  if isinstance(layer, Conv):
    z = conv2d(x, p["w"], layer.stride) + p["b"]
  else:
    if x.ndim > 2:
      x = x.reshape(x.shape[0], -1)
    z = dense(p["w"], p["b"], x)
  return activate(z, layer.activation)


def forward(
    layers: Sequence[Layer], params: Params, x: jax.Array
) -> tuple[jax.Array, list[jax.Array]]:
  """Runs the network and returns the output and every layer's activity.

  Args:
    layers: the network.
    params: its parameters (`init`'s list).
    x: a batch ``(B, *input_shape)``.

  Returns:
    ``(y, hs)`` where ``hs[0] = x`` and ``hs[l + 1]`` is the (post-activation)
    output of layer ``l``, ``(B, *output_shapes(layers, input_shape)[l])``
    (unflattened); ``y = hs[-1]``, ``(B, m)`` for the library's networks. This
    is the reference's ``activations_list``.
  """
  hs = [x]
  for layer, p in zip(layers, params):
    hs.append(apply_layer(layer, p, hs[-1]))
  return hs[-1], hs


def apply(layers: Sequence[Layer], params: Params, x: jax.Array) -> jax.Array:
  """The network's output ``(B, out)`` on a batch ``(B, *input_shape)``; flattens a conv output."""
  for layer, p in zip(layers, params):
    x = apply_layer(layer, p, x)
  return x.reshape(x.shape[0], -1) if x.ndim > 2 else x
