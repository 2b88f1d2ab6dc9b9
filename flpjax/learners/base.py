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
  input_shape                      -> the shape of one raw input example, e.g.
                                      ``(11,)``; `lifetime` refuses inputs of
                                      another shape (`check_inputs`)

The network is split into a *frozen trunk* (meta-learned, fixed within a
lifetime) and the last ``n_plastic`` dense layers, whose weights are in the
fast state. The trunk does not change within a lifetime, so `encode` runs once
per lifetime on every example, outside the scan (`lifetime.run`).

Meta-parameters are one dict of groups; per-layer entries are keyed by the
layer's index in the network, as a string. Every learner has ``'ff'`` (the
initial weights ``[{'w', 'b'}] * n_layers``, frozen layers too: a list, indexed
by the layer); the others are the learner's own (see each learner's
``groups``). The optimizer group of every leaf is what `param_labels` says,
not the top-level key alone: FLP's readout plasticity ``params['alpha'][str(readout)]``
is the group ``'alpha_readout'``.

Adding a learner: a module with a constructor returning a `Learner` and its config
plug-in names (``CONFIG``, ``GROUPS``, ``validate_config``, ``from_config``; see
`flpjax.config.registry`), and one registration (`flpjax.config.register`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from flpjax import nets
from flpjax.types import FastState, Group, Params
from flpjax.types import loss as _loss

Example = tuple  # (h (B, in), y (B, ...)): encoded inputs and targets.

#: Groups of every learner: the initial feed-forward weights.
FF = Group("ff", 1e-4, "initial feed-forward weights and biases of every layer")


class Learner(NamedTuple):
  """The pure functions that define a lifetime, and the learner's declarations.

  Built by the constructors of `flpjax.learners` (`flp`, `gradient`, `dfa`,
  `fa`, `learned_rule`, `plastic_feedback`, `with_trunk`); see the module
  docstring for what each field computes. ``input_shape`` is the shape of one
  raw example (None: unknown, nothing is checked).

  Shapes (``in``: the first plastic layer's input width, ``m``: the readout's):

  * ``init_params(key ()) -> params``: the tree of `param_labels`' table;
  * ``init(params, key ()) -> fast``: the learner's own layout (its module
    docstring), e.g. FLP's ``{layer: {'w': (out, in)}}``;
  * ``encode(params, x (N, *input_shape)) -> h (N, in)``;
  * ``step(params, fast, (h (B, in), y (B, m) or labels (B,))) -> fast``;
  * ``predict(params, fast, h (N, in)) -> (N, m)``;
  * ``plastic_weights(fast) -> {layer: W (out, in)}``.
  """

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
  input_shape: tuple[int, ...] | None = None


def check_inputs(learner: Learner, shape: Sequence[int], what: str = "inputs") -> None:
  """Refuses examples whose shape is not the learner's ``input_shape``, in one line.

  Called by `flpjax.lifetime` before anything is traced through the lifetime,
  so that a mismatch names the two shapes instead of failing deep inside the scan.

  Args:
    learner: the learner (nothing is checked when its ``input_shape`` is None).
    shape: the shape of one example, without the step and batch axes.
    what: what the examples are, for the message (e.g. ``'task.input_shape'``).

  Raises:
    ValueError: the shapes differ.
  """
  expected = learner.input_shape
  if expected is not None and tuple(shape) != tuple(expected):
    raise ValueError(
        f"{what}: examples of shape {tuple(shape)} do not fit this learner, built for input "
        f"shape {tuple(expected)}; build the learner with the task's shape, e.g. "
        "learners.flp(layers, task.input_shape, n_plastic)")


def check_task(learner: Learner, task) -> None:
  """`check_inputs` for a `flpjax.types.Task`: its ``input_shape`` must be the learner's."""
  check_inputs(learner, task.input_shape, "task.input_shape")


def records_input_shape(constructor: Callable[..., Learner]) -> Callable[..., Learner]:
  """``constructor`` (which takes an ``input_shape`` argument), returning learners
  whose `Learner.input_shape` is that argument."""
  signature = inspect.signature(constructor)

  @functools.wraps(constructor)
  def build(*args, **kwargs) -> Learner:
    shape = signature.bind(*args, **kwargs).arguments["input_shape"]
    learner = constructor(*args, **kwargs)
    return learner._replace(input_shape=tuple(int(d) for d in shape))

  return build


def group_names(learner: Learner) -> tuple[str, ...]:
  """Names of the learner's meta-parameter groups."""
  return tuple(g.name for g in learner.groups)


def labels_by_top_level(params: Params) -> Any:
  """Every leaf labelled with its top-level key (``params['fb'][...] -> 'fb'``).

  Returns a tree of strings with the structure of ``params`` (as `param_labels`).
  """
  return {group: jax.tree.map(lambda _, g=group: g, sub) for group, sub in params.items()}


def labels_with_readout(name: str, readout: int) -> Callable[[Params], Any]:
  """Labels by top-level key, except group ``name``'s readout entry: ``name + '_readout'``.

  Returns ``labels(params)``, a tree of strings with the structure of ``params``
  (FLP's: the table of `param_labels`).
  """

  def labels(params: Params) -> Any:
    out = labels_by_top_level(params)
    if name in params:
      out[name] = {k: jax.tree.map(lambda _, k=k: f"{name}_readout" if int(k) == readout
                                   else name, v) for k, v in params[name].items()}
    return out

  return labels


def weights_of(fast: FastState) -> dict:
  """``{layer: w (out, in)}`` of a fast state laid out as ``{layer: {'w': (out, in), ...}}``."""
  return {k: v["w"] for k, v in fast.items()}


def inner_loss(output: str, y_hat: jax.Array, y: jax.Array) -> jax.Array:
  """Loss ``()`` of one lifetime step: `flpjax.types.loss` of ``y_hat (B, m)`` and ``y``.

  ``y`` is ``(B, m)`` (regression) or integer labels ``(B,)`` (classification).
  """
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
  """Activities ``[h, h_1, ..., y_hat]`` of the plastic stack (pre-feedback).

  ``h`` is ``(B, in)``; entry ``i + 1`` is plastic layer ``i``'s output
  ``(B, out_i)``, the last one ``y_hat (B, m)``. ``fast`` is ``{layer: {'w':
  (out, in)}}``, plus ``'b': (out,)`` where biases are plastic (otherwise the
  bias is ``params['ff'][l]['b']``). A fast ``w`` with fewer rows ``(r, in)`` than
  the layer holds its first ``r`` rows; the others are the layer's initial weights
  ``params['ff'][l]['w'][r:]`` (`flp`'s ``readout_rows``).
  """
  hs = [h]
  for l in plastic:
    p = fast[str(l)]
    b = p["b"] if "b" in p else params["ff"][l]["b"]
    w, full = p["w"], params["ff"][l]["w"]
    if w.shape[0] < full.shape[0]:
      r = w.shape[0]
      z = jnp.concatenate([nets.dense(w, b[:r], hs[-1]),
                           nets.dense(full[r:], b[r:], hs[-1])], axis=-1)
    else:
      z = nets.dense(w, b, hs[-1])
    hs.append(nets.activate(z, layers[l].activation))
  return hs


def param_labels(params: Params, learner_or_readout) -> Any:
  """The optimizer group of every leaf of the meta-parameters: one string per leaf.

  The result has the structure of ``params``, so it can be given to
  ``optax.multi_transform`` (or ``optax.partition``) to build an optimizer of
  one's own, one transformation per group. The group names a learner may use
  are its ``groups`` (`group_names`). FLP's tree and labels:

  | leaf | shape | label |
  |---|---|---|
  | ``params['ff'][l]['w']``, ``params['ff'][l]['b']`` | ``(out, in)``, ``(out,)`` | ``'ff'`` (every layer) |
  | ``params['fb'][str(l)]['B']``, ``['c']`` | ``(out, m)``, ``(out,)`` | ``'fb'`` |
  | ``params['alpha'][str(l)]``, ``l < readout`` | ``(out, in)`` | ``'alpha'`` |
  | ``params['alpha'][str(readout)]`` | ``(m, in)`` | ``'alpha_readout'`` |
  | ``params['beta'][str(l)]`` | ``()`` | ``'beta'`` |

  (``l``: a plastic layer's index in the network; ``m``: the readout's width.)
  Other learners add their own groups (``'lr'``, ``'rule'``, ``'trunk'``, ...),
  each labelled by its top-level key.

  Example:
    >>> labels = param_labels(params, learner)
    >>> opt = optax.multi_transform(
    ...     {g: optax.adam(1e-4) for g in group_names(learner)}, labels)

  Args:
    params: meta-parameters (`Learner.init_params`'s, possibly with leading axes).
    learner_or_readout: a `Learner` (asked for its ``labels``), or the readout's
      index (the FLP labelling: ``'alpha_readout'`` for the readout's plasticity).

  Returns:
    A tree of strings with the structure of ``params``.
  """
  if isinstance(learner_or_readout, Learner):
    if learner_or_readout.labels is not None:
      return learner_or_readout.labels(params)
    return labels_by_top_level(params)
  return labels_with_readout("alpha", learner_or_readout)(params)
