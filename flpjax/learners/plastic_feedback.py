"""FLP with plastic feedback and feedback from hidden layers (paper, section 8.1).

Two extensions of `flp` that the paper names and does not try ("feedback
weights themselves being subject to plasticity"; "feedback from higher
intermediate layers (with no target information) to lower layers"):

* **Plastic feedback.** The feedback matrices ``B_l`` are part of the fast
  state: they start a lifetime at their meta-learned values and, after every
  step, change by a local rule of their own (``feedback_rule``) between the
  signal ``s`` (their presynaptic activity) and the layer's post-feedback
  activity ``post_l`` (their postsynaptic activity), at a meta-learned rate
  ``eta_l`` (one scalar per fed layer). ``eta = 0`` is fixed feedback: the
  learner is then `flp`, bit for bit.
* **Hidden feedback** (``hidden_feedback=True``). Every fed plastic layer
  below the top plastic layer also receives the *pre-feedback* (feed-forward)
  activity of the plastic layer above it, through a meta-learned matrix
  ``H_l``, inside the feedback's ReLU. Pre-feedback activity carries no target
  information, as in the paper's suggestion. ``H_l`` starts at zero (the
  learner starts as `flp`, and equals it bit for bit while ``H = 0``); it is
  fixed within a lifetime.

One step on a batch ``(h, y)`` (``h_l (B, out_l)``: the feed-forward activity
of layer ``l``; ``s (B, m)``: the error or target signal; ``pre_l``: the
presynaptic activity, all as in `flp`)::

  f_l      = ReLU(s B_l^T + h_{l+1} H_l^T + c_l)   # H term: hidden_feedback, l below the top
  post_l   = beta_l f_l + (1 - beta_l) h_l         # or the one-hot target (clamped readout)
  W_l'     = rule(W_l, pre_l, post_l, alpha_l)     # exactly as flp
  B_l'     = feedback_rule(B_l, s, post_l, eta_l)  # hebb: B_l + eta_l post_l^T s
                                                   # oja:  B_l + eta_l (post_l^T s
                                                   #         - diag(sum_b post_l^2) B_l)

Both updates use the activities of the same step (the step's ``B_l``). Fixed
feedback is the special case ``init_fb_rate=0`` with the ``'fb_rate'`` group
frozen (meta-learning rate 0).

Stability: the Hebbian feedback loop is self-reinforcing (``B_l`` grows with
``post_l``, which grows with ``B_l``; on active units roughly ``B_l <- B_l (1 +
eta_l s^T s)`` per step, summed over the batch), so a lifetime explodes once
``eta_l`` times the batch's squared signal is of order one. Keep the
``'fb_rate'`` meta-learning rate small (default 1e-4); at 1e-3 an occasional
meta-step overshoots and is skipped by `meta`'s non-finite guard. Oja's rule
bounds the rows of ``B_l`` for ``eta_l > 0`` and makes them grow for ``eta_l < 0``.

Meta-parameter groups (`Learner.groups`): flp's, plus

  'fb'      : {layer: {'B': (out, m), 'c': (out,), 'H': (out, out_{l+1})}}
              ``H`` only with ``hidden_feedback``, for fed layers below the top;
              ``B`` is the feedback at birth
  'fb_rate' : {layer: ()}        the feedback's plasticity ``eta_l`` of every fed
                                 layer (default meta-learning rate 1e-4)

A scalar rate per layer rather than per synapse: the feedback's update is a
``(out, m)`` outer product summed over the batch whose scale is set by the
signal; one rate per layer is enough to turn it on, off or anti-Hebbian
(``eta < 0``) and keeps Adam's step (about the meta-learning rate per
meta-step) meaningful without an ``alpha``-like 1e-8 rate.

Fast state: ``{layer: {'w': (out, in)}, 'fb': {layer: B (out, m)}}`` (the
feedback matrices under their own key, so that every ``fast[layer]`` holds
only ``'w'``, as flp's). `feedback_weights` reads the fast ``B``'s;
`Learner.plastic_weights` gives the ``W``'s, as flp's.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal, Sequence

import jax
import jax.numpy as jnp

from flpjax import feedback as fb_lib
from flpjax import nets
from flpjax import plasticity
from flpjax.learners import base
from flpjax.learners.base import Example, Learner
from flpjax.learners.flp import flp
from flpjax.types import FastState, Group, Params

FB_RATE = Group("fb_rate", 1e-4, "plasticity rate of the feedback weights B of every fed layer")

#: Key of the fast feedback matrices in the fast state.
FAST_FB = "fb"


def feedback_weights(fast: FastState) -> dict:
  """``{layer: B (out, m)}``: the feedback matrices of a fast state (for the analyses)."""
  return dict(fast[FAST_FB])


def plastic_weights(fast: FastState) -> dict:
  """``{layer: W (out, in)}``: the feed-forward plastic weights (`Learner.plastic_weights`)."""
  return {k: v["w"] for k, v in fast.items() if k != FAST_FB}


def plastic_feedback(
    layers: Sequence[nets.Layer],
    input_shape: Sequence[int],
    n_plastic: int,
    *,
    feedback_rule: Literal["hebb", "oja"] = "hebb",
    hidden_feedback: bool = False,
    init_fb_rate: float = 0.0,
    output: fb_lib.Output = "regression",
    rule: str = "oja",
    signal: fb_lib.Signal = "error",
    presynaptic: Literal["pre", "post"] = "pre",
    clip_beta: bool = False,
    clamp_readout: bool = False,
    init_alpha: float = 0.0,
    init_beta: float = 0.5,
) -> Learner:
  """FLP whose feedback is plastic, optionally with feedback from the layer above.

  Args:
    layers: the network (`nets.regression_mlp`, `nets.conv_classifier`).
    input_shape: shape of one input example.
    n_plastic: number of plastic layers, counted from the output.
    feedback_rule: ``'hebb'`` or ``'oja'``: the local rule of the feedback
      matrices, presynaptic ``s (B, m)``, postsynaptic ``post_l (B, out_l)``.
    hidden_feedback: every fed plastic layer below the top plastic layer also
      gets ``h_{l+1} H_l^T`` inside its feedback ReLU (``h_{l+1} (B, out_{l+1})``:
      the pre-feedback activity of the next plastic layer; ``H_l`` meta-learned,
      zero at initialisation).
    init_fb_rate: initial ``eta_l`` of every fed layer (0: fixed feedback at
      the start of meta-training).
    output, rule, signal, presynaptic, clip_beta, clamp_readout, init_alpha,
      init_beta: as `flp`.

  Returns:
    The `Learner`; its ``plastic_weights`` gives the ``W``'s, `feedback_weights`
    the fast ``B``'s.

  Raises:
    ValueError: for a bad argument, naming it.
  """
  if feedback_rule not in plasticity.RULES:
    raise ValueError(f"feedback_rule must be one of {sorted(plasticity.RULES)}, "
                     f"got {feedback_rule!r}")
  if not isinstance(hidden_feedback, bool):
    raise ValueError(f"hidden_feedback must be True or False, got {hidden_feedback!r}")
  if (isinstance(init_fb_rate, bool) or not isinstance(init_fb_rate, numbers.Real)
      or not math.isfinite(init_fb_rate)):
    raise ValueError(f"init_fb_rate must be a finite number, got {init_fb_rate!r}")
  inner = flp(layers, input_shape, n_plastic, output=output, rule=rule, signal=signal,
              presynaptic=presynaptic, clip_beta=clip_beta, clamp_readout=clamp_readout,
              init_alpha=init_alpha, init_beta=init_beta)
  layers = tuple(layers)
  plastic, readout = inner.plastic_layers, inner.readout
  width = layers[readout].features
  update, fb_update = plasticity.get_rule(rule), plasticity.get_rule(feedback_rule)
  fed = tuple(l for l in plastic if not (clamp_readout and l == readout))
  # Fed layers with feedback from the plastic layer above (l + 1 is plastic: l < plastic[-1]).
  hidden = tuple(l for l in fed if l < plastic[-1]) if hidden_feedback else ()

  def init_params(key: jax.Array) -> Params:
    params = inner.init_params(key)  # flp's, from the same key: same ff, B, c, alpha, beta
    for l in hidden:
      params["fb"][str(l)]["H"] = jnp.zeros((layers[l].features, layers[l + 1].features))
    params["fb_rate"] = {str(l): jnp.asarray(init_fb_rate, jnp.float32) for l in fed}
    return params

  def init(params: Params, key: jax.Array | None = None) -> FastState:
    del key
    fast = {str(l): {"w": params["ff"][l]["w"]} for l in plastic}
    fast[FAST_FB] = {str(l): params["fb"][str(l)]["B"] for l in fed}
    return fast

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    h, y = example
    hs = base.plastic_forward(layers, plastic, params, fast, h)
    target = fb_lib.encode_target(y, output, width)
    s = fb_lib.signal(target, hs[-1], signal, output)
    new, posts, new_fb = {}, {}, {}
    for i, l in enumerate(plastic):
      k = str(l)
      if l in fed:
        c = params["fb"][k]["c"]
        if l in hidden:  # c + h_{l+1} H^T: with H = 0, exactly c (adds exact zeros)
          c = c + hs[i + 2] @ params["fb"][k]["H"].T
        f = fb_lib.project({"B": fast[FAST_FB][k], "c": c}, s)
        post = fb_lib.mix(hs[i + 1], f, params["beta"][k], clip_beta)
        # B + eta * dB: with eta = 0, B unchanged bit for bit (dB finite).
        new_fb[k] = fb_update(fast[FAST_FB][k], s, post, params["fb_rate"][k])
      else:
        post = target
      posts[l] = post
      pre = posts[l - 1] if presynaptic == "post" and (l - 1) in posts else hs[i]
      new[k] = {"w": update(fast[k]["w"], pre, post, params["alpha"][k])}
    new[FAST_FB] = new_fb
    return new

  groups = inner.groups + ((FB_RATE,) if fed else ())
  return Learner(init_params, init, inner.encode, step, inner.predict, plastic, readout, groups,
                 inner.labels, plastic_weights)
