"""Frozen trunks as flax modules, and the config field that names one (``config.net.trunk``).

A learner's frozen trunk (meta-learned, fixed within a lifetime) is by
default the network's own first layers, whose weights are in ``params['ff']``
(`learners.base.encoder`). ``config.net.trunk`` puts a flax module there
instead (`flpjax.learners.with_trunk`; its variables are ``params['trunk']``,
the group ``'trunk'``):

* ``''``: the built-in frozen layers (the default; the paper's numbers);
* ``'mlp'``: `MLP`, the sine network's frozen dense layers as a flax module;
* ``'conv'``: `ConvNet`, the classification network's frozen layers (its
  convolutions, through `nets.conv2d` and its own VJP on the CPU, and any
  frozen dense layer after them);
* ``'package.module:attr'``: your own `flax.linen.Module` class, a
  zero-argument factory returning one, or a `flax.nnx.Module` class (put
  through ``flax.nnx.bridge.to_linen``), imported by path. It replaces the
  network's frozen layers, those before the last ``config.plastic_layers``
  ones; BatchNorm statistics and dropout are supported (`learners.trunk`).

`MLP` and `ConvNet` take the network's layer specs (`nets.Dense`,
`nets.Conv`) and draw their weights as `nets.init` does (He normal over the
fan-in, zero biases), not the same numbers. `to_variables` turns the built-in
trunk's weights into theirs.

Example:
  >>> layers = nets.regression_mlp()                  # 9 dense layers, the last 3 plastic
  >>> trunk = MLP(layers[:6])                          # (N, 11) -> (N, 300)
  >>> variables = trunk.init(jax.random.key(0), jnp.zeros((1, 11)))
  >>> trunk.apply(variables, jnp.zeros((32, 11))).shape
  (32, 300)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flpjax import learners, nets
from flpjax.config import checks, registry
from flpjax.learners import trunk as trunk_lib
from flpjax.learners.base import Learner
from flpjax.types import Group

#: `nets.init`'s distribution: normal with std ``sqrt(2 / fan_in)``, untruncated.
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
#: ``config.net.trunk`` values naming this module's trunks.
BUILT_IN = ("mlp", "conv")
#: The trunk's group in a config (``meta.lr.trunk``; None: the frozen layers' rate, ``ff``).
GROUPS = (Group("trunk", 1e-4, "variables of the flax trunk named by config.net.trunk",
                fallback="ff"),)
_EXPECTED = ("'' (the built-in frozen layers), 'mlp', 'conv', or 'package.module:attr' (a "
             "flax.linen.Module class, a zero-argument factory of one, or an nnx.Module class)")


class Conv(nn.Module):
  """A 'VALID' convolution ``(N, H, W, C) -> (N, H', W', features)`` by `nets.conv2d`.

  Its variables are ``kernel (kernel, kernel, C, features)`` (HWIO, as
  `nets.Conv`'s ``w``) and ``bias (features,)``; no activation.
  """

  features: int
  kernel: int = 3
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.param("kernel", HE_NORMAL, (self.kernel, self.kernel, x.shape[-1], self.features),
                   jnp.float32)
    b = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return nets.conv2d(x, w, self.stride) + b


def _apply_layers(layers: Sequence[nets.Layer], x: jax.Array) -> jax.Array:
  """The layers in order (inside a compact module), as `nets.apply`; flattens before a dense."""
  for i, layer in enumerate(layers):
    if isinstance(layer, nets.Conv):
      x = Conv(layer.features, layer.kernel, layer.stride, name=f"layer{i}")(x)
    else:
      x = x.reshape((x.shape[0], -1))
      x = nn.Dense(layer.features, kernel_init=HE_NORMAL, name=f"layer{i}")(x)
    x = nets.activate(x, layer.activation)
  return x


class MLP(nn.Module):
  """Dense layers (`nets.Dense` specs): ``(N, *input_shape) -> (N, layers[-1].features)``.

  The input is flattened first. Layer ``i``'s variables are
  ``params['layer<i>']``: ``kernel (in, features)`` (the transpose of
  `nets.Dense`'s ``w``) and ``bias (features,)``.
  """

  layers: tuple[nets.Dense, ...]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not self.layers or not all(isinstance(l, nets.Dense) for l in self.layers):
      raise ValueError(f"MLP: expected a non-empty tuple of nets.Dense, got {self.layers}")
    return _apply_layers(self.layers, x.reshape((x.shape[0], -1)))


class ConvNet(nn.Module):
  """Convolutions (`nets.Conv` specs), then any dense layers: ``(N, H, W, C) -> (N, ...)``.

  NHWC, 'VALID' padding, each layer's stride and activation; the kernels go
  through `nets.conv2d` (the CPU's fast kernel gradient). The output is
  ``(N, H', W', C')`` after the last convolution, or ``(N, features)`` after
  a dense layer. Variables as `Conv` and `MLP`, ``params['layer<i>']``.
  """

  layers: tuple[nets.Layer, ...]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kinds = [isinstance(l, nets.Conv) for l in self.layers]
    if not kinds or not kinds[0] or kinds != sorted(kinds, reverse=True):
      raise ValueError("ConvNet: expected nets.Conv layers, then any nets.Dense ones, got "
                       f"{self.layers}")
    return _apply_layers(self.layers, x)


def to_variables(layers: Sequence[nets.Layer], params: nets.Params) -> dict[str, Any]:
  """The variables of ``MLP(layers)`` / ``ConvNet(layers)`` holding the weights ``params``.

  Args:
    layers: the layer specs.
    params: `nets.init`-style weights of those layers (``params['ff'][:k]`` of
      a built-in trunk): ``[{'w', 'b'}, ...]``, ``w (out, in)`` (dense) or
      ``(k, k, in, out)`` (conv), ``b (out,)``.

  Returns:
    ``{'params': {'layer<i>': {'kernel', 'bias'}}}``: ``kernel (in, out)``
    (dense, ``w.T``) or ``(k, k, in, out)`` (conv, ``w``), ``bias (out,)``;
    the module then computes `nets.apply` of ``layers`` and ``params``.
  """
  return {"params": {f"layer{i}": {"kernel": p["w"] if isinstance(l, nets.Conv) else p["w"].T,
                                   "bias": p["b"]}
                     for i, (l, p) in enumerate(zip(layers, params))}}


def load(path: str) -> nn.Module:
  """The flax module named ``'package.module:attr'`` (``attr`` may be dotted).

  ``attr`` is a `flax.linen.Module` class (instantiated without arguments), a
  `flax.nnx.Module` class (``flax.nnx.bridge.to_linen(attr)``, its ``rngs``
  given by flax), or a zero-argument callable returning a linen module.

  Raises:
    ValueError: in one line, for a path that does not import.
    TypeError: in one line, for one that does not name a module.
  """
  module_name, colon, attr = path.partition(":")
  if not colon or not module_name or not attr:
    raise ValueError("not of the form 'package.module:attr'")
  try:
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
      obj = getattr(obj, part)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"{type(e).__name__}: {e}") from None
  if isinstance(obj, type) and issubclass(obj, nn.Module):
    obj = obj()
  elif isinstance(obj, type) and _is_nnx(obj):
    from flax.nnx import bridge  # pylint: disable=g-import-not-at-top
    obj = bridge.to_linen(obj)
  elif callable(obj) and not isinstance(obj, nn.Module):
    obj = obj()
  if not isinstance(obj, nn.Module):
    raise TypeError(f"{path} gives a {type(obj).__name__}, not a flax.linen.Module")
  return obj


def _is_nnx(cls: type) -> bool:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  return issubclass(cls, nnx.Module)


def frozen_layers(layers: Sequence[nets.Layer], plastic_layers: int) -> tuple[nets.Layer, ...]:
  """The layers before the last ``plastic_layers``: the ones a trunk replaces."""
  return tuple(layers[: len(layers) - plastic_layers])


def make_module(name: str, frozen: Sequence[nets.Layer]) -> nn.Module:
  """The flax module that ``config.net.trunk = name`` puts in place of the ``frozen`` layers.

  Raises:
    ValueError: in one line, when ``name`` does not fit ``frozen`` (``'mlp'``
      over convolutions, no frozen layers) or does not load.
  """
  frozen = tuple(frozen)
  if name in BUILT_IN:
    if not frozen:
      raise ValueError("every layer is plastic, so there are no frozen layers to make a trunk of")
    has_conv = any(isinstance(l, nets.Conv) for l in frozen)
    if name == "mlp" and has_conv:
      raise ValueError("'mlp' replaces dense layers only; these frozen layers have "
                       "convolutions: use 'conv'")
    if name == "conv" and not has_conv:
      raise ValueError("'conv' replaces convolutions; these frozen layers are dense: use 'mlp'")
    return MLP(frozen) if name == "mlp" else ConvNet(frozen)
  return load(name)


def validate_config(config, layers: Sequence[nets.Layer], input_shape: Sequence[int]) -> None:
  """Checks ``config.net.trunk`` (absent: ``''``); one `ConfigError` line naming it.

  Builds the module and traces it once on ``input_shape`` (`jax.eval_shape`,
  nothing compiled), so a module that does not fit the inputs, or needs an rng
  stream other than ``'dropout'``, stops here.

  Args:
    config: the config (``plastic_layers`` already checked).
    layers: the task's network (`registry.network`).
    input_shape: the shape of one input example.

  Raises:
    flpjax.config.ConfigError: ``config.net.trunk=<value>: expected ...``.
  """
  name = config.net.get("trunk", "")
  if name == "":
    return

  def fail(expected: str):
    checks.fail("net.trunk", name, expected)

  if not isinstance(name, str):
    fail(_EXPECTED)
  if getattr(registry.get("estimator", config.estimator), "evaluate", None) is not None:
    fail(f"'' with estimator={config.estimator!r} (its own evaluation rebuilds the network's "
         "layers)")
  for field in ("init_ff_from", "extend_from"):
    if config.get(field):
      fail(f"'' with config.{field} (the run it starts from has the built-in frozen layers)")
  try:
    trunk = make_module(name, frozen_layers(layers, config.plastic_layers))
  except (ValueError, TypeError) as e:
    fail(f"{_EXPECTED}; {e}")
  try:
    trunk_lib.trunk_features(trunk, input_shape)
  except Exception as e:  # noqa: BLE001  # the user's module: one line
    first = str(e).splitlines()[0] if str(e) else ""
    fail(f"a flax module that runs on inputs (N, {', '.join(map(str, input_shape))}): "
         + (first if isinstance(e, ValueError) else f"{type(e).__name__}: {first}"))


def apply_trunk(config, make_learner: Callable[[tuple, tuple], Learner],
                layers: Sequence[nets.Layer], input_shape: Sequence[int]) -> Learner:
  """The config's learner, behind the flax trunk that ``config.net.trunk`` names.

  With ``''`` this is ``make_learner(layers, input_shape)``, the built-in
  trunk, unchanged. Otherwise the trunk replaces the layers before the last
  ``config.plastic_layers`` ones, which become the learner's whole network
  (all plastic), on the trunk's flattened output. The group ``'trunk'`` (`GROUPS`)
  takes ``config.meta.lr.trunk``, or when that is None the frozen layers' rate
  ``config.meta.lr.ff``.

  Args:
    config: a validated config (`validate_config`).
    make_learner: ``make_learner(layers, input_shape) -> Learner``, the
      config's learner on a network (``config.plastic_layers`` plastic).
    layers: the task's network.
    input_shape: the shape of one raw input example.

  Returns:
    The `Learner`; its ``input_shape`` is ``input_shape``.
  """
  name = config.net.get("trunk", "")
  if not name:
    return make_learner(tuple(layers), tuple(input_shape))
  frozen = frozen_layers(layers, config.plastic_layers)
  trunk = make_module(name, frozen)
  head = make_learner(tuple(layers[len(frozen):]),
                      (trunk_lib.trunk_features(trunk, input_shape),))
  learner = learners.with_trunk(head, trunk, tuple(input_shape))
  return learner._replace(groups=learner.groups[:-1] + GROUPS)
