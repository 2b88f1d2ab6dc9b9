"""FLP: feedback and local plasticity (the paper's learner; docs/fidelity.md 2 and 3).

Meta-parameter groups (`Learner.groups`):

  'ff'    : [{'w', 'b'}] * n_layers     initial feed-forward weights, frozen layers too
  'fb'    : {layer: {'B': (out, m), 'c': (out,)}}    feedback weights
  'alpha' : {layer: (out, in)}          per-synapse plasticity; the readout's entry is
                                        labelled 'alpha_readout' (its own rate, Table 4)
  'beta'  : {layer: ()}                 feedback strength

Fast state: ``{layer: {'w': (out, in)}}`` (biases are not plastic); with
``readout_rows=r`` the readout's entry is its first ``r`` rows, ``(r, in)``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp

from flpjax import feedback as fb_lib
from flpjax import nets, plasticity
from flpjax.learners import base
from flpjax.learners.base import Example, Learner
from flpjax.types import FastState, Group, Params

FB = Group("fb", 1e-4, "feedback weights B and biases c of every fed plastic layer")
ALPHA = Group("alpha", 1e-8, "per-synapse plasticity of the non-readout plastic layers")
ALPHA_READOUT = Group("alpha_readout", 1e-8, "per-synapse plasticity of the readout",
                      fallback="alpha")
BETA = Group("beta", 1e-4, "feedback strength of every fed plastic layer")


#: ``feedback(k, i, hs) -> {'B': (out, m), 'c': (out,)}``: the feedback of fed layer ``k``
#: (``i``: its index among the plastic layers; ``hs``: `base.plastic_forward`'s activities).
FeedbackFn = Callable[[str, int, list], dict]


def make_activities(
    layers: Sequence[nets.Layer],
    plastic: Sequence[int],
    fed: Sequence[int],
    *,
    output: fb_lib.Output,
    signal: fb_lib.Signal,
    presynaptic: Literal["pre", "post"],
    clip_beta: bool,
) -> Callable[..., tuple[jax.Array, list]]:
  """FLP's pre- and post-synaptic activities of one step: the part every FLP variant shares.

  Returns ``activities(params, fast, example, feedback=None) -> (s, acts)``:
  ``s (B, m)`` is the feedback signal and ``acts`` a list of ``(layer, pre (B, in),
  post (B, out))`` over the plastic layers, bottom up. ``post`` is
  ``beta f + (1 - beta) h`` with ``f = ReLU(s B^T + c)`` for a fed layer, the
  (one-hot) target for a clamped readout. ``feedback`` (a `FeedbackFn`) supplies
  each fed layer's ``B`` and ``c``; by default ``params['fb'][layer]``. `flp`,
  `rules.learned_rule` and `plastic_feedback` differ only in what they do with
  these activities (and, for the last, in ``feedback``).
  """
  layers, plastic = tuple(layers), tuple(plastic)
  width = layers[-1].features

  def activities(params: Params, fast: FastState, example: Example,
                 feedback: FeedbackFn | None = None) -> tuple[jax.Array, list]:
    h, y = example
    hs = base.plastic_forward(layers, plastic, params, fast, h)
    target = fb_lib.encode_target(y, output, width)
    s = fb_lib.signal(target, hs[-1], signal, output)
    acts, posts = [], {}
    for i, l in enumerate(plastic):
      k = str(l)
      if l in fed:
        fb = params["fb"][k] if feedback is None else feedback(k, i, hs)
        post = fb_lib.mix(hs[i + 1], fb_lib.project(fb, s), params["beta"][k], clip_beta)
      else:
        post = target
      posts[l] = post
      pre = posts[l - 1] if presynaptic == "post" and (l - 1) in posts else hs[i]
      acts.append((l, pre, post))
    return s, acts

  return activities


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
    positive_readout_feedback: bool = False,
    init_alpha_readout: float | None = None,
    readout_feedback_floor: float = 0.0,
    readout_rows: int | None = None,
) -> Learner:
  """Feedback and local plasticity (docs/fidelity.md 2 and 3).

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
    init_alpha_readout: initial plasticity of the readout's synapses (None:
      ``init_alpha``), e.g. a readout that can learn from the first meta-step
      while the other layers start at the paper's 0.
    positive_readout_feedback: initialise a fed (unclamped) readout's feedback
      weights at ``|B|``. With error feedback, ``ReLU(B e + c)`` then rises
      where the target is above the output, so Oja's rule moves the readout
      towards the target; a negative initial ``B`` moves it away, and
      meta-training must first carry ``B`` through 0 (a seed-dependent trap
      measured in BUILD_NOTES "The CPU miniature in the paper's regime"). Off:
      the reference's kaiming-normal ``B`` of either sign.
    readout_feedback_floor: a fed readout's initial feedback weights smaller in
      magnitude than this start at it, with their sign (0: none, the
      reference's draw). A readout-only learner whose ``|B|`` is drawn near 0
      gets almost no feedback and stays where its initial readout is (measured
      in BUILD_NOTES: the feature-reuse networks that stayed at the
      family-mean level had drawn ``|B|`` 0.016 and 0.12).
    readout_rows: with a clamped readout, the fast state holds only the readout's
      first ``readout_rows`` rows ``(readout_rows, in)``; the others stay at their
      initial weights (still in every prediction's logits). The same learner as
      None (the whole readout) whenever every label is below ``readout_rows``: a
      clamped readout's other rows get post-synaptic activity 0, and Oja's, Hebb's
      and the bounded Oja change are proportional to it. Few-shot episodes label
      their ``ways`` classes ``0..ways-1``, so ``readout_rows=ways`` stores and
      updates 5 rows of the paper's 1000 (the lifetime's cost, not the model,
      changes). A label at or above it would be learned wrongly, silently: use it
      only with such tasks (`validate_config` checks ``fewshot.ways``).

  Returns:
    The `Learner`.
  """
  layers = tuple(layers)
  if not (isinstance(readout_feedback_floor, (int, float)) and readout_feedback_floor >= 0):
    raise ValueError(f"readout_feedback_floor: expected a number >= 0, got "
                     f"{readout_feedback_floor!r}")
  plastic = base.check_structure(layers, n_plastic)
  readout = len(layers) - 1
  in_dims = nets.input_dims(layers, input_shape)
  width = layers[readout].features
  update = plasticity.get_rule(rule)
  if signal not in fb_lib.SIGNALS:
    raise ValueError(f"unknown feedback signal {signal!r}; expected one of {fb_lib.SIGNALS}")
  if presynaptic not in ("pre", "post"):
    raise ValueError(f"presynaptic must be 'pre' or 'post', got {presynaptic!r}")
  fed = tuple(l for l in plastic if not (clamp_readout and l == readout))
  if readout_rows is not None and not (
      clamp_readout and isinstance(readout_rows, int) and 1 <= readout_rows <= width):
    raise ValueError(f"readout_rows={readout_rows!r}: expected None, or an int in [1, {width}] "
                     "with clamp_readout=True")
  rows = {str(readout): readout_rows} if readout_rows is not None else {}

  def init_params(key: jax.Array) -> Params:
    k_ff, k_fb = jax.random.split(key)
    fb = {}
    for l, k in zip(fed, jax.random.split(k_fb, max(len(fed), 1))):
      # kaiming normal with fan_in = m (the signal's width), as the reference.
      std = math.sqrt(2.0 / width)
      b = std * jax.random.normal(k, (layers[l].features, width))
      if positive_readout_feedback and l == readout:
        b = jnp.abs(b)
      if readout_feedback_floor and l == readout:
        b = jnp.where(b < 0, -1.0, 1.0) * jnp.maximum(jnp.abs(b), readout_feedback_floor)
      fb[str(l)] = {"B": b, "c": jnp.zeros((layers[l].features,))}
    return {
        "ff": nets.init(k_ff, layers, input_shape),
        "fb": fb,
        "alpha": {str(l): jnp.full(
            (layers[l].features, in_dims[l]),
            init_alpha if l != readout or init_alpha_readout is None else init_alpha_readout,
            jnp.float32) for l in plastic},
        "beta": {str(l): jnp.asarray(init_beta, jnp.float32) for l in fed},
    }

  def init(params: Params, key: jax.Array | None = None) -> FastState:
    del key
    return {str(l): {"w": params["ff"][l]["w"][:rows.get(str(l))]} for l in plastic}

  def predict(params: Params, fast: FastState, h: jax.Array) -> jax.Array:
    return base.plastic_forward(layers, plastic, params, fast, h)[-1]

  activities = make_activities(layers, plastic, fed, output=output, signal=signal,
                                presynaptic=presynaptic, clip_beta=clip_beta)

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    _, acts = activities(params, fast, example)
    return {str(l): {"w": update(fast[str(l)]["w"], pre, post[:, :rows.get(str(l))],
                                 params["alpha"][str(l)][:rows.get(str(l))])}
            for l, pre, post in acts}

  groups = (base.FF, FB, ALPHA, ALPHA_READOUT, BETA) if fed else (base.FF, ALPHA, ALPHA_READOUT)
  return Learner(init_params, init, base.encoder(layers, plastic), step, predict, plastic,
                 readout, groups, base.labels_with_readout("alpha", readout), base.weights_of)


# ----------------------------------------------------------------------------- config plug-in
# config.learner = 'flp' (flpjax.config.registry): its section, groups, checks and builder.

#: The ``flp`` section: the options of `flp` (also read by plastic_feedback and learned_rule).
#: ``positive_readout_feedback``: a fed readout's feedback weights start at |B| (a
#: divergence/trap remedy; off = the reference's kaiming-normal B of either sign).
#: ``init_alpha_readout``: initial plasticity of the readout (None: ``init_alpha``).
#: ``readout_feedback_floor``: a fed readout's initial |B| is at least this (0: none).
#: ``readout_rows``: a clamped readout's fast state holds only its first rows (None: all);
#: the same learner at a lower cost when every label is below it (`flp`).
CONFIG = {"flp": dict(rule="oja", signal="error", presynaptic="pre", clip_beta=False,
                      clamp_readout=False, init_alpha=0.0, init_beta=0.5,
                      positive_readout_feedback=False, init_alpha_readout=float,
                      readout_feedback_floor=0.0, readout_rows=int)}
GROUPS = (base.FF, FB, ALPHA, ALPHA_READOUT, BETA)
#: ``config.extend_from`` (section 7.1) can start an FLP run from a feature-reuse run.
EXTENDS = True


def validate_config(config) -> None:
  """Checks ``config.flp``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  checks.check_choice(config, "flp.rule", plasticity.RULES)
  checks.check_choice(config, "flp.signal", fb_lib.SIGNALS)
  checks.check_choice(config, "flp.presynaptic", ("pre", "post"))
  checks.check_bool(config, "flp.clip_beta")
  checks.check_bool(config, "flp.clamp_readout")
  checks.check_float(config, "flp.init_alpha", 0.0)
  checks.check_float(config, "flp.init_beta", 0.0, 1.0)
  checks.check_bool(config, "flp.positive_readout_feedback")
  if config.flp.init_alpha_readout is not None:
    checks.check_float(config, "flp.init_alpha_readout", 0.0)
  checks.check_float(config, "flp.readout_feedback_floor", 0.0)
  check_readout_rows(config)


def check_readout_rows(config) -> None:
  """``flp.readout_rows``: None, or (learner ``'flp'`` only: the variants that read
  ``config.flp`` have rules that may move untargeted rows) an int from ``fewshot.ways``
  to ``net.readout`` with ``flp.clamp_readout`` and the few-shot task, whose labels are
  below ``fewshot.ways``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  r = config.flp.readout_rows
  if r is None:
    return
  if config.learner != "flp":
    checks.fail("flp.readout_rows", r, f"None with learner={config.learner!r} (its rule may "
                "change the rows a clamped readout does not target; learner='flp' only)")
  from flpjax.config import build  # pylint: disable=g-import-not-at-top
  if build.task_plugin(config).__name__ != "flpjax.tasks.fewshot" or not config.flp.clamp_readout:
    checks.fail("flp.readout_rows", r, "None unless a few-shot task (labels 0..fewshot.ways-1) "
                "with flp.clamp_readout=True (only a clamped readout leaves the rows no label "
                "reaches unchanged)")
  checks.check_int(config, "flp.readout_rows", config.fewshot.ways, config.net.readout)


def options(config) -> dict:
  """`flp`'s keyword arguments from ``config.flp`` (without ``rule``)."""
  f = config.flp
  return dict(signal=f.signal, presynaptic=f.presynaptic, clip_beta=f.clip_beta,
              clamp_readout=f.clamp_readout, init_alpha=f.init_alpha, init_beta=f.init_beta,
              positive_readout_feedback=f.positive_readout_feedback,
              init_alpha_readout=f.init_alpha_readout,
              readout_feedback_floor=f.readout_feedback_floor)


def from_config(config, layers, input_shape, output) -> Learner:
  """`flp` with ``config.plastic_layers`` plastic layers and the ``config.flp`` options."""
  return base.records_input_shape(flp)(layers, input_shape, config.plastic_layers,
                                       output=output, rule=config.flp.rule,
                                       readout_rows=config.flp.readout_rows, **options(config))


def plasticity_group(config) -> str:
  """The group a plasticity sweep varies (B.1): the readout's alone when only the readout
  is plastic and has its own rate, else ``'alpha'``."""
  if config.plastic_layers == 1 and config.meta.lr.alpha_readout is not None:
    return ALPHA_READOUT.name
  return ALPHA.name
