"""A learner on a flax module: the frozen trunk in front of the plastic layers.

FLP (or any learner here) keeps its plastic dense layers; what feeds them is a
`flax.linen.Module` (`flpjax.trunks`' `MLP` / `ConvNet`, a user's CNN, a
pretrained backbone), meta-learned like the rest but fixed within a lifetime.
`with_trunk` wraps a learner built on the trunk's feature width:

  >>> cnn = MyCNN()                                   # flax.linen.Module, (N, H, W, C) -> (N, ...)
  >>> d = trunk_features(cnn, (28, 28, 1))            # width of its flattened output
  >>> head = learners.flp((nets.Dense(64), nets.Dense(16, "linear")), (d,), 2,
  ...                     output="classification", signal="target", clamp_readout=True)
  >>> learner = with_trunk(head, cnn, (28, 28, 1))

The trunk's variables are ``params['trunk']``, the meta-parameter group
``'trunk'`` (its own Adam and rate: ``meta.make_optimizer({..., 'trunk': 1e-3}, learner)``;
without a rate it stays at its initialisation). The trunk runs once per
lifetime on every example, outside the scan (`lifetime.run`), as the built-in
frozen layers do. A `flax.nnx` module works through ``flax.nnx.bridge.to_linen``.

What a trunk may hold besides ``'params'`` (`read_only_state`):

* state collections (BatchNorm's ``'batch_stats'``, an nnx ``BatchStat``):
  part of ``params['trunk']``, read and never written within a lifetime, and
  not meta-learned (no meta-gradient reaches them); ``'intermediates'``
  (`flax.linen.Module.sow`) are not kept;
* randomness: the ``'dropout'`` rng stream only. Its key is derived from the
  inputs the trunk encodes together (`input_key`), so a lifetime is a
  deterministic function of its examples and meta-parameters, and each
  lifetime (each episode) draws its own masks. Any other rng stream is refused
  in one line by `with_trunk`, before anything is compiled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.errors
import jax
import jax.numpy as jnp

from flpjax.learners import base
from flpjax.learners.base import Learner
from flpjax.types import Group, Params

TRUNK = Group("trunk", 1e-4, "variables of the flax trunk (learners.trunk.with_trunk)")
#: The rng streams a trunk may use (each drawn from `input_key`).
RNG_STREAMS = ("dropout",)
#: Collections never kept in the meta-parameters (``sow``'s default).
DROPPED = ("intermediates",)


def input_key(x: jax.Array, seed: int = 0) -> jax.Array:
  """A PRNG key that is a function of the batch ``x`` (any shape): its float32 bits, summed.

  The trunk's dropout key: the same examples give the same masks, another
  episode other masks. No gradient flows through it.

  Args:
    x: the examples encoded together, e.g. ``(N, *input_shape)``.
    seed: folded into the key.

  Returns:
    A typed PRNG key ``()``.
  """
  bits = jax.lax.bitcast_convert_type(jax.lax.stop_gradient(x).astype(jnp.float32), jnp.uint32)
  return jax.random.fold_in(jax.random.key(seed), jnp.sum(bits, dtype=jnp.uint32))


class ReadOnlyState(NamedTuple):
  """A flax module as two pure functions, its state read but never written.

  Attributes:
    init: ``init(key, x) -> variables`` for a batch ``x (N, *input_shape)``:
      the module's collections, ``'intermediates'`` dropped.
    apply: ``apply(variables, x) -> y (N, ...)``: collections other than
      ``'params'`` (BatchNorm's ``'batch_stats'``) are passed as mutable and
      their updates dropped, behind `jax.lax.stop_gradient`; the ``'dropout'``
      rng is `input_key` of ``x``.
    name: the module's class name, for messages.
  """

  init: Callable[[jax.Array, jax.Array], Any]
  apply: Callable[[Any, jax.Array], jax.Array]
  name: str


def read_only_state(module) -> ReadOnlyState:
  """``module`` (a `flax.linen.Module`) as a pure function of its variables within a lifetime."""
  if isinstance(module, ReadOnlyState):
    return module

  def init(key: jax.Array, x: jax.Array):
    k_params, k_dropout = jax.random.split(key)
    variables = module.init({"params": k_params, "dropout": k_dropout}, x)
    return {c: v for c, v in variables.items() if c not in DROPPED}

  def apply(variables, x: jax.Array) -> jax.Array:
    state = [c for c in variables if c != "params"]
    rngs = {"dropout": input_key(x)}
    if not state:
      return module.apply(variables, x, rngs=rngs)
    variables = {c: v if c == "params" else jax.lax.stop_gradient(v)
                 for c, v in variables.items()}
    return module.apply(variables, x, rngs=rngs, mutable=state)[0]

  nnx_class = getattr(module, "nnx_class", None)  # flax.nnx.bridge.to_linen's
  return ReadOnlyState(init, apply, getattr(nnx_class, "__name__", type(module).__name__))


def _check(trunk: ReadOnlyState, input_shape: tuple[int, ...]) -> int:
  """Traces the trunk once (`jax.eval_shape`); its flattened feature width, or one line."""
  x = jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32)
  try:
    variables = jax.eval_shape(trunk.init, jax.random.key(0), x)
    out = jax.eval_shape(trunk.apply, variables, x)
  except (flax.errors.InvalidRngError, KeyError, AttributeError) as e:
    if not isinstance(e, flax.errors.InvalidRngError) and "RngStream" not in str(e):
      raise  # not nnx's missing stream (through the bridge)
    found = re.search(r"PRNG for \"([^\"]+)\"|RngStream named '([^']+)'", str(e))
    stream = repr(found.group(1) or found.group(2)) if found else f"({e})"
    raise ValueError(f"flax trunk {trunk.name}: uses the rng stream {stream}; a trunk gets "
                     f"only {RNG_STREAMS[0]!r} (keyed by its inputs, learners.trunk.input_key)"
                     ) from None
  size = 1
  for d in out.shape[1:]:
    size *= d
  return size


def trunk_features(module, input_shape: Sequence[int]) -> int:
  """Width of the module's output for one example, flattened (`jax.eval_shape`, nothing compiled).

  Args:
    module: a `flax.linen.Module` mapping ``(N, *input_shape)`` to ``(N, ...)``;
      stateful (BatchNorm) and dropout modules too.
    input_shape: the shape of one raw input example.

  Returns:
    ``prod(output shape[1:])``.

  Raises:
    ValueError: in one line, for a module that needs an rng stream other than
      ``'dropout'``.
  """
  return _check(read_only_state(module), tuple(input_shape))


def with_trunk(learner: Learner, module, input_shape: Sequence[int]) -> Learner:
  """``learner`` behind the flax ``module``, the frozen trunk (see the module docstring).

  Example:
    >>> d = learners.trunk_features(cnn, (28, 28, 1))       # cnn: (N, 28, 28, 1) -> (N, ...)
    >>> head = learners.flp((nets.Dense(64), nets.Dense(5, "linear")), (d,), 2)
    >>> learner = learners.with_trunk(head, cnn, (28, 28, 1))

  ``nn.BatchNorm(use_running_average=False)`` normalises with the statistics
  of the examples encoded together (a lifetime's stream, or its stream and
  query set in `lifetime.query_loss`); ``use_running_average=True`` with the
  stored statistics, which you may update between meta-steps
  (``examples/flax_trunk.py``). ``nn.Dropout`` draws its masks from
  `input_key` of those examples.

  Args:
    learner: a learner whose network's input is the trunk's flattened output
      (``(trunk_features(module, input_shape),)``); its own frozen layers, if
      any, run after the trunk.
    module: a `flax.linen.Module` mapping ``(N, *input_shape)`` to ``(N, ...)``.
    input_shape: shape of one raw input example.

  Returns:
    The learner with ``params['trunk']`` (the module's variables) and the
    group ``'trunk'``.

  Raises:
    ValueError: the learner already has a ``'trunk'`` group; or, in one line,
      the module needs an rng stream other than ``'dropout'``.
  """
  if "trunk" in base.group_names(learner):
    raise ValueError("the learner already has a trunk")
  input_shape = tuple(input_shape)
  trunk = read_only_state(module)
  _check(trunk, input_shape)

  def init_params(key: jax.Array) -> Params:
    k_learner, k_trunk = jax.random.split(key)
    params = dict(learner.init_params(k_learner))
    params["trunk"] = trunk.init(k_trunk, jnp.zeros((1,) + input_shape, jnp.float32))
    return params

  def encode(params: Params, x: jax.Array) -> jax.Array:
    h = trunk.apply(params["trunk"], x)
    return learner.encode(params, h.reshape((h.shape[0], -1)))

  def labels(params: Params):
    rest = {k: v for k, v in params.items() if k != "trunk"}
    out = dict(base.param_labels(rest, learner))
    out["trunk"] = jax.tree.map(lambda _: "trunk", params["trunk"])
    return out

  return learner._replace(init_params=init_params, encode=encode, labels=labels,
                          groups=learner.groups + (TRUNK,))
