"""Evolution strategies: meta-gradients from forward passes only (ES, and PES over windows).

`make` (antithetic ES, Salimans et al. 2017; learned_optimization's
``FullES``): for ``P`` perturbations ``eps_i ~ N(0, I)`` of every leaf of the
meta-parameters, the lifetimes are run at ``theta + sigma eps_i`` and
``theta - sigma eps_i`` and

  g = 1 / (2 sigma P) sum_i (L(theta + sigma eps_i) - L(theta - sigma eps_i)) eps_i.

Every perturbation is evaluated on the same lifetimes (common random
numbers): the episodes and learner-init keys `full.make_loss` draws from the
meta-step's key (sampled once per meta-step). No reverse-mode differentiation
runs through the lifetime, so memory does not grow with its length (``2 P``
forward lifetimes, `vmap`ped, or ``chunk`` pairs at a time). The loss metric
``L(theta)`` on the same lifetimes costs one more forward pass (one per
chunk: the unperturbed parameters ride along in every chunk's batch). A
perturbed lifetime that diverges makes the estimate non-finite, and the
meta-step is skipped (`meta.make_meta_step`).

Bias and variance: ``g`` is an unbiased estimate of the gradient of the
Gaussian-smoothed loss ``E L(theta + sigma eps)``, which differs from the true
gradient by ``O(sigma^2)`` (third derivatives; antithetic pairs cancel the
even orders), and it stays defined where the loss is not differentiable or
its gradient explodes (long chaotic lifetimes). Its variance is about
``(d + 1) |grad|^2 / P`` for ``d`` meta-parameters (antithetic pairs remove
the loss's constant part), so the mean squared error falls like ``1 / P``
and the cosine with the true gradient is about ``1 / sqrt(1 + d / P)``: many
pairs are needed for large networks. ``antithetic=False`` uses ``P``
one-sided differences against the unperturbed loss (same cost per pair, half
the evaluations, ``O(sigma)`` bias). Frozen groups (``frozen``: the groups
whose meta-learning rate is 0; `flpjax.experiment` passes them) are not
perturbed: perturbing them would only add variance, and would make a learner
whose "off" groups are frozen (e.g. plastic feedback at rate 0) differ from the
learner it reduces to.

`make_pes` (persistent ES, Vicol et al. 2021; learned_optimization's
``TruncatedPES``): ES over ``window``-step windows of a lifetime (as
`truncated`), where each of the ``2 P`` particles keeps its own fast state
across windows and the estimate weights the loss differences by the
*accumulated* perturbations of the lifetime so far:

  xi_i += eps_i (reset at a new lifetime)
  g = 1 / (2 sigma P) sum_i (L_w(theta + sigma eps_i; s_i^+) - L_w(theta - sigma eps_i; s_i^-)) xi_i

This is unbiased (for the smoothed loss) for the gradient of the window's
loss through the *whole* lifetime so far, unlike truncated backprop, at the
price of a variance growing with the number of windows elapsed. With
``window == T`` it is `make`.

Keys: the leaf at tree path ``p`` of ``eps_i`` is drawn from
``fold_in(fold_in(fold_in(key, NOISE_TAG), i), crc32(p))`` for the meta-step's
``key``, so a leaf's noise does not depend on the other leaves; population sizes are nested (the first ``P`` perturbations of a larger
population are those of a smaller one), and PES's window ``w`` draws from its
own meta-step's key.

Example:
  >>> est = es.make(learner, task, population=64, sigma=1e-3)
  >>> grads, _, metrics = est.meta_grad(params, (), jax.random.key(0), task.data)
"""

from __future__ import annotations

import types
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from flpjax import lifetime
from flpjax.estimators import base, truncated
from flpjax.learners import base as learner_base
from flpjax.learners.base import Learner
from flpjax.types import FastState, Params, Task, loss_fn

#: ``fold_in`` tag of the perturbations' keys (the lifetimes use ``split(key)``).
NOISE_TAG = 1


def _leaf_tag(path) -> int:
  """A stable 31-bit tag of a leaf's path in the tree (its noise stream's ``fold_in``)."""
  return zlib.crc32(jax.tree_util.keystr(path).encode()) & 0x7FFFFFFF


def perturbation(params: Params, key: jax.Array, i: jax.Array, frozen: Any = None) -> Params:
  """``eps_i ~ N(0, I)``, the structure and shapes of ``params``.

  Every leaf draws its own noise from ``fold_in(fold_in(key, i), tag)``, with
  ``tag`` a hash of the leaf's path in the tree: a leaf gets the same noise
  whatever other leaves the tree holds (two learners that share meta-parameters
  get the same perturbations of them).

  Args:
    params: meta-parameters (floating leaves).
    key: the noise key of the meta-step (``fold_in(key, NOISE_TAG)``), ``()``.
    i: the perturbation's index, int ``()`` (may be traced).
    frozen: None, or a pytree of bools like ``params``: True leaves are not
      perturbed (zero noise).

  Returns:
    A pytree like ``params``: every leaf the shape and dtype of ``params``'.
  """
  k = jax.random.fold_in(key, i)
  frozen = jax.tree.map(lambda _: False, params) if frozen is None else frozen
  return jax.tree_util.tree_map_with_path(
      lambda path, p, f: (jnp.zeros_like(p) if f else
                          jax.random.normal(jax.random.fold_in(k, _leaf_tag(path)),
                                            jnp.shape(p), jnp.result_type(p))),
      params, frozen)


def frozen_leaves(learner: Learner, params: Params, groups: Any) -> Any:
  """A pytree of bools like ``params``: True where the leaf's group is in ``groups``.

  One Python bool per leaf, whatever its shape; groups are `learners.param_labels`'s.
  """
  groups = frozenset(groups)
  return jax.tree.map(lambda label: label in groups, learner_base.param_labels(params, learner))


def _perturbed(params: Params, eps: Params, scales: jax.Array) -> Params:
  """``theta + scales[k] eps[k]`` for ``K`` perturbations ``eps`` (leaves ``(K, ...)``)."""
  return jax.tree.map(
      lambda p, e: p + (scales.reshape((-1,) + (1,) * (e.ndim - 1)) * e).astype(p.dtype),
      params, eps)


def _weighted_sum(weights: jax.Array, trees: Params) -> Params:
  """``sum_k weights[k] trees[k]`` over the leading axis of every leaf."""
  return jax.tree.map(lambda t: jnp.tensordot(weights.astype(t.dtype), t, 1), trees)


def _with_zero(eps: Params, n: int, signs: tuple[float, ...]) -> tuple[Params, jax.Array]:
  """``[0, eps..., eps...]`` (one copy per sign) and the scales ``[0, s_1 ..., s_2 ...]``."""
  stacked = jax.tree.map(
      lambda e: jnp.concatenate([jnp.zeros_like(e[:1])] + [e] * len(signs)), eps)
  scales = jnp.concatenate([jnp.zeros((1,))] + [jnp.full((n,), s) for s in signs])
  return stacked, scales


def check_chunk(population: int, chunk: int | None) -> int:
  """``chunk`` (None: ``population``); raises ValueError unless it divides ``population``."""
  chunk = population if chunk is None else chunk
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1 or population % chunk:
    raise ValueError(f"chunk must be a positive divisor of population={population}, got {chunk!r}")
  return chunk


def _check(population: int, sigma: float, meta_batch: int) -> None:
  if isinstance(population, bool) or not isinstance(population, int) or population < 1:
    raise ValueError(f"population must be an int >= 1, got {population!r}")
  if not sigma > 0:  # also rejects NaN
    raise ValueError(f"sigma must be > 0, got {sigma!r}")
  if meta_batch < 1:
    raise ValueError(f"meta_batch must be >= 1, got {meta_batch}")


def make(learner: Learner, task: Task, *, population: int, sigma: float, meta_batch: int = 1,
         antithetic: bool = True, chunk: int | None = None,
         frozen: tuple[str, ...] = ()) -> base.Estimator:
  """Antithetic evolution strategies on the meta-parameters (see the module docstring).

  Args:
    learner: the learner.
    task: the meta-training task.
    population: ``P``, the number of perturbations (pairs when antithetic:
      ``2 P`` lifetimes per meta-step, plus one for the loss).
    sigma: the perturbations' standard deviation (in meta-parameter units,
      the same for every leaf).
    meta_batch: lifetimes per evaluation (the loss is their mean; every
      perturbation sees the same ones).
    antithetic: pairs ``theta +- sigma eps``; otherwise one-sided differences
      ``L(theta + sigma eps) - L(theta)``.
    chunk: perturbations evaluated at once (`vmap`ped), ``lax.scan`` over
      ``P / chunk`` chunks; default all ``P``. Bounds memory at ``chunk``
      perturbations of the meta-parameters and ``(2 chunk + 1) meta_batch``
      lifetimes.
    frozen: parameter groups (labels) that are not perturbed and get a zero
      estimate: the groups the optimizer does not train (meta-learning rate 0).

  Returns:
    A stateless `Estimator`; metrics ``'loss'`` (``L(theta)`` on the same
    lifetimes: one extra forward pass per chunk) and ``'grad_norm'``.

  Raises:
    ValueError: ``population < 1``, ``sigma <= 0``, ``meta_batch < 1``, or a
      ``chunk`` that does not divide ``population``.
  """
  _check(population, sigma, meta_batch)
  chunk = check_chunk(population, chunk)
  query_loss_fn = loss_fn(task.output)

  def lifetimes(key, data):
    """The episodes and init keys of `full.make_loss`'s lifetimes, drawn once per meta-step."""

    def draw(k):
      k_episode, k_init = jax.random.split(k)
      return task.sample(k_episode, data), k_init

    keys = truncated.lifetime_keys(key, meta_batch)
    return draw(keys) if meta_batch == 1 else jax.vmap(draw)(keys)

  def loss(params, episodes, k_init):
    """Mean query loss over the ``meta_batch`` lifetimes, forward only."""
    one = lambda e, k: lifetime.query_loss(  # noqa: E731
        learner, params, e, query_loss_fn, key=k, remat="none")[0]
    return one(episodes, k_init) if meta_batch == 1 else jnp.mean(jax.vmap(one)(episodes, k_init))

  def meta_grad(params: Params, key: jax.Array, data: Any):
    key = truncated.as_typed_key(key)
    noise = jax.random.fold_in(key, NOISE_TAG)
    signs = (1.0, -1.0) if antithetic else (1.0,)
    mask = frozen_leaves(learner, params, frozen)
    episodes, k_init = lifetimes(key, data)
    evaluate = jax.vmap(loss, (0, None, None))

    def body(acc, idx):
      # One vmapped evaluation of theta, theta + sigma eps_i (and theta - sigma eps_i).
      eps = jax.vmap(lambda i: perturbation(params, noise, i, mask))(idx)
      stacked, scales = _with_zero(eps, chunk, signs)
      losses = evaluate(_perturbed(params, stacked, sigma * scales), episodes, k_init)
      value, up = losses[0], losses[1:chunk + 1]
      c = (up - losses[chunk + 1:]) / 2 if antithetic else up - value
      return jax.tree.map(jnp.add, acc, _weighted_sum(c, eps)), value

    zeros = jax.tree.map(jnp.zeros_like, params)
    idx = jnp.arange(population, dtype=jnp.int32).reshape(population // chunk, chunk)
    acc, values = jax.lax.scan(body, zeros, idx)
    grads = jax.tree.map(lambda a: a / (sigma * population), acc)
    return grads, {"loss": values[0], "grad_norm": base.global_norm(grads)}

  return base.stateless(meta_grad, name="es")


class PESState(NamedTuple):
  """PES's state: the lifetimes under way and the ``2 P`` particles' trajectories.

  ``L = meta_batch`` lifetimes (axis ``[L,]`` only when ``meta_batch > 1``),
  ``P = population``.

  Attributes:
    key, position, fast: as `truncated.State`; ``fast`` is the unperturbed
      trajectory (for the loss metric).
    fast_pos: fast states of the ``theta + sigma eps_i`` particles, ``(P, [L,] ...)``.
    fast_neg: those of the ``theta - sigma eps_i`` particles, ``(P, [L,] ...)``.
    accum: ``xi_i``, the perturbations summed over the lifetime's windows so
      far, like ``params`` with a leading ``(P,)``.
  """

  key: jax.Array
  position: jax.Array
  fast: FastState
  fast_pos: FastState
  fast_neg: FastState
  accum: Params


def make_pes(learner: Learner, task: Task, *, window: int, population: int, sigma: float,
             meta_batch: int = 1, frozen: tuple[str, ...] = ()) -> base.Estimator:
  """Persistent evolution strategies over ``window``-step windows (see the module docstring).

  Windows, lifetimes and keys are those of `truncated.make`; the perturbations
  of a window are those `make` draws from its meta-step's key. At a new
  lifetime every particle starts from ``learner.init`` of its own perturbed
  meta-parameters. A particle whose trajectory diverges stays non-finite until
  its lifetime ends, so the meta-steps until then are skipped (keep ``sigma``
  small against the plasticity rates).

  Args:
    learner: the learner.
    task: the meta-training task; its lifetimes have ``T`` support steps.
    window: steps per meta-step; must divide ``T``.
    population: ``P``, antithetic pairs of particles.
    sigma: the perturbations' standard deviation.
    meta_batch: independent lifetimes per meta-step (every particle runs all).
    frozen: parameter groups that are not perturbed (as `make`).

  Returns:
    An `Estimator` whose state is a `PESState` (memory: ``P`` copies of the
    meta-parameters and ``2 P + 1`` fast states per lifetime); metrics
    ``'loss'`` (the unperturbed trajectory's query loss after this window,
    `truncated.make`'s up to rounding), ``'grad_norm'`` and ``'position'``.

  Raises:
    ValueError: as `truncated.make` and `make`.
  """
  steps = truncated.lifetime_steps(task)
  truncated.check_window(window, steps)
  _check(population, sigma, meta_batch)
  one = truncated.window_loss(learner, task, window=window, remat="none")

  def run(params, keys, start, fast, restart, data):
    if meta_batch == 1:
      return one(params, keys, start, fast, restart, data)
    values, fast = jax.vmap(one, (None, 0, None, 0, None, None))(
        params, keys, start, fast, restart, data)
    return jnp.mean(values), fast

  def init(params: Params, key: jax.Array) -> PESState:
    st = truncated.init_state(learner, steps, meta_batch, params, key)
    copies = lambda: jax.tree.map(  # noqa: E731  (distinct buffers: the state is donated)
        lambda a: jnp.array(jnp.broadcast_to(a, (population,) + a.shape)), st.fast)
    accum = jax.tree.map(lambda p: jnp.zeros((population,) + jnp.shape(p), jnp.result_type(p)),
                         params)
    return PESState(st.key, st.position, st.fast, copies(), copies(), accum)

  def meta_grad(params: Params, state: PESState, key: jax.Array, data: Any):
    key = truncated.as_typed_key(key)
    keys, key_data, start, restart = truncated.advance(
        truncated.State(state.key, state.position, state.fast), key, steps, meta_batch)
    noise = jax.random.fold_in(key, NOISE_TAG)
    mask = frozen_leaves(learner, params, frozen)
    eps = jax.vmap(lambda i: perturbation(params, noise, i, mask))(
        jnp.arange(population, dtype=jnp.int32))
    accum = jax.tree.map(lambda a, e: jnp.where(restart, e, a + e), state.accum, eps)
    # One vmapped window of the 2 P + 1 trajectories: theta, theta + sigma eps, theta - sigma eps.
    stacked, scales = _with_zero(eps, population, (1.0, -1.0))
    fast = jax.tree.map(lambda f, u, d: jnp.concatenate([f[None], u, d]),
                        state.fast, state.fast_pos, state.fast_neg)
    losses, fast = jax.vmap(run, (0, None, None, 0, None, None))(
        _perturbed(params, stacked, sigma * scales), keys, start, fast, restart, data)
    up, down = losses[1:population + 1], losses[population + 1:]
    grads = jax.tree.map(lambda a: a / (2 * sigma * population), _weighted_sum(up - down, accum))
    position = start + window
    new = PESState(key_data, position, jax.tree.map(lambda f: f[0], fast),
                   jax.tree.map(lambda f: f[1:population + 1], fast),
                   jax.tree.map(lambda f: f[population + 1:], fast), accum)
    metrics = {"loss": losses[0], "grad_norm": base.global_norm(grads), "position": position}
    return grads, new, metrics

  return base.Estimator(init, meta_grad, name="pes")


# ----------------------------------------------------------------------------- config plug-ins
# config.estimator = 'es' (this module) and 'pes' (`PES`) (flpjax.config.registry).

CONFIG = {"es": dict(population=16, sigma=0.01, antithetic=True, chunk=0)}


def validate_config(config) -> None:
  """Checks ``config.es``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  e = config.es
  checks.check_int(config, "es.population", 1)
  checks.check_float(config, "es.sigma", 1e-12)
  checks.check_bool(config, "es.antithetic")
  checks.check_int(config, "es.chunk", 0)
  try:
    check_chunk(e.population, e.chunk or None)
  except ValueError:
    checks.fail("es.chunk", e.chunk, f"0 or a divisor of es.population={e.population}")


def _frozen(config, learner: Learner) -> tuple[str, ...]:
  from flpjax.config import build  # pylint: disable=g-import-not-at-top
  return build.frozen_groups(config, learner)


def from_config(config, learner: Learner, task: Task) -> base.Estimator:
  """`make` from ``config.es`` and ``meta.batch_size``; groups with meta-learning rate 0
  are not perturbed."""
  e = config.es
  return make(learner, task, population=e.population, sigma=e.sigma,
              meta_batch=config.meta.batch_size, antithetic=e.antithetic,
              chunk=e.chunk or None, frozen=_frozen(config, learner))


def _validate_pes(config) -> None:
  truncated.validate_config(config)
  validate_config(config)


def _pes_from_config(config, learner: Learner, task: Task) -> base.Estimator:
  e = config.es
  return make_pes(learner, task, window=config.truncated.window, population=e.population,
                  sigma=e.sigma, meta_batch=config.meta.batch_size,
                  frozen=_frozen(config, learner))


#: The 'pes' plug-in: `make_pes` over ``truncated.window``-step windows, from ``config.es``.
PES = types.SimpleNamespace(validate_config=_validate_pes, from_config=_pes_from_config)
