"""Truncated backprop, ES and PES (flpjax/estimators/truncated.py, es.py) against full backprop.

Tiny networks and lifetimes (``T = 6``). Compilation dominates the run time on
CPU, so compiled functions are shared between tests (`_jit`), and most are
compiled without XLA's backend optimizations (`FAST`, per program: nothing
global changes); one bit-for-bit comparison with `full` and the vmapped runs'
meta-step use the default options.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import learners, lifetime, meta, nets
from flpjax.estimators import es, full, truncated
from flpjax.tasks import sine

LAYERS = nets.regression_mlp((8, 8))
N_FUNCTIONS, STEPS_PER_FUNCTION = 2, 3
T = N_FUNCTIONS * STEPS_PER_FUNCTION
IN = (N_FUNCTIONS + 1,)
LRS = {"ff": 1e-3, "fb": 1e-3, "alpha": 1e-4, "beta": 1e-3}
#: Per-program XLA options: tiny programs need no optimization, and compile faster.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _task(pool_size=8):
  return sine.make_task(pool=sine.sample_functions(jax.random.key(1), pool_size),
                        n_functions=N_FUNCTIONS, steps_per_function=STEPS_PER_FUNCTION,
                        batch_size=4, queries_per_function=4)


TASK = _task()
LEARNERS = {
    "flp": lambda: learners.flp(LAYERS, IN, 2, init_alpha=3e-3),
    "gradient": lambda: learners.gradient(LAYERS, IN, 2, reset_readout=True),  # uses k_init
}


@functools.cache
def _learner(name):
  return LEARNERS[name]()


@functools.cache
def _jit(kind, learner="flp", fast=True, **kw):
  """``(estimator, jitted meta_grad)``, built once per configuration (`FAST` or default)."""
  make = {"full": full.make, "truncated": truncated.make, "es": es.make, "pes": es.make_pes}[kind]
  est = make(_learner(learner), TASK, **kw)
  return est, jax.jit(est.meta_grad, compiler_options=FAST if fast else None)


def _params(learner="flp", seed=0):
  return _learner(learner).init_params(jax.random.key(seed))


def _leaves_close(a, b, rtol, atol=0.0):
  return all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def _relative_error(a, b):
  """``|a - b| / |b|`` over all leaves."""
  a, b = _flat(a), _flat(b)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _cosine(a, b):
  a, b = _flat(a), _flat(b)
  return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---------------------------------------------------------------------------
# Truncated backprop.


@pytest.mark.parametrize("learner, meta_batch, fast", [("flp", 1, False), ("gradient", 2, True)],
                         ids=["flp", "gradient-meta_batch2"])
def test_truncated_with_the_whole_lifetime_is_full_backprop(learner, meta_batch, fast):
  """window == T: every meta-step is a fresh lifetime from its key, the gradient `full`'s
  bit for bit on CPU (both compiled with the same options: default ones for FLP)."""
  _, full_grad = _jit("full", learner, fast=fast, meta_batch=meta_batch)
  est, trunc_grad = _jit("truncated", learner, fast=fast, window=T, meta_batch=meta_batch)
  params = _params(learner)
  state = est.init(params, jax.random.key(9))
  assert int(state.position) == T  # the first meta-step starts a lifetime
  for k in (3, 4):  # the second step restarts from a carried (finished) state
    key = jax.random.key(k)
    g_full, _, m_full = full_grad(params, (), key, TASK.data)
    g, state, m = trunc_grad(params, state, key, TASK.data)
    assert int(m["position"]) == T
    np.testing.assert_allclose(m["loss"], m_full["loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_full)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
      if jax.default_backend() == "cpu":  # the same operations: bit for bit
        np.testing.assert_array_equal(a, b)
    assert _flat(g).any()


def test_truncated_windows_carry_the_lifetime_and_cut_its_gradient():
  """window = T/3: the position advances, the lifetime is kept for T/window steps and the
  forward pass is the full lifetime's; the gradient is the window's alone."""
  window = T // 3
  learner = _learner("flp")
  est, trunc_grad = _jit("truncated", window=window)
  params = _params()
  state = est.init(params, jax.random.key(9))
  keys = [jax.random.key(10 + i) for i in range(4)]
  out = []
  for i, key in enumerate(keys):
    g, state, m = trunc_grad(params, state, key, TASK.data)
    out.append((g, m))
    assert int(m["position"]) == int(state.position) == window * (i % 3 + 1)
    lifetime_key = keys[0] if i < 3 else keys[3]  # a new lifetime after T / window steps
    np.testing.assert_array_equal(state.key, jax.random.key_data(lifetime_key))

  # The whole lifetime's loss and gradient (`full`); the first window's gradient (from the
  # learner's init) and the last's (from a constant fast state).
  g_full, _, m_full = _jit("full", fast=False)[1](params, (), keys[0], TASK.data)
  mse = lambda pred, y: jnp.mean((pred - y) ** 2)  # noqa: E731

  @functools.partial(jax.jit, compiler_options=FAST)
  def references(p, key):
    k_episode, k_init = jax.random.split(key)
    episode = TASK.sample(k_episode, TASK.data)
    first = lambda q: lifetime.query_loss(  # noqa: E731
        learner, q, episode._replace(xs=episode.xs[:window], ys=episode.ys[:window]), mse,
        key=k_init)[0]
    mid, _ = lifetime.run(learner, p, episode.xs[:T - window], episode.ys[:T - window], key=k_init)

    def last(q):
      fast, _ = lifetime.run(learner, q, episode.xs[T - window:], episode.ys[T - window:],
                             fast=mid)
      return mse(lifetime.predict(learner, q, fast, episode.xq), episode.yq)

    return jax.grad(first)(p), jax.grad(last)(p)

  g_first, g_last = references(params, keys[0])
  np.testing.assert_allclose(out[2][1]["loss"], m_full["loss"], rtol=1e-5)  # same forward pass
  assert _relative_error(out[2][0], g_full) > 0.05  # but a truncated gradient
  assert _leaves_close(out[0][0], g_first, rtol=1e-4, atol=1e-6)
  assert _leaves_close(out[2][0], g_last, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# ES.


POPULATIONS = (4, 32, 256)
SIGMA = 1e-4


@pytest.fixture(scope="module")
def float64_estimates():
  """Float64 estimates of every ES variant and of `full` on 8 lifetimes (keys 100..107).

  ``out[s]`` lists ``(grads, metrics)`` of: full, ES for each of `POPULATIONS`, PES with
  window T (P=32). All are compiled as one program (compilation dominates the run time).
  """
  with jax.enable_x64(True):
    task = _task()
    learner = _learner("flp")
    params = jax.tree.map(lambda a: a.astype(jnp.float64), _params())
    stateless = ([full.make(learner, task)]
                 + [es.make(learner, task, population=p, sigma=SIGMA) for p in POPULATIONS])
    pes = es.make_pes(learner, task, window=T, population=32, sigma=SIGMA)

    @functools.partial(jax.jit, compiler_options=FAST)
    def run(p, k):
      out = [e.meta_grad(p, (), k, task.data)[::2] for e in stateless]
      g, state, m = pes.meta_grad(p, pes.init(p, jax.random.fold_in(k, 7)), k, task.data)
      return out + [(g, {**m, "state_position": state.position})]

    return [run(params, jax.random.key(100 + s)) for s in range(8)]


def test_es_error_falls_like_one_over_population(float64_estimates):
  """Float64, small sigma: the squared error against the exact gradient falls like 1/P and
  the cosine with it rises toward 1."""
  out = float64_estimates
  g_true = [o[0][0] for o in out]
  errors, cosines = [], []
  for i in range(len(POPULATIONS)):
    g = [o[1 + i][0] for o in out]
    errors.append(np.mean([np.sum((_flat(a) - _flat(b)) ** 2) for a, b in zip(g, g_true)]))
    cosines.append(np.mean([_cosine(a, b) for a, b in zip(g, g_true)]))
  slope = np.polyfit(np.log(POPULATIONS), np.log(errors), 1)[0]
  print(f"ES: slope {slope:.3f}, mse {np.round(errors, 1)}, cosines {np.round(cosines, 3)}")
  assert -1.3 <= slope <= -0.7, (slope, errors)
  assert cosines[-1] > 0.5 and all(b > a for a, b in zip(cosines, cosines[1:])), cosines


def test_es_loss_is_that_of_the_full_lifetime(float64_estimates):
  """ES's loss is L(theta) on `full`'s lifetime (common random numbers)."""
  for o in float64_estimates:
    for _, m in o[1:]:
      np.testing.assert_allclose(m["loss"], o[0][1]["loss"], rtol=1e-12)
      assert float(m["grad_norm"]) > 0


# ---------------------------------------------------------------------------
# PES.


def test_pes_with_the_whole_lifetime_is_es(float64_estimates):
  for o in float64_estimates:
    assert _relative_error(o[4][0], o[2][0]) < 1e-9  # PES, window T == ES, same P
    assert int(o[4][1]["position"]) == int(o[4][1]["state_position"]) == T


def test_pes_windows_follow_truncated_lifetimes():
  """PES's windows are truncated backprop's (same lifetimes, same losses); the accumulated
  perturbations restart with the lifetime."""
  window = T // 3
  params = _params()
  pes, pes_grad = _jit("pes", window=window, population=8, sigma=1e-3)
  trunc, trunc_grad = _jit("truncated", window=window)
  s_pes, s_trunc = pes.init(params, jax.random.key(9)), trunc.init(params, jax.random.key(9))
  for i in range(4):
    key = jax.random.key(10 + i)
    g, s_pes, m = pes_grad(params, s_pes, key, TASK.data)
    _, s_trunc, m_trunc = trunc_grad(params, s_trunc, key, TASK.data)
    np.testing.assert_allclose(m["loss"], m_trunc["loss"], rtol=1e-5)
    assert int(m["position"]) == int(m_trunc["position"])
    np.testing.assert_array_equal(s_pes.key, s_trunc.key)
    eps = jax.vmap(lambda j: es.perturbation(params, jax.random.fold_in(key, es.NOISE_TAG), j))(
        jnp.arange(8))
    if i % 3 == 0:  # a new lifetime: xi = this window's eps
      assert _leaves_close(s_pes.accum, eps, rtol=1e-6, atol=1e-6)
    assert np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
  assert not _leaves_close(s_pes.fast_pos, s_pes.fast_neg, rtol=1e-6)


# ---------------------------------------------------------------------------
# Through the meta-step, one run and vmapped runs.


@pytest.mark.parametrize("kind, kw, one, runs", [
    ("truncated", {"window": T // 2}, False, True),
    ("es", {"population": 4, "sigma": 1e-3, "antithetic": False, "chunk": 2}, True, False),
    ("pes", {"window": T // 2, "population": 2, "sigma": 1e-3}, True, False),
], ids=["truncated", "es", "pes"])
def test_meta_steps_carry_the_estimator_state(kind, kw, one, runs):
  """Jitted meta-steps of one run (`make_meta_step`) and of two `vmap`ped runs
  (`make_runs_meta_step`, which is `make_meta_step` vmapped) carry the estimator's state
  in the `TrainState`. (Each estimator is compiled one way only: compilation dominates.)"""
  learner = _learner("flp")
  est, _ = _jit(kind, **kw)
  opt = meta.make_optimizer(LRS, learner)
  stateful = kind != "es"

  if one:
    state = meta.init_state(learner, opt, jax.random.key(0), estimator=est)
    step = jax.jit(meta.make_meta_step(est, opt, jit=False), donate_argnums=0,
                   compiler_options=FAST)  # make_meta_step's own jit, with FAST
    before = jax.tree.map(np.array, state.params)  # the meta-step donates its state
    for i in range(3):
      state, m = step(state, jax.random.fold_in(jax.random.key(1), i), TASK.data)
      assert bool(m["finite"]) and np.isfinite(m["loss"]) and m["grad_norm"] > 0
      if stateful:
        assert int(state.estimator.position) == int(m["position"]) == T // 2 * (i % 2 + 1)
    assert int(state.step) == 3
    assert not _leaves_close(state.params, before, rtol=0)

  if runs:
    states = meta.init_states(learner, opt, jax.random.split(jax.random.key(0), 2),
                              estimator=est)
    runs_step = meta.make_runs_meta_step(est, opt)
    before = jax.tree.map(np.array, states.params)
    for i in range(3):
      keys = jax.vmap(jax.random.fold_in, (0, None))(jax.random.split(jax.random.key(1), 2), i)
      states, m = runs_step(states, keys, TASK.data)
      assert m["loss"].shape == (2,) and np.all(np.asarray(m["finite"]))
      if stateful:
        np.testing.assert_array_equal(states.estimator.position, [T // 2 * (i % 2 + 1)] * 2)
    assert not _leaves_close(states.params, before, rtol=0)
    assert not np.allclose(m["loss"][0], m["loss"][1])  # independent runs


# ---------------------------------------------------------------------------
# Bad inputs.


def test_bad_inputs_name_the_argument():
  learner = _learner("flp")
  for window in (4, 0, 7):
    with pytest.raises(ValueError, match="window"):
      truncated.make(learner, TASK, window=window)
    with pytest.raises(ValueError, match="window"):
      es.make_pes(learner, TASK, window=window, population=2, sigma=0.1)
  with pytest.raises(ValueError, match=f"T={T}"):
    truncated.make(learner, TASK, window=4)
  for population in (0, -1):
    with pytest.raises(ValueError, match="population"):
      es.make(learner, TASK, population=population, sigma=0.1)
    with pytest.raises(ValueError, match="population"):
      es.make_pes(learner, TASK, window=T, population=population, sigma=0.1)
  for sigma in (0.0, -1e-3, float("nan")):
    with pytest.raises(ValueError, match="sigma"):
      es.make(learner, TASK, population=4, sigma=sigma)
    with pytest.raises(ValueError, match="sigma"):
      es.make_pes(learner, TASK, window=T, population=4, sigma=sigma)
  with pytest.raises(ValueError, match="chunk"):
    es.make(learner, TASK, population=4, sigma=0.1, chunk=3)


# ----------------------------------------------------------------------------- from a config


def _config(estimator, steps):
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config()
  c.net.widths = (8, 8)
  c.sine.n_functions, c.sine.steps_per_function = 2, 3
  c.sine.batch_size = c.sine.queries_per_function = 4
  c.sine.pool_size = 10
  c.plastic_layers = 2
  c.flp.init_alpha = 3e-3
  c.estimator = estimator
  c.truncated.window = 2
  c.es.population, c.es.sigma = 4, 0.01
  c.meta.steps = steps
  c.meta.lr.alpha = 1e-4
  c.eval.lifetimes, c.eval.batch = 2, 2
  c.checkpoint_every = 2
  c.log_every = 1
  return c


def test_truncated_through_train_resumes_exactly(tmp_path):
  """The truncated estimator's partial lifetime is checkpointed and restored (item 'estimator')."""
  from flpjax import train  # pylint: disable=g-import-not-at-top
  straight = train.train_and_evaluate(_config("truncated", 5), str(tmp_path / "a"))
  train.train_and_evaluate(_config("truncated", 3), str(tmp_path / "b"))  # saves at 2 and 3
  resumed = train.train_and_evaluate(_config("truncated", 5), str(tmp_path / "b"))
  assert resumed["mse"] == straight["mse"]
  _, pa, _ = train.load_run(str(tmp_path / "a"))
  _, pb, _ = train.load_run(str(tmp_path / "b"))
  chex.assert_trees_all_equal(pa, pb)


@pytest.mark.parametrize("field, value, match", [
    ("truncated.window", 4, "config.truncated.window=4: expected a divisor of the lifetime's 6"),
    ("es.population", 0, "config.es.population=0"),
    ("es.sigma", 0.0, "config.es.sigma=0.0"),
    ("estimator", "maml", "config.estimator='maml': expected one of 'full', 'truncated'"),
])
def test_bad_estimator_fields_are_named(field, value, match):
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  c = _config("truncated" if field.startswith("truncated") else "es", 1)
  config_lib.set_field(c, field, value)
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)


def test_a_lifetime_too_long_for_full_backprop_is_refused_before_compiling():
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  c = _config("full", 1)
  c.meta.max_lifetime_bytes = 10_000  # the 6-step lifetime of 8x8 and 1x8 fast weights: 1728 B
  config_lib.validate(c)
  c.sine.steps_per_function = 30
  with pytest.raises(config_lib.ConfigError, match="use estimator='truncated'"):
    config_lib.validate(c)
  c.estimator = "truncated"
  config_lib.validate(c)  # memory does not grow with the lifetime
  c.estimator = "oml"
  with pytest.raises(config_lib.ConfigError, match="config.learner='flp': expected one of 'gradient'"):
    config_lib.validate(c)  # an estimator that cannot be combined with the learner
