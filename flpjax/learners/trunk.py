"""A learner on a user's own encoder: any flax module as the frozen trunk.

FLP (or any learner here) keeps its plastic dense layers; what feeds them is a
`flax.linen.Module` of the user's (a CNN, a pretrained backbone), meta-learned
like the rest but fixed within a lifetime. `with_trunk` wraps a learner built
on the trunk's feature width:

  >>> cnn = MyCNN()                                   # flax.linen.Module, (N, H, W, C) -> (N, ...)
  >>> d = trunk_features(cnn, (28, 28, 1))            # width of its flattened output
  >>> head = learners.flp((nets.Dense(64), nets.Dense(16, "linear")), (d,), 2,
  ...                     output="classification", signal="target", clamp_readout=True)
  >>> learner = with_trunk(head, cnn, (28, 28, 1))

The trunk's variables are the meta-parameter group ``'trunk'``
(``params['trunk']``, its own Adam and rate: ``meta.make_optimizer({..., 'trunk': 1e-3}, learner)``;
without a rate it stays at its initialisation). The trunk runs once per
lifetime on every example, outside the scan (`lifetime.run`), as the built-in
conv trunk does. A `flax.nnx` module can be used through
``flax.nnx.bridge.to_linen``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from flpjax.learners import base
from flpjax.learners.base import Learner
from flpjax.types import Group, Params

TRUNK = Group("trunk", 1e-4, "variables of the user's flax trunk (learners.trunk.with_trunk)")


def trunk_features(module, input_shape: Sequence[int]) -> int:
  """Width of the module's output for one example, flattened (no compilation: `jax.eval_shape`)."""
  x = jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), x)
  out = jax.eval_shape(module.apply, variables, x)
  size = 1
  for d in out.shape[1:]:
    size *= d
  return size


def with_trunk(learner: Learner, module, input_shape: Sequence[int]) -> Learner:
  """``learner`` behind the flax ``module`` (see the module docstring).

  Args:
    learner: a learner whose network's input is the trunk's flattened output
      (``(trunk_features(module, input_shape),)``); its own frozen layers, if
      any, run after the trunk.
    module: a `flax.linen.Module` mapping ``(N, *input_shape)`` to ``(N, ...)``.
    input_shape: shape of one raw input example.

  Returns:
    The learner with ``params['trunk']`` and the group ``'trunk'``.

  Raises:
    ValueError: the learner already has a ``'trunk'`` group.
  """
  if "trunk" in base.group_names(learner):
    raise ValueError("the learner already has a trunk")
  input_shape = tuple(input_shape)

  def init_params(key: jax.Array) -> Params:
    k_learner, k_trunk = jax.random.split(key)
    params = dict(learner.init_params(k_learner))
    params["trunk"] = module.init(k_trunk, jnp.zeros((1,) + input_shape, jnp.float32))
    return params

  def encode(params: Params, x: jax.Array) -> jax.Array:
    h = module.apply(params["trunk"], x)
    return learner.encode(params, h.reshape((h.shape[0], -1)))

  def labels(params: Params):
    rest = {k: v for k, v in params.items() if k != "trunk"}
    out = dict(base.param_labels(rest, learner))
    out["trunk"] = jax.tree.map(lambda _: "trunk", params["trunk"])
    return out

  return learner._replace(init_params=init_params, encode=encode, labels=labels,
                          groups=learner.groups + (TRUNK,))
