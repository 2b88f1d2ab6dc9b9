"""Learned plasticity rules: FLP whose local rule is itself meta-learned.

`flp` applies a fixed local rule (Oja's or Hebb's, `flpjax.plasticity`). Here
the rule of every plastic layer is a member of a parameterised family whose
parameters are meta-parameters (group ``'rule'``), learned with the rest:

* ``'hebbian'``: a generalised Hebbian rule, linear in six local terms
  (`hebbian`); Oja's and Hebb's rules are exact special cases: the lifetime
  (fast weights, predictions, losses) bit for bit, the meta-gradients to
  rounding (at most 64 float64 ulp of a group's largest entry, the bound
  tests/test_reductions.py asserts; reverse mode sums the rule's extra zero
  terms' cotangents in another order).
* ``'mlp'``: a small MLP of ``(pre, post, w)`` applied to every synapse
  (`mlp`).
* any `LearnedRule` of your own.

Every rule is batch-summed, as `flpjax.plasticity`: with ``pre`` ``(B, in)``,
``post`` ``(B, out)``, ``w`` and ``alpha`` ``(out, in)``,
``w' = w + alpha * sum_b g(pre_b, post_b, w)``.

Meta-parameter groups (`Learner.groups`): flp's (``'ff'``, ``'fb'``,
``'alpha'``, ``'alpha_readout'``, ``'beta'``) and

  'rule' : {layer: rule parameters}     hebbian: (K,) coefficients, or (K, out, in)
                                        with ``per_synapse``; mlp: {'w1': (3, H),
                                        'b1': (H,), 'w2': (H,), 'b2': ()}

Fast state: flp's, ``{layer: {'w': (out, in)}}``.

Example:
  >>> learner = learned_rule(nets.regression_mlp((16, 16)), (3,), 2, init='oja')
  >>> params = learner.init_params(jax.random.key(0))
  >>> params['rule']['2']            # c_hebb, c_pre, c_post, c_decay, c_w, c_const
  Array([ 1.,  0.,  0., -1.,  0.,  0.], dtype=float32)
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flpjax import feedback as fb_lib
from flpjax import nets
from flpjax.learners import base
from flpjax.learners import flp as flp_lib
from flpjax.learners.base import Example, Learner
from flpjax.learners.flp import flp, make_activities
from flpjax.types import FastState, Group, Params

RULE = Group("rule", 1e-3, "parameters of every plastic layer's learned plasticity rule")

#: The terms of the generalised Hebbian rule, in the order of its coefficient vector.
TERMS = ("hebb", "pre", "post", "decay", "weight", "const")
K = len(TERMS)
#: Coefficients of the named rules of `flpjax.plasticity` in the `hebbian` family.
PRESETS = {"oja": (1.0, 0.0, 0.0, -1.0, 0.0, 0.0), "hebb": (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)}
#: Rule families `learned_rule` knows by name.
RULE_NAMES = ("hebbian", "mlp")
#: Named initialisations of the hebbian rule (the MLP rule: ``'random'`` only).
INITS = (*PRESETS, "random")

# The rule's parameters are drawn from fold_in(key, _RULE_SALT), so that the
# groups shared with flp are flp's own init_params(key).
_RULE_SALT = 0x7275


class LearnedRule(NamedTuple):
  """A family of local rules with meta-learned parameters, one member per plastic layer.

  Attributes:
    init: ``init(key, layer, (out, in)) -> rule parameters`` of one plastic
      layer (any pytree of arrays). Raise ValueError for an init that does not
      fit the layer: `learned_rule` calls it (abstractly) at construction.
    update: ``update(rule_params, w, pre, post, alpha) -> w'`` with ``w,
      alpha`` ``(out, in)``, ``pre`` ``(B, in)``, ``post`` ``(B, out)``:
      the local rule, batch-summed.
    name: for messages.
  """

  init: Callable[[jax.Array, int, tuple[int, int]], Any]
  update: Callable[[Any, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
  name: str = "custom"


# ----------------------------------------------------------------------------- hebbian


def hebbian_update(c: jax.Array, w: jax.Array, pre: jax.Array, post: jax.Array,
                   alpha: jax.Array) -> jax.Array:
  """The generalised Hebbian rule, batch-summed.

  ``w'_ij = w_ij + alpha_ij * sum_b [c_hebb post_bi pre_bj + c_pre pre_bj
  + c_post post_bi + c_decay post_bi^2 w_ij + c_w w_ij + c_const]``, computed as

    H = post.T @ pre;  D = sum_b post**2  (out, 1)
    w' = w + alpha * ((H + (c_hebb - 1) * H - (-c_decay * D) * w)
                      + (c_pre * sum_b pre + c_post * sum_b post + c_w * w + c_const * B))

  Exactness: with the coefficients of `PRESETS` this is
  `flpjax.plasticity.oja` / ``hebb`` bit for bit (for finite activities), also
  under jit, where XLA fuses ``a + b * c`` into one fused multiply-add: in the
  sums that make the first line at most one operand is a product, so the
  fused operations are oja's (``H - D * w``, then ``w + alpha * (...)``), and
  the extra ones are exact (``H + 0 * H = H``, ``-(-1) * D = D``); the second
  line is exactly 0 whichever way it is fused, and adding 0 leaves a number as
  it is. ``c_hebb * H`` instead of ``H + (c_hebb - 1) * H`` would give XLA a
  sum of two products, which it may fuse the other way round (it does on CPU:
  1-ulp differences). Verified on CPU (tests/test_rules.py); not on GPU.

  Args:
    c: coefficients ``(K,)`` (one rule for the layer) or ``(K, out, in)``
      (one per synapse), in the order of `TERMS`.
    w: weights ``(out, in)``.
    pre: pre-synaptic activity ``(B, in)``.
    post: post-synaptic activity ``(B, out)``.
    alpha: plasticity ``(out, in)`` (or anything that broadcasts).

  Returns:
    The new weights ``(out, in)``.
  """
  if c.shape not in ((K,), (K,) + w.shape):
    raise ValueError(f"hebbian rule coefficients of shape {c.shape} do not fit a layer of "
                     f"weights {w.shape}; expected ({K},) or {(K,) + w.shape} (per synapse)")
  hebb = post.T @ pre
  decay = jnp.sum(post * post, axis=0)[:, None]
  local = (hebb + (c[0] - 1.0) * hebb) - ((-c[3]) * decay) * w
  rest = (c[1] * jnp.sum(pre, axis=0)[None, :] + c[2] * jnp.sum(post, axis=0)[:, None]
          + c[4] * w + c[5] * pre.shape[0])
  return w + alpha * (local + rest)


def hebbian(init: str | Any = "oja", per_synapse: bool = False) -> LearnedRule:
  """The generalised Hebbian family (`hebbian_update`).

  Args:
    init: initial coefficients of every plastic layer: ``'oja'`` or ``'hebb'``
      (`PRESETS`), ``'random'`` (every coefficient drawn from N(0, 1)), a
      sequence of ``K`` numbers (every layer; every synapse with
      ``per_synapse``), or a mapping ``{layer index: array}`` with an entry
      ``(K,)`` (or, with ``per_synapse``, ``(K, out, in)``) for every plastic layer.
    per_synapse: one coefficient vector per synapse, ``(K, out, in)``, instead
      of one per layer ``(K,)``.

  Returns:
    The `LearnedRule`.

  Raises:
    ValueError: for an unknown init name or coefficients of the wrong shape
      (when the rule is built, or by `learned_rule` for the per-layer shapes).
  """
  named = isinstance(init, str)
  if named and init not in INITS:
    raise ValueError(f"unknown init {init!r} for the hebbian rule; expected 'oja', 'hebb', "
                     f"'random', {K} coefficients (in the order {TERMS}), or a mapping "
                     "{layer: coefficients}")
  table = None
  if not named and isinstance(init, Mapping):
    table = {str(k): np.asarray(v) for k, v in init.items()}
  elif not named:
    init = np.asarray(init)
    if init.shape != (K,):
      raise ValueError(f"init of shape {init.shape} for the hebbian rule: expected {K} "
                       f"coefficients (in the order {TERMS}), or a mapping {{layer: array}} "
                       "for other shapes")

  def init_fn(key: jax.Array, layer: int, shape: tuple[int, int]) -> jax.Array:
    full = (K,) + tuple(shape)
    want = full if per_synapse else (K,)
    if named and init == "random":
      return jax.random.normal(key, want, jnp.float32)
    if named:
      c = np.asarray(PRESETS[init])
    elif table is None:
      c = init
    else:
      if str(layer) not in table:
        raise ValueError(f"init has no coefficients for plastic layer {layer} (keys "
                         f"{sorted(table)}); expected an entry of shape {want} for every "
                         "plastic layer")
      c = table[str(layer)]
      if c.shape not in ((K,), want):
        raise ValueError(
            f"init[{layer}] has shape {c.shape}, which does not fit layer {layer}'s weights "
            f"{tuple(shape)}; expected ({K},)" + (f" or {full} (per synapse)" if per_synapse
                                                  else f" ({full} needs per_synapse=True)"))
    c = jnp.asarray(c, jnp.float32)
    if per_synapse and c.shape == (K,):
      c = jnp.broadcast_to(c[:, None, None], full)
    return c

  def update(c, w, pre, post, alpha):
    if c.shape != ((K,) + w.shape if per_synapse else (K,)):
      raise ValueError(f"hebbian rule coefficients of shape {c.shape} for weights {w.shape}; "
                       f"expected {(K,) + w.shape if per_synapse else (K,)} "
                       f"(per_synapse={per_synapse})")
    return hebbian_update(c, w, pre, post, alpha)

  return LearnedRule(init_fn, update, "hebbian")


# ----------------------------------------------------------------------------- mlp


def mlp_update(p: Params, w: jax.Array, pre: jax.Array, post: jax.Array,
               alpha: jax.Array) -> jax.Array:
  """A small MLP applied to every synapse and summed over the batch.

  ``w'_ij = w_ij + alpha_ij * sum_b m(pre_bj, post_bi, w_ij)`` with
  ``m(x) = w2 . tanh(x @ w1 + b1) + b2``, ``x = (pre, post, w)``.

  Cost: the hidden layer is a ``(B, out, in, H)`` tensor (every example,
  synapse and hidden unit), ``H`` times the memory and time of the Hebbian
  rule's ``(out, in)`` update, and reverse-mode differentiation stores it
  (or recomputes it with ``remat``). For the paper's 300-wide layers with
  ``B = 32`` and ``H = 8`` that is about 92 MB per layer and step in float32.

  Args:
    p: ``{'w1': (3, H), 'b1': (H,), 'w2': (H,), 'b2': ()}``.
    w: weights ``(out, in)``.
    pre: pre-synaptic activity ``(B, in)``.
    post: post-synaptic activity ``(B, out)``.
    alpha: plasticity ``(out, in)``.

  Returns:
    The new weights ``(out, in)``.
  """
  w1 = p["w1"]
  z = (pre[:, None, :, None] * w1[0] + post[:, :, None, None] * w1[1]
       + (w[..., None] * w1[2] + p["b1"]))  # (B, out, in, H)
  dw = jnp.sum(jnp.tanh(z), axis=0) @ p["w2"] + pre.shape[0] * p["b2"]
  return w + alpha * dw


def mlp(hidden: int = 8) -> LearnedRule:
  """The MLP family (`mlp_update`): one MLP per plastic layer, shared by its synapses.

  Initialisation: ``w1 ~ N(0, 1)``, ``w2 ~ N(0, 1/H)``, biases 0.

  Args:
    hidden: width ``H`` of the hidden layer.

  Returns:
    The `LearnedRule`.
  """
  if isinstance(hidden, bool) or not isinstance(hidden, numbers.Integral) or hidden < 1:
    raise ValueError(f"hidden={hidden!r}: expected a positive integer (the MLP rule's width)")

  def init_fn(key, layer, shape):
    del layer, shape
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (3, hidden), jnp.float32),
            "b1": jnp.zeros((hidden,), jnp.float32),
            "w2": jax.random.normal(k2, (hidden,), jnp.float32) / np.sqrt(hidden),
            "b2": jnp.zeros((), jnp.float32)}

  return LearnedRule(init_fn, mlp_update, "mlp")


# ----------------------------------------------------------------------------- learner


def make_rule(rule: str | LearnedRule = "hebbian", init: Any = None, per_synapse: bool = False,
              hidden: int = 8) -> LearnedRule:
  """The `LearnedRule` that `learned_rule`'s arguments name (see there)."""
  if isinstance(rule, LearnedRule):
    if init is not None or per_synapse:
      raise ValueError(f"init={init!r}, per_synapse={per_synapse!r} with a LearnedRule: "
                       "expected init=None and per_synapse=False (the rule's own init "
                       "function decides its parameters)")
    return rule
  if rule == "hebbian":
    return hebbian("oja" if init is None else init, per_synapse)
  if rule == "mlp":
    if init not in (None, "random"):
      raise ValueError(f"init={init!r} for rule='mlp': expected None or 'random' (an MLP "
                       "cannot be Oja's or Hebb's rule exactly; use rule='hebbian')")
    if per_synapse:
      raise ValueError("per_synapse=True for rule='mlp': expected False (one MLP per layer; "
                       "per-synapse coefficients are rule='hebbian')")
    return mlp(hidden)
  raise ValueError(f"unknown rule {rule!r}; expected one of {RULE_NAMES} or a "
                   "rules.LearnedRule")


def learned_rule(
    layers: Sequence[nets.Layer],
    input_shape: Sequence[int],
    n_plastic: int,
    *,
    rule: str | LearnedRule = "hebbian",
    init: Any = None,
    per_synapse: bool = False,
    hidden: int = 8,
    output: fb_lib.Output = "regression",
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
  """FLP with a meta-learned local rule in every plastic layer.

  Everything but the rule is `flp`'s: feedback, post-synaptic mixing,
  clamped readout, per-synapse ``alpha``. ``init_params(key)`` is flp's
  ``init_params(key)`` plus ``'rule'``, so that with ``init='oja'`` (or
  ``'hebb'``) the learner's lifetimes are ``flp(rule='oja')``'s (``'hebb'``) bit for bit and
  its meta-gradients are equal to rounding (tests/test_reductions.py).

  Args:
    layers: the network.
    input_shape: shape of one input example.
    n_plastic: number of plastic layers, counted from the output.
    rule: ``'hebbian'`` (`hebbian`), ``'mlp'`` (`mlp`) or a `LearnedRule`.
    init: the rule's initial parameters. Hebbian: ``'oja'`` (default),
      ``'hebb'``, ``'random'``, ``K`` coefficients or ``{layer: array}``
      (`hebbian`). MLP: None or ``'random'``. A `LearnedRule`: None.
    per_synapse: hebbian only: coefficients ``(K, out, in)`` per synapse.
    hidden: MLP only: hidden width.
    output, signal, presynaptic, clip_beta, clamp_readout, init_alpha,
      init_beta, positive_readout_feedback, init_alpha_readout,
      readout_feedback_floor: as `flp`.

  Returns:
    The `Learner`; its groups are flp's and `RULE`.

  Raises:
    ValueError: naming the argument, for an unknown rule or init, or initial
      parameters that do not fit a plastic layer; and flp's errors.
  """
  learned = make_rule(rule, init, per_synapse, hidden)
  # flp checks the options and provides everything but the step.
  inner = flp(layers, input_shape, n_plastic, output=output, rule="oja", signal=signal,
              presynaptic=presynaptic, clip_beta=clip_beta, clamp_readout=clamp_readout,
              init_alpha=init_alpha, init_beta=init_beta,
              positive_readout_feedback=positive_readout_feedback,
              init_alpha_readout=init_alpha_readout,
              readout_feedback_floor=readout_feedback_floor)
  layers = tuple(layers)
  plastic, readout = inner.plastic_layers, inner.readout
  in_dims = nets.input_dims(layers, input_shape)
  shapes = {l: (layers[l].features, in_dims[l]) for l in plastic}
  fed = tuple(l for l in plastic if not (clamp_readout and l == readout))
  if isinstance(init, Mapping) and not {str(k) for k in init} <= {str(l) for l in plastic}:
    raise ValueError(f"init has entries for layers {sorted(str(k) for k in init)}; expected "
                     f"only the plastic layers {[str(l) for l in plastic]}")
  for l in plastic:  # initial parameters that do not fit fail here, not at the first step
    jax.eval_shape(lambda k, l=l: learned.init(k, l, shapes[l]), jax.random.key(0))

  def init_params(key: jax.Array) -> Params:
    params = inner.init_params(key)
    keys = jax.random.split(jax.random.fold_in(key, _RULE_SALT), len(plastic))
    params["rule"] = {str(l): learned.init(k, l, shapes[l]) for l, k in zip(plastic, keys)}
    return params

  activities = make_activities(layers, plastic, fed, output=output, signal=signal,
                                       presynaptic=presynaptic, clip_beta=clip_beta)

  def step(params: Params, fast: FastState, example: Example) -> FastState:
    """flp's step with the learned rule in place of flp's fixed one."""
    _, acts = activities(params, fast, example)
    return {str(l): {"w": learned.update(params["rule"][str(l)], fast[str(l)]["w"], pre, post,
                                         params["alpha"][str(l)])}
            for l, pre, post in acts}

  return inner._replace(init_params=init_params, step=step, groups=inner.groups + (RULE,))


# ----------------------------------------------------------------------------- config plug-in
# config.learner = 'learned_rule' (flpjax.config.registry); the flp options are read from
# config.flp (flp.rule is not used).

#: ``rule``: the family (`RULE_NAMES`); ``init``: its start ('' = the family's default);
#: ``per_synapse``: coefficients per synapse; ``hidden``: the MLP rule's width.
CONFIG = {"learned_rule": dict(rule="hebbian", init="", per_synapse=False, hidden=8)}
READS = ("flp",)
GROUPS = flp_lib.GROUPS + (RULE,)
plasticity_group = flp_lib.plasticity_group


def validate_config(config) -> None:
  """Checks ``config.flp`` and ``config.learned_rule``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  flp_lib.validate_config(config)
  r = config.learned_rule
  checks.check_choice(config, "learned_rule.rule", RULE_NAMES)
  checks.check_choice(config, "learned_rule.init", ("",) + INITS)
  checks.check_bool(config, "learned_rule.per_synapse")
  checks.check_int(config, "learned_rule.hidden", 1)
  if r.rule == "mlp" and r.init not in ("", "random"):
    checks.fail("learned_rule.init", r.init, "'' or 'random' with learned_rule.rule='mlp'")
  if r.rule == "mlp" and r.per_synapse:
    checks.fail("learned_rule.per_synapse", True, "False with learned_rule.rule='mlp'")


def from_config(config, layers, input_shape, output) -> Learner:
  """`learned_rule` from ``config.learned_rule`` and ``config.flp``."""
  r = config.learned_rule
  return base.records_input_shape(learned_rule)(
      layers, input_shape, config.plastic_layers, output=output, rule=r.rule,
      init=r.init or None, per_synapse=r.per_synapse, hidden=r.hidden,
      **flp_lib.options(config))
