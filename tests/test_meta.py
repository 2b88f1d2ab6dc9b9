"""Meta-gradients against float64 finite differences; the optimizer and its guard."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flpjax import learners, lifetime, meta, nets
from flpjax.estimators import full
from flpjax.tasks import sine

LAYERS = nets.regression_mlp((6, 7, 5))
IN = 4


def _episode(dtype=jnp.float64, steps=5):
  ks = jax.random.split(jax.random.key(7), 4)
  return lifetime.Episode(
      jax.random.normal(ks[0], (steps, 3, IN), dtype), jax.random.normal(ks[1], (steps, 3, 1), dtype),
      jax.random.normal(ks[2], (8, IN), dtype), jax.random.normal(ks[3], (8, 1), dtype))


def _random_params(learner, key=0):
  """Float64 meta-parameters off every kink: random biases, plasticity, feedback bias."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), learner.init_params(jax.random.key(key)))
  rng = np.random.default_rng(key)
  for layer in p["ff"]:
    layer["b"] = rng.normal(size=layer["b"].shape) * 0.3
  if "fb" in p:
    for k in p["alpha"]:
      p["alpha"][k] = rng.uniform(0.0, 0.05, p["alpha"][k].shape)
    for k in p["fb"]:
      p["fb"][k]["c"] = rng.normal(size=p["fb"][k]["c"].shape) * 0.3
  return jax.tree.map(jnp.asarray, p)


def _mse(pred, y):
  return jnp.mean((pred - y) ** 2)


@pytest.mark.parametrize("make", [
    lambda: learners.flp(LAYERS, (IN,), 3),
    lambda: learners.flp(LAYERS, (IN,), 4, rule="hebb", presynaptic="post", clip_beta=True),
    lambda: learners.flp(LAYERS, (IN,), 2, signal="target", clamp_readout=True),
    lambda: learners.gradient(LAYERS, (IN,), 2, learn_lr=True, lr=0.05, second_order=True),
], ids=["flp3", "flp4-hebb-post-clip", "flp2-target-clamped", "grad2-second-order"])
def test_meta_gradient_matches_finite_differences(make):
  """Directional derivatives of every group against float64 central differences.

  (The first-order gradient learner is, by design, not the gradient of its loss;
  `test_learners.test_first_order_meta_gradient_is_the_identity_path` covers it.)
  """
  with jax.enable_x64(True):
    learner = make()
    params = _random_params(learner)
    episode = _episode()

    def loss(p):
      return lifetime.query_loss(learner, p, episode, _mse, remat="step")[0]

    grads = jax.jit(jax.grad(loss))(params)
    rng = np.random.default_rng(0)
    for group in params:
      direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params[group])
      eps = 1e-6 * (1e-2 if group == "alpha" else 1.0)

      def shifted(s, group=group, direction=direction, eps=eps):
        p = dict(params)
        p[group] = jax.tree.map(lambda a, d: a + s * eps * d, params[group], direction)
        return loss(p)

      fd = (shifted(1) - shifted(-1)) / (2 * eps)
      analytic = sum(jnp.vdot(g, d) for g, d in
                     zip(jax.tree.leaves(grads[group]), jax.tree.leaves(direction)))
      assert abs(float(analytic)) > 1e-8, group
      np.testing.assert_allclose(analytic, fd, rtol=1e-6, err_msg=group)


def test_first_order_alpha_gradient_matches_stopped_finite_differences():
  """The first-order learner is exact for its learning rates' direct effect; checked above for ff."""
  with jax.enable_x64(True):
    learner = learners.gradient(LAYERS, (IN,), 1, learn_lr=True, lr=0.05)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), learner.init_params(jax.random.key(0)))
    episode = _episode()
    # With a single plastic layer (the readout) and MSE, the inner gradient of the readout
    # does not depend on the readout's learning rates through earlier steps' features, but
    # it does through the readout itself: the first-order gradient differs from the exact one.
    exact = learners.gradient(LAYERS, (IN,), 1, learn_lr=True, lr=0.05, second_order=True)
    g1 = jax.grad(lambda p: lifetime.query_loss(learner, p, episode, _mse)[0])(params)
    g2 = jax.grad(lambda p: lifetime.query_loss(exact, p, episode, _mse)[0])(params)
    assert not np.allclose(g1["lr"]["3"]["w"], g2["lr"]["3"]["w"])


def test_feedback_gradients_are_zero_at_zero_plasticity():
  learner = learners.flp(nets.regression_mlp((20, 30, 20)), (11,), 3, init_alpha=0.0)
  params = learner.init_params(jax.random.key(0))
  task = sine.make_task(pool=None, steps_per_function=2, batch_size=4, queries_per_function=3)
  grads = jax.grad(full.make_loss(learner, task))(params, jax.random.key(1), None)
  for leaf in jax.tree.leaves(grads["fb"]) + jax.tree.leaves(grads["beta"]):
    assert np.all(np.asarray(leaf) == 0.0)
  assert np.any(np.asarray(grads["alpha"]["3"]) != 0.0)
  assert np.any(np.asarray(grads["ff"][0]["w"]) != 0.0)


def test_each_group_moves_at_its_own_rate():
  learner = learners.flp(nets.regression_mlp((8, 8)), (11,), 2, init_alpha=1e-3)
  lrs = {"ff": 1e-2, "fb": 1e-3, "alpha": 1e-5, "beta": 0.0}
  opt = meta.make_optimizer(lrs, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  grads = jax.tree.map(lambda a: jnp.ones_like(a), state.params)
  updates, _ = opt.update(grads, state.opt_state, state.params)
  # Adam's first step is -lr * g / (|g| + eps) = -lr for a gradient of one.
  np.testing.assert_allclose(updates["ff"][0]["w"], -1e-2, rtol=1e-4)
  np.testing.assert_allclose(updates["fb"]["1"]["B"], -1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates["alpha"]["1"], -1e-5, rtol=1e-4)
  np.testing.assert_allclose(updates["alpha"]["2"], -1e-5, rtol=1e-4)  # readout defaults to alpha's rate
  np.testing.assert_array_equal(updates["beta"]["1"], 0.0)
  opt2 = meta.make_optimizer(dict(lrs, alpha_readout=1e-7), learner)
  updates, _ = opt2.update(grads, opt2.init(state.params), state.params)
  np.testing.assert_allclose(updates["alpha"]["2"], -1e-7, rtol=1e-4)
  np.testing.assert_allclose(updates["alpha"]["1"], -1e-5, rtol=1e-4)


def test_adam_matches_pytorch_formula():
  """optax.adam with eps added to sqrt(v_hat), as torch.optim.Adam (several steps)."""
  learner = learners.flp(nets.regression_mlp((3,)), (2,), 1)
  opt = meta.make_optimizer({"ff": 0.1, "fb": 0.1, "alpha": 0.1, "beta": 0.1}, learner)
  params = learner.init_params(jax.random.key(0))
  state = opt.init(params)
  rng = np.random.default_rng(0)
  x = np.asarray(params["ff"][0]["w"], np.float64)
  m = v = 0.0
  for t in range(1, 5):
    g = rng.normal(size=x.shape) * 10.0 ** rng.integers(-9, 2)
    grads = jax.tree.map(jnp.zeros_like, params)
    grads["ff"][0]["w"] = jnp.asarray(g, jnp.float32)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    x = x - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
  np.testing.assert_allclose(params["ff"][0]["w"], x, rtol=1e-5, atol=1e-7)


def test_nonfinite_meta_gradient_is_skipped_and_counted():
  learner = learners.flp(nets.regression_mlp((8, 8)), (11,), 2)
  opt = meta.make_optimizer(meta.PAPER_REGRESSION_LRS, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  task = sine.make_task(pool=None, steps_per_function=2, batch_size=4, queries_per_function=3)
  step = meta.make_meta_step(full.make(learner, task), opt, jit=False)
  bad = state._replace(params=jax.tree.map(lambda a: a, state.params))
  bad.params["ff"][0]["b"] = bad.params["ff"][0]["b"].at[0].set(jnp.nan)
  new, metrics = step(bad, jax.random.key(1), task.data)
  assert not bool(metrics["finite"]) and int(metrics["nonfinite_total"]) == 1
  chex.assert_trees_all_equal(new.params, bad.params)
  chex.assert_trees_all_equal(new.opt_state.inner_state, bad.opt_state.inner_state)
  good, metrics = step(state, jax.random.key(1), task.data)
  assert bool(metrics["finite"]) and int(metrics["nonfinite_total"]) == 0
  assert not np.array_equal(good.params["ff"][0]["w"], state.params["ff"][0]["w"])


def test_meta_batch_averages_lifetimes():
  learner = learners.flp(nets.regression_mlp((8, 8)), (11,), 2, init_alpha=1e-3)
  params = learner.init_params(jax.random.key(0))
  task = sine.make_task(pool=None, steps_per_function=2, batch_size=4, queries_per_function=3)
  key = jax.random.key(3)
  batched = full.make_loss(learner, task, meta_batch=3)(params, key, None)
  single = full.make_loss(learner, task)
  mean = np.mean([single(params, k, None) for k in jax.random.split(key, 3)])
  np.testing.assert_allclose(batched, mean, rtol=1e-5)


def test_unknown_group():
  learner = learners.flp(nets.regression_mlp((8,)), (11,), 1)
  with pytest.raises(ValueError, match="unknown meta-parameter groups"):
    meta.make_optimizer({"ff": 1e-4, "gamma": 1.0}, learner)


def test_per_run_learning_rates_in_one_vmapped_program():
  """Two runs with different plasticity rates, vmapped: each moves at its own rate."""
  learner = learners.flp(nets.regression_mlp((8, 8)), (11,), 2, init_alpha=1e-3)
  opt = meta.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-5, "beta": 1e-3}, learner)
  params = learner.init_params(jax.random.key(0))
  states = jax.vmap(lambda _: opt.init(params))(jnp.arange(2))
  states = meta.set_learning_rates(states, {"alpha": jnp.array([1e-5, 1e-3])})
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.vmap(opt.update, (None, 0, None))(grads, states, params)
  np.testing.assert_allclose(updates["alpha"]["1"][0], -1e-5, rtol=1e-4)
  np.testing.assert_allclose(updates["alpha"]["1"][1], -1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates["ff"][0]["w"][1], -1e-3, rtol=1e-4)
  with pytest.raises(ValueError, match="group 'gamma' has no learning rate"):
    meta.set_learning_rates(states, {"gamma": 1.0})


def test_schedule_as_a_group_rate():
  learner = learners.flp(nets.regression_mlp((8,)), (11,), 1)
  sched = optax.piecewise_constant_schedule(1e-2, {2: 0.3})
  opt = meta.make_optimizer({"ff": sched, "alpha": 1e-3}, learner)
  params = learner.init_params(jax.random.key(0))
  state = opt.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  sizes = []
  for _ in range(4):
    updates, state = opt.update(grads, state, params)
    sizes.append(float(updates["ff"][0]["w"][0, 0]))
  np.testing.assert_allclose(sizes, [-1e-2, -1e-2, -3e-3, -3e-3], rtol=1e-4)


def test_gradients_that_would_overflow_adam_are_skipped():
  grads = {"a": jnp.array([1.0, 2e18]), "b": jnp.ones(2)}
  guarded = meta.guard(jnp.asarray(0.5), grads)
  assert np.all(np.isnan(np.asarray(guarded["a"]))) and np.all(np.isnan(np.asarray(guarded["b"])))
  fine = meta.guard(jnp.asarray(0.5), {"a": jnp.array([1.0, 1e17])})
  np.testing.assert_array_equal(fine["a"], np.float32([1.0, 1e17]))
  assert np.all(np.isnan(np.asarray(meta.guard(jnp.asarray(np.inf), {"a": jnp.ones(1)})["a"])))


def test_a_finite_loss_above_max_loss_is_skipped_like_a_non_finite_one():
  """guard's ``max_loss``: NaN gradients (so the step is skipped) when the loss is above
  the bound, unchanged at or below it; the meta-step with ``max_loss`` skips and counts
  such a step, backs it off, and leaves a step below the bound bit for bit as without."""
  grads = {"a": jnp.array([1.0, 2.0])}
  np.testing.assert_array_equal(meta.guard(jnp.asarray(3.0), grads, 3.0)["a"], [1.0, 2.0])
  assert np.all(np.isnan(np.asarray(meta.guard(jnp.asarray(3.5), grads, 3.0)["a"])))
  learner = learners.flp(nets.regression_mlp((8, 8)), (11,), 2, init_alpha=1e-3)
  opt = meta.make_optimizer(meta.PAPER_REGRESSION_LRS, learner)
  task = sine.make_task(pool=None, steps_per_function=2, batch_size=4, queries_per_function=3)
  backoff = meta.scale_groups(learner, ("alpha", "alpha_readout"), 0.5)
  state = meta.init_state(learner, opt, jax.random.key(0))
  key = jax.random.key(1)
  plain = meta.make_meta_step(full.make(learner, task), opt, jit=False)
  reference, ref_metrics = plain(state, key, task.data)
  loss = float(ref_metrics["loss"])
  assert np.isfinite(loss) and bool(ref_metrics["finite"])
  above = meta.make_meta_step(full.make(learner, task), opt, jit=False, on_nonfinite=backoff,
                              max_loss=0.5 * loss)
  new, metrics = above(state, key, task.data)
  assert not bool(metrics["finite"]) and int(metrics["nonfinite_total"]) == 1
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-6)  # reported as it was
  np.testing.assert_array_equal(new.params["alpha"]["1"], 0.5 * np.asarray(state.params["alpha"]["1"]))
  chex.assert_trees_all_equal(new.params["ff"], state.params["ff"])
  chex.assert_trees_all_equal(new.opt_state.inner_state, state.opt_state.inner_state)
  below = meta.make_meta_step(full.make(learner, task), opt, jit=False, on_nonfinite=backoff,
                              max_loss=2.0 * loss)
  chex.assert_trees_all_equal(below(state, key, task.data)[0], reference)
  # In one vmapped program each run is judged on its own loss.
  states = meta.init_states(learner, opt, jnp.stack([jax.random.key(0), jax.random.key(2)]))
  runs_plain = meta.make_runs_meta_step(full.make(learner, task), opt, donate=False)
  keys = jnp.stack([key, key])
  losses = np.asarray(runs_plain(states, keys, task.data)[1]["loss"])
  bound = float(np.mean(losses))
  assert losses.min() < bound < losses.max()
  runs = meta.make_runs_meta_step(full.make(learner, task), opt, donate=False, max_loss=bound)
  np.testing.assert_array_equal(np.asarray(runs(states, keys, task.data)[1]["finite"]),
                                losses <= bound)


def test_divergence_remedies_clip_warm_up_and_keep_plasticity_nonnegative():
  """meta.clip_norm / warmup_steps / nonnegative: each group clipped on its own, the
  step scaled by (count + 1) / warmup, the named groups projected onto >= 0; per-run
  rates still settable through the chains."""
  learner = learners.flp(nets.regression_mlp((8, 8)), (11,), 2, init_alpha=1e-3)
  lrs = {"ff": 1e-2, "fb": 1e-3, "alpha": 1e-2, "beta": 1e-3}
  opt = meta.make_optimizer(lrs, learner, clip_norm=0.5, warmup_steps=4,
                            nonnegative=("alpha", "alpha_readout"))
  state = meta.init_state(learner, opt, jax.random.key(0))
  grads = jax.tree.map(lambda a: 100.0 * jnp.ones_like(a), state.params)
  params, opt_state = state.params, state.opt_state
  ref_opt = optax.adam(1e-2)
  ref_state = ref_opt.init(params["ff"])
  for t in range(3):
    updates, opt_state = opt.update(grads, opt_state, params)
    clipped = optax.clip_by_global_norm(0.5).update(grads["ff"], None)[0]
    ref, ref_state = ref_opt.update(clipped, ref_state)
    chex.assert_trees_all_close(updates["ff"], jax.tree.map(lambda u: u * (t + 1) / 4, ref),
                                rtol=1e-5)
    params = optax.apply_updates(params, updates)
    for a in jax.tree.leaves(params["alpha"]):  # alpha = 1e-3 minus ~1e-2 steps: clamped
      assert np.all(np.asarray(a) >= 0.0)
  assert np.all(np.asarray(params["alpha"]["1"]) == 0.0)
  assert np.all(np.asarray(params["beta"]["1"]) < state.params["beta"]["1"])  # not projected
  # set_learning_rates reaches the Adam inside the chain: rate 0 freezes ff.
  frozen = meta.set_learning_rates(opt_state, {"ff": 0.0})
  updates, _ = opt.update(grads, frozen, params)
  np.testing.assert_array_equal(updates["ff"][0]["w"], 0.0)
  with pytest.raises(ValueError, match="nonnegative: unknown"):
    meta.make_optimizer(lrs, learner, nonnegative=("gamma",))


def test_nonfinite_backoff_scales_only_its_groups_and_only_on_a_skipped_step():
  """meta.scale_groups as ``on_nonfinite``: a skipped step multiplies the named groups of
  the step's starting parameters by the factor (the optimizer state untouched); a finite
  step gives the same state, bit for bit, as without it; in a vmapped program each run
  is backed off alone."""
  learner = learners.flp(nets.regression_mlp((8, 8)), (11,), 2, init_alpha=1e-3)
  opt = meta.make_optimizer(meta.PAPER_REGRESSION_LRS, learner)
  task = sine.make_task(pool=None, steps_per_function=2, batch_size=4, queries_per_function=3)
  backoff = meta.scale_groups(learner, ("alpha", "alpha_readout"), 0.5)
  plain = meta.make_meta_step(full.make(learner, task), opt, jit=False)
  backed = meta.make_meta_step(full.make(learner, task), opt, jit=False, on_nonfinite=backoff)
  state = meta.init_state(learner, opt, jax.random.key(0))
  chex.assert_trees_all_equal(plain(state, jax.random.key(1), task.data)[0],
                              backed(state, jax.random.key(1), task.data)[0])
  bad = state._replace(params=jax.tree.map(lambda a: a, state.params))
  bad.params["ff"][0]["b"] = bad.params["ff"][0]["b"].at[0].set(jnp.nan)
  new, metrics = backed(bad, jax.random.key(1), task.data)
  assert not bool(metrics["finite"]) and int(metrics["nonfinite_total"]) == 1
  for k in bad.params["alpha"]:  # the hidden layer's ('alpha') and the readout's
    np.testing.assert_array_equal(new.params["alpha"][k], 0.5 * np.asarray(bad.params["alpha"][k]))
  for group in ("ff", "fb", "beta"):
    chex.assert_trees_all_equal(new.params[group], bad.params[group])
  chex.assert_trees_all_equal(new.opt_state.inner_state, bad.opt_state.inner_state)
  # Two runs in one program: run 1 starts non-finite, run 0 does not.
  states = meta.init_states(learner, opt, jnp.stack([jax.random.key(0), jax.random.key(0)]))
  b = states.params["ff"][0]["b"]
  states.params["ff"][0]["b"] = b.at[1, 0].set(jnp.nan)
  runs = meta.make_runs_meta_step(full.make(learner, task), opt, on_nonfinite=backoff,
                                  donate=False)
  new, metrics = runs(states, jnp.stack([jax.random.key(1), jax.random.key(1)]), task.data)
  np.testing.assert_array_equal(np.asarray(metrics["finite"]), [True, False])
  alpha = np.asarray(states.params["alpha"]["1"])
  np.testing.assert_array_equal(new.params["alpha"]["1"][1], 0.5 * alpha[1])
  np.testing.assert_allclose(new.params["alpha"]["1"][0],
                             np.asarray(plain(state, jax.random.key(1), task.data)[0]
                                        .params["alpha"]["1"]), rtol=1e-6)
  with pytest.raises(ValueError, match="unknown meta-parameter groups"):
    meta.scale_groups(learner, ("gamma",), 0.5)
  with pytest.raises(ValueError, match=r"factor: expected a number in \(0, 1\]"):
    meta.scale_groups(learner, ("alpha",), 0.0)
