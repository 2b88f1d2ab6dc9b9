"""FLP with plastic feedback and feedback from hidden layers (paper, section 8.1).

Two extensions of `flp` that the paper names and does not try ("feedback
weights themselves being subject to plasticity"; "feedback from higher
intermediate layers (with no target information) to lower layers"):

* **Plastic feedback.** The feedback matrices ``B_l`` change within a
  lifetime: they start it at their meta-learned values and, after every
  step, change by a local rule of their own (``feedback_rule``) between the
  signal ``s`` (their presynaptic activity) and the layer's post-feedback
  activity ``post_l`` (their postsynaptic activity), at a meta-learned rate
  ``eta_l`` (one scalar per fed layer). ``eta = 0`` is fixed feedback: the
  learner's lifetimes are then `flp`'s bit for bit, and its meta-gradients
  equal flp's to rounding under every estimator (tests/test_reductions.py).
* **Hidden feedback** (``hidden_feedback=True``). Every fed plastic layer
  below the top plastic layer also receives the *pre-feedback* (feed-forward)
  activity of the plastic layer above it, through a meta-learned matrix
  ``H_l``, inside the feedback's ReLU. Pre-feedback activity carries no target
  information, as in the paper's suggestion. ``H_l`` starts at zero (the
  learner starts as `flp`, and its lifetimes equal flp's bit for bit while
  ``H = 0``); it is
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

Fast state: ``{layer: {'w': (out, in)}, 'fb': {layer: dB (out, m)}}``: the
feedback's *change since birth* ``dB_l`` (zero at birth), under its own key so
that every ``fast[layer]`` holds only ``'w'``, as flp's. The feedback in use is
``B_l + dB_l``, with ``B_l`` the meta-parameter: so ``B_l`` enters every step
of the lifetime, and every window of truncated backprop (or ES/PES) gives it a
meta-gradient. (Holding ``B_l`` itself in the fast state made it a constant
after the first window.) `feedback_weights(params, fast)` gives ``B_l + dB_l``;
`Learner.plastic_weights` gives the ``W``'s, as flp's.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal, Sequence

import jax
import jax.numpy as jnp

from flpjax import feedback as fb_lib
from flpjax import nets, plasticity
from flpjax.learners import base
from flpjax.learners import flp as flp_lib
from flpjax.learners.base import Example, Learner
from flpjax.learners.flp import flp, make_activities
from flpjax.types import FastState, Group, Params

FB_RATE = Group("fb_rate", 1e-4, "plasticity rate of the feedback weights B of every fed layer")

#: Key of the fast feedback matrices in the fast state.
FAST_FB = "fb"


def feedback_weights(params: Params, fast: FastState) -> dict:
  """``{layer: B (out, m)}``: the feedback matrices of a fast state (for the analyses).

  The fast state holds each matrix's change since birth; this adds it to the
  meta-learned ``params['fb'][layer]['B']``.
  """
  return {k: params["fb"][k]["B"] + d for k, d in fast[FAST_FB].items()}


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
    positive_readout_feedback: bool = False,
    init_alpha_readout: float | None = None,
    readout_feedback_floor: float = 0.0,
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
      init_beta, positive_readout_feedback, init_alpha_readout,
      readout_feedback_floor: as `flp`.

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
              init_alpha=init_alpha, init_beta=init_beta,
              positive_readout_feedback=positive_readout_feedback,
              init_alpha_readout=init_alpha_readout,
              readout_feedback_floor=readout_feedback_floor)
  layers = tuple(layers)
  plastic, readout = inner.plastic_layers, inner.readout
  update = plasticity.get_rule(rule)
  fb_increment = plasticity.get_rule(feedback_rule, increment=True)
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
    # The change of every B since birth, not B itself: B stays a meta-parameter of
    # every step (a copy of it in the fast state would be a constant to truncated
    # backprop's later windows, which would then give B no meta-gradient).
    fast[FAST_FB] = {str(l): jnp.zeros_like(params["fb"][str(l)]["B"]) for l in fed}
    return fast

  activities = make_activities(layers, plastic, fed, output=output, signal=signal,
                                       presynaptic=presynaptic, clip_beta=clip_beta)

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    now = {}  # the feedback of this step, per fed layer

    def feedback(k, i, hs):
      c = params["fb"][k]["c"]
      if int(k) in hidden:  # c + h_{l+1} H^T: with H = 0, exactly c (adds exact zeros)
        c = c + hs[i + 2] @ params["fb"][k]["H"].T
      now[k] = params["fb"][k]["B"] + fast[FAST_FB][k]  # B + 0: B bit for bit
      return {"B": now[k], "c": c}

    s, acts = activities(params, fast, example, feedback)
    new = {str(l): {"w": update(fast[str(l)]["w"], pre, post, params["alpha"][str(l)])}
           for l, pre, post in acts}
    # dB + eta * (rule's change): with eta = 0, dB stays exactly 0 (the change is finite).
    new[FAST_FB] = {str(l): fast[FAST_FB][str(l)]
                            + fb_increment(now[str(l)], s, post, params["fb_rate"][str(l)])
                    for l, _, post in acts if l in fed}
    return new

  groups = inner.groups + ((FB_RATE,) if fed else ())
  return Learner(init_params, init, inner.encode, step, inner.predict, plastic, readout, groups,
                 inner.labels, plastic_weights)


# ----------------------------------------------------------------------------- config plug-in
# config.learner = 'plastic_feedback' (flpjax.config.registry); the flp options are read
# from config.flp.

#: ``feedback_rule``: B's local rule; ``init_fb_rate``: B's plasticity rate at the birth of
#: meta-training (0 = fixed feedback); ``hidden_feedback``: feedback from the next plastic
#: layer's activity too.
CONFIG = {"plastic_feedback": dict(feedback_rule="hebb", hidden_feedback=False,
                                   init_fb_rate=0.0)}
READS = ("flp",)
GROUPS = flp_lib.GROUPS + (FB_RATE,)
plasticity_group = flp_lib.plasticity_group


def validate_config(config) -> None:
  """Checks ``config.flp`` and ``config.plastic_feedback``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  flp_lib.validate_config(config)
  checks.check_choice(config, "plastic_feedback.feedback_rule", plasticity.RULES)
  checks.check_bool(config, "plastic_feedback.hidden_feedback")
  checks.check_float(config, "plastic_feedback.init_fb_rate")


def from_config(config, layers, input_shape, output) -> Learner:
  """`plastic_feedback` from ``config.plastic_feedback`` and ``config.flp``."""
  p = config.plastic_feedback
  return base.records_input_shape(plastic_feedback)(
      layers, input_shape, config.plastic_layers, output=output,
      feedback_rule=p.feedback_rule, hidden_feedback=p.hidden_feedback,
      init_fb_rate=p.init_fb_rate, rule=config.flp.rule, **flp_lib.options(config))
