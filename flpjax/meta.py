"""Meta-learning: the optimizer of the meta-parameters and the one meta-step.

The meta-step is written once (`make_meta_step`): an estimator
(`flpjax.estimators`) gives the meta-gradient, `guard` turns a step that
cannot be applied into a skipped one, the optimizer updates, and metrics
come out. It serves one run, and ``R`` runs `vmap`ped together
(`make_runs_meta_step`). It takes any ``optax.GradientTransformation``:
`make_optimizer`'s (the paper's Adams, one per group), or one of your own,
e.g. ``optax.multi_transform`` over `learners.param_labels`.

The optimizer gives each meta-parameter group that the learner declares
(`Learner.groups`) its own Adam and learning rate through one
`optax.partition` (the reference used four separate torch Adams with the same
defaults: b1=0.9, b2=0.999, eps=1e-8 added to sqrt(v_hat)); a group with
learning rate 0 is frozen (`optax.set_to_zero`). `optax.apply_if_finite`
guards the update: a meta-step whose loss or gradient is not finite leaves
the parameters and the optimizer state untouched and is counted.

Example (a small network; ``nets.regression_mlp()`` is the paper's 9 layers):
  >>> from flpjax import estimators, learners, meta, nets
  >>> from flpjax.tasks import sine
  >>> task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 20),
  ...                       n_functions=2, steps_per_function=5, batch_size=4)
  >>> learner = learners.flp(nets.regression_mlp((32, 32)), task.input_shape, 2)
  >>> opt = meta.make_optimizer(meta.PAPER_REGRESSION_LRS, learner)
  >>> state = meta.init_state(learner, opt, jax.random.key(0))
  >>> step = meta.make_meta_step(estimators.full.make(learner, task), opt)
  >>> state, metrics = step(state, jax.random.key(2), task.data)  # `state` is consumed
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flpjax.estimators.base import MAX_GRADIENT, Estimator, global_norm, guard  # noqa: F401
from flpjax.learners.base import Learner, group_names, param_labels
from flpjax.types import Params

#: Table 3 of the paper (regression): meta-learning rate of every group.
PAPER_REGRESSION_LRS = {"ff": 1e-4, "fb": 1e-4, "alpha": 1e-8, "beta": 1e-4}


class TrainState(NamedTuple):
  """Meta-training state: step count, meta-parameters, optimizer state, estimator state.

  Attributes:
    step: meta-steps taken, int32 ``()``.
    params: the meta-parameters, ``learner.init_params``'s tree (leaf shapes:
      `learners.param_labels`).
    opt_state: the optimizer's state (``optimizer.init(params)``).
    estimator: the estimator's state (e.g. `estimators.truncated.State`);
      ``()`` for estimators without state (full backprop, OML, ES).

  States of ``R`` runs (`init_states`) have a leading ``(R,)`` axis on every leaf.
  """

  step: jax.Array
  params: Params
  opt_state: optax.OptState
  estimator: Any = ()


def make_optimizer(
    lrs: Mapping[str, float | optax.Schedule], learner: Learner,
    max_consecutive_nonfinite: int = 2**30,
    *,
    clip_norm: float = 0.0,
    warmup_steps: int = 0,
    nonnegative: tuple[str, ...] = (),
) -> optax.GradientTransformation:
  """Adam per meta-parameter group, guarded against non-finite gradients.

  Every Adam is wrapped in `optax.inject_hyperparams`, so its learning rate is
  part of the optimizer state: independent runs `vmap`ped together can each
  have their own (`set_learning_rates`), e.g. in a sweep.

  Per group, the chain is: ``clip_by_global_norm(clip_norm)`` (if > 0), Adam,
  a linear warm-up of the step over ``warmup_steps`` meta-steps (if > 0; a
  multiplier after Adam, so per-run rates stay settable), and
  ``keep_params_nonnegative`` for the groups in ``nonnegative``. The defaults
  are the paper's procedure (plain Adam); the options are the divergence
  remedies measured in BUILD_NOTES ("Why networks diverge").

  Args:
    lrs: learning rate per group of the learner (`Learner.groups`; a group
      with a ``fallback``, e.g. ``'alpha_readout'``, defaults to its
      fallback's rate): a number, or an optax schedule of the meta-step (e.g.
      the reference OML's step decay). A group without a rate, or with rate
      0, is frozen (`optax.set_to_zero`).
    learner: the learner whose parameters are optimized (it labels them).
    max_consecutive_nonfinite: passed to `optax.apply_if_finite`; the training
      loop stops the run well before this (``meta.max_nonfinite``), since
      apply_if_finite lets updates through after that many.
    clip_norm: clip each group's meta-gradient to this global norm (0: none).
    warmup_steps: scale every group's step by ``min(1, (count + 1) / warmup_steps)``.
    nonnegative: groups projected onto ``>= 0`` after each update (e.g.
      ``('alpha', 'alpha_readout')``: plasticities of one sign, so that Oja's decay
      term never grows a weight).

  Returns:
    The optimizer.
  """
  lrs = dict(lrs)
  names = group_names(learner)
  unknown = set(lrs) - set(names)
  if unknown:
    raise ValueError(f"unknown meta-parameter groups {sorted(unknown)}; this learner has "
                     f"{group_names(learner)}")
  for g in learner.groups:
    if g.fallback is not None:
      lrs.setdefault(g.name, lrs.get(g.fallback, 0.0))

  unknown = set(nonnegative) - set(names)
  if unknown:
    raise ValueError(f"nonnegative: unknown meta-parameter groups {sorted(unknown)}; this "
                     f"learner has {group_names(learner)}")

  def group(name, lr):
    if not (callable(lr) or lr > 0):
      return optax.set_to_zero()
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=lr)
    if not (clip_norm or warmup_steps or name in nonnegative):
      return adam  # the paper's procedure; the state layout of older checkpoints
    chain = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    chain.append(adam)
    if warmup_steps:
      chain.append(optax.scale_by_schedule(
          lambda count: jnp.minimum(1.0, (count + 1.0) / warmup_steps)))
    if name in nonnegative:
      chain.append(optax.keep_params_nonnegative())
    return optax.chain(*chain)

  transforms = {g: group(g, lrs.get(g, 0.0)) for g in names}
  opt = optax.partition(transforms, lambda p: param_labels(p, learner))
  return optax.apply_if_finite(opt, max_consecutive_nonfinite)


def set_learning_rates(opt_state, lrs: Mapping[str, Any]):
  """The optimizer state with new learning rates for some groups.

  Args:
    opt_state: a state of `make_optimizer` (possibly with a leading run axis ``(R,)``).
    lrs: ``{group: rate}``; a rate is ``()`` or, with the run axis, ``(R,)``.

  Returns:
    The updated state.

  Raises:
    ValueError: for a group that is frozen or has a schedule.
  """
  partition = opt_state.inner_state
  inner = dict(partition.inner_states)

  def with_rate(state, lr):  # the Adam's state, alone or inside a chain (make_optimizer)
    hp = getattr(state, "hyperparams", None)
    if hp is not None and "learning_rate" in hp:
      hp = dict(hp, learning_rate=jnp.asarray(lr, hp["learning_rate"].dtype)
                * jnp.ones_like(hp["learning_rate"]))
      return state._replace(hyperparams=hp), True
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
      parts = [with_rate(s, lr) for s in state]
      return tuple(p for p, _ in parts), any(found for _, found in parts)
    return state, False

  for g, lr in lrs.items():
    masked = inner.get(g)
    state, found = with_rate(getattr(masked, "inner_state", None), lr)
    if not found:
      raise ValueError(f"group {g!r} has no learning rate to set (frozen, or unknown)")
    inner[g] = masked._replace(inner_state=state)
  return opt_state._replace(inner_state=partition._replace(inner_states=inner))


def scale_groups(learner: Learner, groups: tuple[str, ...],
                 factor: float) -> Callable[[Params], Params]:
  """``params -> params`` with every leaf of ``groups`` multiplied by ``factor``.

  The back-off of ``config.meta.nonfinite_backoff`` (`make_meta_step`'s
  ``on_nonfinite``): after a meta-step whose lifetime was not finite, e.g.
  ``scale_groups(learner, ('alpha', 'alpha_readout'), 0.5)`` halves every
  plasticity (either sign), so that a network whose first lifetimes explode
  moves towards a stable plasticity instead of skipping every step for ever.

  Args:
    learner: the learner whose parameters are scaled (it labels them,
      `learners.param_labels`).
    groups: names of the learner's groups (`Learner.groups`).
    factor: the multiplier, in (0, 1].

  Returns:
    The function; leaves of other groups are returned unchanged (the same arrays).

  Raises:
    ValueError: an unknown group, or ``factor`` outside (0, 1].
  """
  unknown = set(groups) - set(group_names(learner))
  if unknown:
    raise ValueError(f"unknown meta-parameter groups {sorted(unknown)}; this learner has "
                     f"{group_names(learner)}")
  if not 0.0 < factor <= 1.0:
    raise ValueError(f"factor: expected a number in (0, 1], got {factor!r}")
  groups = frozenset(groups)

  def scale(params: Params) -> Params:
    labels = param_labels(params, learner)
    return jax.tree.map(lambda p, g: p * jnp.asarray(factor, p.dtype) if g in groups else p,
                        params, labels)

  return scale


def init_state(learner: Learner, optimizer: optax.GradientTransformation, key: jax.Array,
               params: Params | None = None, estimator: Estimator | None = None) -> TrainState:
  """Fresh meta-parameters (or ``params``) with fresh optimizer and estimator states.

  The estimator's state is drawn from ``fold_in(key, 1)`` (the parameters from ``key``,
  a PRNG key ``()``).

  Args:
    learner: the learner.
    optimizer: the optimizer of the meta-parameters (e.g. `make_optimizer`'s).
    key: PRNG key ``()``.
    params: meta-parameters to start from, ``learner.init_params``'s tree (leaf
      shapes: `learners.param_labels`); default ``learner.init_params(key)``.
    estimator: the estimator whose state to initialise (None: no state, ``()``).

  Returns:
    The `TrainState`, ``step`` ``()`` at 0.
  """
  params = learner.init_params(key) if params is None else params
  est = () if estimator is None else estimator.init(params, jax.random.fold_in(key, 1))
  return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), est)


def _check_optimizer(optimizer: Any) -> None:
  if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
    raise TypeError(f"optimizer: expected an optax.GradientTransformation (e.g. optax.adam(1e-3) "
                    f"or meta.make_optimizer(...)), got {type(optimizer).__name__}")


def _check_opt_state(optimizer: optax.GradientTransformation, opt_state: Any,
                     params: Params) -> None:
  """One line when ``opt_state`` was not made by ``optimizer.init`` for ``params``."""
  try:
    expected = jax.eval_shape(optimizer.init, params)
  except Exception as e:  # pylint: disable=broad-except  # the user's optimizer on these params
    raise ValueError(f"optimizer.init fails on these meta-parameters ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''})") from None
  if jax.tree.structure(expected) != jax.tree.structure(opt_state):
    raise ValueError(
        "state.opt_state does not have the structure of this optimizer's state: make the "
        "state with meta.init_state(learner, optimizer, key) (or meta.init_states for runs) "
        "using the optimizer given to the meta-step")


def make_meta_step(
    estimator: Estimator,
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
    donate: bool = True,
    on_nonfinite: Callable[[Params], Params] | None = None,
    max_loss: float | None = None,
) -> Callable[[TrainState, jax.Array, Any], tuple[TrainState, dict]]:
  """The meta-training step ``(state, key, data) -> (state, metrics)``, for every estimator.

  1. ``params = estimator.prepare(state.params, key, data)`` (unchanged but for OML);
  2. ``grads = estimator.meta_grad(params, ...)``, then `guard`;
  3. the optimizer's update of ``params``. A step whose loss or gradient is
     not finite leaves the parameters (``prepare``'s change included) and the
     optimizer state untouched, or, with ``on_nonfinite``, sets the parameters
     to ``on_nonfinite(state.params)`` (e.g. `scale_groups`: smaller
     plasticities after a lifetime that exploded).

  Any ``optax.GradientTransformation`` works. With `make_optimizer`'s (wrapped
  in ``optax.apply_if_finite``) the skipped steps are counted in its state;
  with any other, the step skips them itself and keeps no count.

  Args:
    estimator: the meta-gradient estimator (`flpjax.estimators`), e.g.
      ``estimators.full.make(learner, task)``.
    optimizer: the optimizer of the meta-parameters; ``state.opt_state`` must
      be its state (`init_state`).
    jit: return the step compiled with `jax.jit` (False: the plain function,
      e.g. to put inside a jit or vmap of one's own).
    donate: when jitted, the step consumes the ``state`` it is given (its
      buffers are reused for the new state, so one state is in memory, not
      two): reading that state afterwards raises ``RuntimeError: Array has been
      deleted``. Keep using ``state, metrics = step(state, ...)``, or pass
      ``donate=False`` to keep the old state readable (at the cost of a copy).
    on_nonfinite: ``params -> params`` applied to the step's starting
      meta-parameters when the step is not finite (None: kept as they are, the
      paper's procedure). A step that is finite is untouched by it, bit for bit.
    max_loss: a step whose meta-loss is above this is treated as not finite
      (skipped, counted, given ``on_nonfinite``): a lifetime that diverged
      without overflowing, whose huge but finite meta-gradient would otherwise
      fill Adam's second-moment estimate and freeze the run's later steps
      (BUILD_NOTES). None: no bound (the paper's procedure).

  Returns:
    ``step(state, key, data) -> (state, metrics)``, where ``key`` is this
    meta-step's PRNG key and ``data`` the task's (``task.data``). Metrics
    (arrays of shape ``()``): ``loss`` (meta-loss before the update),
    ``grad_norm``, ``finite`` (whether the update was applied),
    ``grad_norm_<key>`` for each top-level key of the meta-parameters (``ff``,
    ``fb``, ``alpha``, ...), the estimator's own, and with an
    ``optax.apply_if_finite`` optimizer ``nonfinite_total`` and
    ``nonfinite_in_row``.

  Raises:
    TypeError: ``optimizer`` is not a gradient transformation (at once).
    ValueError: ``state.opt_state`` is not this optimizer's state (when the
      step is first traced, before compiling).
  """
  _check_optimizer(optimizer)

  def meta_step(state: TrainState, key: jax.Array, data: Any):
    _check_opt_state(optimizer, state.opt_state, state.params)
    params = estimator.prepare(state.params, key, data)
    grads, est_state, metrics = estimator.meta_grad(params, state.estimator, key, data)
    grads = guard(metrics["loss"], grads, max_loss)
    grad_norm = metrics["grad_norm"] if "grad_norm" in metrics else global_norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    new = optax.apply_updates(params, updates)
    if isinstance(opt_state, optax.ApplyIfFiniteState):  # the guard's counters
      finite = opt_state.last_finite
      counters = {"nonfinite_total": opt_state.total_notfinite,
                  "nonfinite_in_row": opt_state.notfinite_count}
    else:  # an optimizer without the guard: skip the step here (`guard` made grads NaN)
      finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
      opt_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), opt_state, state.opt_state)
      counters = {}
    kept = state.params if on_nonfinite is None else on_nonfinite(state.params)
    new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, kept)
    by_key = ({f"grad_norm_{k}": global_norm(v) for k, v in grads.items()}
              if isinstance(grads, dict) else {})
    metrics = {
        **metrics,
        **by_key,
        "grad_norm": grad_norm,
        "finite": finite,
        **counters,
    }
    return TrainState(state.step + 1, new, opt_state, est_state), metrics

  if not jit:
    return meta_step
  return jax.jit(meta_step, donate_argnums=0) if donate else jax.jit(meta_step)


def init_states(learner: Learner, optimizer: optax.GradientTransformation,
                keys: jax.Array, estimator: Estimator | None = None) -> TrainState:
  """`init_state` for ``R`` independent runs, one per key of ``keys (R,)``.

  Every leaf of the returned `TrainState` gets a leading run axis ``(R, ...)``.
  """
  return jax.vmap(lambda k: init_state(learner, optimizer, k, estimator=estimator))(keys)


def make_runs_meta_step(
    estimator: Estimator,
    optimizer: optax.GradientTransformation,
    data_axes: Any = None,
    *,
    donate: bool = True,
    on_nonfinite: Callable[[Params], Params] | None = None,
    max_loss: float | None = None,
) -> Callable[[TrainState, jax.Array, Any], tuple[TrainState, dict]]:
  """The meta-step of ``R`` independent runs as one `vmap`ped program.

  ``(states, keys (R,), data) -> (states, metrics)``: run ``r`` takes the step
  `make_meta_step` takes with ``states[r]`` and ``keys[r]`` (every leaf of
  ``states`` and of ``metrics`` has the leading run axis ``R``); the task's data is
  shared, except the parts ``data_axes`` (`Task.data_axes`, a ``vmap``
  ``in_axes`` prefix of ``data``) maps over the runs, e.g. one stream order per
  run, so that the i.i.d. and continual cells of a row train as one program. Independent seeds of a table row, or a sweep over learning rates
  (`set_learning_rates`), become one program: on a GPU a single 300-wide
  lifetime leaves most of the chip idle. When the states are sharded along the
  run axis (`flpjax.parallel.shard_runs`), jit spreads the runs over devices.
  ``donate``, ``on_nonfinite``, ``max_loss``: as for `make_meta_step` (the given
  ``states`` are consumed; a run whose step is not finite gets ``on_nonfinite`` alone).
  """
  step = make_meta_step(estimator, optimizer, jit=False, on_nonfinite=on_nonfinite,
                        max_loss=max_loss)
  runs = jax.vmap(step, in_axes=(0, 0, data_axes))
  return jax.jit(runs, donate_argnums=0) if donate else jax.jit(runs)
