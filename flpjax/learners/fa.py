"""Feedback alignment (Lillicrap et al. 2016): backprop through fixed random matrices.

The error is passed back layer by layer as in backpropagation, but through a
random matrix ``R_l`` of the shape of ``W_l`` in place of the forward weights
(no weight transport). With ``R_l = W_l`` (the current forward weights) a step
is exactly `gradient`'s. Shares its machinery with `dfa` (`dfa.feedback_learner`).

Meta-parameter groups (`Learner.groups`):

  'ff' : [{'w', 'b'}] * n_layers           initial feed-forward weights and biases
  'fb' : {layer: {'R': (out_l, in_l)}}     backward matrices of the plastic layers
                                           after the first; default meta-learning
                                           rate 0 (fixed) unless ``learn_feedback``

Fast state: ``{layer: {'w': (out, in), 'b': (out,)}}``, as `gradient`.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax

from flpjax import nets, types
from flpjax.learners import base
from flpjax.learners.base import Learner
from flpjax.learners.dfa import (  # noqa: F401
  CONFIG,
  GROUPS,
  alignment_options,
  derivative,
  feedback_group,
  feedback_learner,
  validate_config,
)
from flpjax.types import Params


def fa(
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
  """Feedback alignment (Lillicrap et al. 2016) on the plastic layers.

  One step on a batch ``(h, y)``, with ``e = dL/dy_hat`` ``(B, m)`` the
  gradient of the step's own loss (`flpjax.types.loss`) at the output, and
  plastic layers ``p_1 < ... < p_n = L`` (the readout):

    readout:      delta_L   = e * f_L'(z_L)                            (B, m)
    going down:   delta_p_i = (delta_p_{i+1} @ R_p_{i+1}) * f'(z_p_i)  (B, out_p_i)
    every layer:  W_l <- W_l - lr * delta_l.T @ h_{l-1}                (out_l, in_l)
                  b_l <- b_l - lr * sum_batch delta_l                   (out_l,)

  ``R_l`` ``(out_l, in_l)`` stands where backprop has ``W_l``, so
  ``delta @ R_l`` is ``(B, in_l) = (B, out_{l-1})``. It is drawn once in
  ``init_params`` like a forward weight (kaiming normal, std
  ``sqrt(2 / in_l)``), so the backward signal has backprop's scale at
  initialisation, and never changes within a lifetime.

  Args:
    layers, input_shape, n_plastic, output, lr, second_order, learn_feedback,
      reset_readout: as for `flpjax.learners.dfa.dfa` (``learn_feedback``
      meta-learns the ``R_l``; it needs ``second_order``).

  Returns:
    The `Learner`; ``params['fb'] = {layer: {'R': (out_l, in_l)}}`` for every
    plastic layer after the first.
  """
  layers = tuple(layers)
  plastic = base.check_structure(layers, n_plastic)
  in_dims = nets.input_dims(layers, input_shape)
  fed = plastic[1:]

  def init_feedback(key: jax.Array, ff: Params) -> Params:
    return {str(l): {"R": math.sqrt(2.0 / in_dims[l])
                          * jax.random.normal(k, ff[l]["w"].shape, ff[l]["w"].dtype)}
            for l, k in zip(fed, jax.random.split(key, max(len(fed), 1)))}

  def backward(fb: Params, zs: list, e: jax.Array) -> list:
    d = e * derivative(zs[-1], layers[plastic[-1]].activation)
    deltas = [d]
    for i in range(len(plastic) - 2, -1, -1):
      d = (d @ fb[str(plastic[i + 1])]["R"]) * derivative(zs[i], layers[plastic[i]].activation)
      deltas.insert(0, d)
    return deltas

  group = feedback_group(learn_feedback,
                         "backward matrices R of the plastic layers after the first (FA)")
  return feedback_learner(layers, input_shape, n_plastic, output=output, lr=lr,
                          second_order=second_order, learn_feedback=learn_feedback,
                          reset_readout=reset_readout, init_feedback=init_feedback,
                          backward=backward, group=group)


# ----------------------------------------------------------------------------- config plug-in
# config.learner = 'fa' (flpjax.config.registry): dfa's ``alignment`` section, groups and
# checks (CONFIG, GROUPS, validate_config, imported above).


def from_config(config, layers, input_shape, output) -> Learner:
  """`fa` with ``config.plastic_layers`` plastic layers and the ``config.alignment`` options."""
  return base.records_input_shape(fa)(layers, input_shape, config.plastic_layers,
                                      output=output, **alignment_options(config))
