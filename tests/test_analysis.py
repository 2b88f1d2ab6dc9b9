"""Figure 2 analyses and the Section 7.1 helper on cases with known answers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
from flpjax import analysis, evaluate, learners, lifetime, meta, nets
from flpjax.estimators import full
from flpjax.tasks import base, sine

WIDTHS = (7, 6, 9, 5)
IN = 4
LAYERS = nets.regression_mlp(WIDTHS)
WIDE = nets.regression_mlp((16, 16, 16, 16))  # no layer dies on a small batch


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), tree)


def _stream(rng, steps=6, batch=3, outputs=1):
  return rng.normal(size=(steps, batch, IN)), rng.normal(size=(steps, batch, outputs))


def _random_flp(learner, rng):
  """Float64 FLP meta-parameters away from every kink and zero."""
  p = jax.tree.map(np.asarray, learner.init_params(jax.random.key(0)))
  for layer in p["ff"]:
    layer["b"] = rng.normal(size=layer["b"].shape) * 0.1
  for k in p["alpha"]:
    p["alpha"][k] = rng.uniform(0, 0.02, size=p["alpha"][k].shape)
  for k in p["fb"]:
    p["fb"][k]["c"] = rng.normal(size=p["fb"][k]["c"].shape) * 0.2
  for k in p["beta"]:
    p["beta"][k] = np.float64(rng.uniform(0.2, 0.9))
  return _f64(p)


# ----------------------------------------------------------------------------- Figure 2A


@pytest.mark.parametrize("make", [
    lambda: learners.flp(LAYERS, (IN,), 2),
    lambda: learners.gradient(LAYERS, (IN,), 1, reset_readout=True),
], ids=["flp", "gradient-reset"])
def test_readout_features_are_the_penultimate_activity(make):
  learner = make()
  params = learner.init_params(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (10, IN))
  want = nets.apply(LAYERS[:-1], params["ff"][:-1], x)
  np.testing.assert_allclose(analysis.readout_features(learner, params, x), want, rtol=1e-6)
  # With learned fast weights: the penultimate activity of the adapted network.
  rng = np.random.default_rng(0)
  xs, ys = _stream(rng)
  fast, _ = lifetime.run(learner, params, jnp.asarray(xs, jnp.float32),
                         jnp.asarray(ys, jnp.float32), key=jax.random.key(2))
  ff = [dict(p) for p in params["ff"]]
  for l in learner.plastic_layers:
    ff[l].update(fast[str(l)])
  np.testing.assert_allclose(analysis.readout_features(learner, params, x, fast),
                             nets.apply(LAYERS[:-1], ff[:-1], x), rtol=1e-5, atol=1e-6)


def test_least_squares_fit_recovers_an_exact_linear_readout():
  rng = np.random.default_rng(1)
  h = jnp.asarray(rng.normal(size=(200, 12)), jnp.float32)
  w_true, b_true = rng.normal(size=(3, 12)), rng.normal(size=3)
  y = h @ w_true.T + b_true
  w, b = analysis.fit_readout(h, y, jnp.asarray(rng.normal(size=(3, 12)), jnp.float32),
                              jnp.zeros(3))
  np.testing.assert_allclose(w, w_true, atol=2e-4)
  np.testing.assert_allclose(b, b_true, atol=2e-4)


def test_least_squares_fit_is_the_limit_of_gradient_descent_from_the_initial_readout():
  """Rank-deficient features (a dead unit, a duplicated unit): GD keeps the null space of w0."""
  rng = np.random.default_rng(2)
  h = rng.normal(size=(40, 5))
  h = np.concatenate([h, np.zeros((40, 1)), h[:, :1]], axis=1)        # (40, 7), rank 5 (+1 bias)
  y = rng.normal(size=(40, 2))
  w0, b0 = rng.normal(size=(2, 7)), rng.normal(size=2)
  w, b = w0.copy(), b0.copy()
  for _ in range(20000):                                              # full-batch GD on the MSE
    r = h @ w.T + b - y
    w -= 0.05 * r.T @ h / 40
    b -= 0.05 * r.mean(0)
  with jax.enable_x64(True):
    got_w, got_b = analysis.fit_readout(*_f64((h, y, w0, b0)))
    ridge_w, ridge_b = analysis.fit_readout(*_f64((h, y, w0, b0)), ridge=1e-3)
  np.testing.assert_allclose(got_w, w, atol=1e-9)
  np.testing.assert_allclose(got_b, b, atol=1e-9)
  np.testing.assert_allclose(got_w[:, 5], w0[:, 5])                   # the dead unit: untouched
  # ridge > 0: theta0 + (X^T X + lambda I)^-1 X^T (Y - X theta0), lambda = ridge * s_max^2.
  x = np.concatenate([h, np.ones((40, 1))], axis=1)
  theta0 = np.concatenate([w0.T, b0[None]])
  lam = 1e-3 * np.linalg.norm(x, 2) ** 2
  theta = theta0 + np.linalg.solve(x.T @ x + lam * np.eye(8), x.T @ (y - x @ theta0))
  np.testing.assert_allclose(ridge_w, theta[:7].T, rtol=1e-9)
  np.testing.assert_allclose(ridge_b, theta[7], rtol=1e-9)


def test_softmax_fit_converges():
  """Separable labels: the penalised cross-entropy's gradient vanishes and training error is 0."""
  rng = np.random.default_rng(3)
  h = jnp.asarray(rng.normal(size=(25, 16)), jnp.float32)
  labels = jnp.argmax(h @ jnp.asarray(rng.normal(size=(5, 16)), jnp.float32).T, axis=1)
  w0, b0 = jnp.asarray(0.1 * rng.normal(size=(20, 16)), jnp.float32), jnp.zeros(20)
  w, b = analysis.fit_readout(h, labels, w0, b0, output="classification", method="softmax",
                              l2=1e-2, iterations=100)

  def objective(w, b):
    logp = jax.nn.log_softmax(h @ w.T + b, axis=-1)
    ce = -jnp.mean(logp[jnp.arange(25), labels])
    return ce + 0.5e-2 * (jnp.sum((w - w0) ** 2) + jnp.sum(b ** 2))

  gw, gb = jax.grad(objective, argnums=(0, 1))(w, b)
  assert max(float(jnp.abs(gw).max()), float(jnp.abs(gb).max())) < 1e-4
  assert float(objective(w, b)) < float(objective(w0, b0)) - 1.0
  np.testing.assert_array_equal(jnp.argmax(h @ w.T + b, axis=1), labels)


def test_fit_readout_rejects_bad_options():
  h, y = jnp.ones((4, 3)), jnp.ones((4, 1))
  with pytest.raises(ValueError, match="unknown readout fit 'lbfgs'"):
    analysis.fit_readout(h, y, jnp.zeros((1, 3)), jnp.zeros(1), method="lbfgs")
  with pytest.raises(ValueError, match="softmax readout fit is for classification"):
    analysis.fit_readout(h, y, jnp.zeros((1, 3)), jnp.zeros(1), method="softmax")


@pytest.mark.parametrize("make", [
    lambda: learners.flp(WIDE, (IN,), 3, init_alpha=1e-3),
    lambda: learners.gradient(WIDE, (IN,), 2, lr=0.1),
], ids=["flp", "gradient"])
def test_frozen_readout_is_exact_for_a_target_linear_in_the_initial_features(make):
  """Targets = a linear function of the *initial* penultimate features: MSE ~ 0.

  The same lifetime run through the plastic network itself does not fit it.
  """
  learner = make()
  params = learner.init_params(jax.random.key(0))
  xs = jax.random.normal(jax.random.key(1), (20, 8, IN))
  xq = jax.random.normal(jax.random.key(2), (30, IN))
  w_true = jax.random.normal(jax.random.key(3), (1, 16))
  target = lambda x: nets.apply(WIDE[:-1], params["ff"][:-1], x) @ w_true.T + 0.7
  episode = lifetime.Episode(xs, target(xs.reshape(-1, IN)).reshape(20, 8, 1), xq, target(xq))
  assert float(jnp.var(episode.yq)) > 0.1
  got = jax.jit(lambda p, e: analysis.frozen_readout(learner, p, e))(params, episode)
  assert float(got["mse"]) < 1e-8 * float(jnp.var(episode.yq))
  learned = base.metrics("regression", lifetime.predict(
      learner, params, lifetime.run(learner, params, xs, episode.ys)[0], xq), episode.yq)
  assert float(learned["mse"]) > 1e-3


def test_frozen_readout_classification():
  """Labels linearly separable in the initial features: the softmax readout gets them all."""
  layers = nets.regression_mlp((8, 12), outputs=10)
  learner = learners.flp(layers, (IN,), 2, output="classification", signal="target",
                         clamp_readout=True, init_beta=1.0)
  params = learner.init_params(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (25, IN))
  w_true = jax.random.normal(jax.random.key(2), (5, 12))
  labels = jnp.argmax(nets.apply(layers[:-1], params["ff"][:-1], x) @ w_true.T, axis=1)
  episode = lifetime.Episode(x[:, None], labels[:, None], x, labels)
  got = analysis.frozen_readout(learner, params, episode, output="classification",
                                method="softmax", l2=1e-4, iterations=300)
  assert float(got["error"]) == 0.0
  least_squares = analysis.frozen_readout(learner, params, episode, output="classification")
  assert set(least_squares) == {"accuracy", "error", "loss"}
  assert 0.0 <= float(least_squares["error"]) <= 1.0


# ----------------------------------------------------------------------------- Figure 2B


def test_zero_plasticity_gives_no_interference_no_update_and_undefined_alignment():
  episode = sine.sample_episode(jax.random.key(0), order="continual", n_functions=4,
                                steps_per_function=3, batch_size=5, queries_per_function=4)
  layers = nets.regression_mlp((8, 8))
  for learner in [learners.flp(layers, (5,), 3, init_alpha=0.0),
                  learners.gradient(layers, (5,), 3, lr=0.0)]:
    params = learner.init_params(jax.random.key(1))
    got = analysis.interference(learner, params, episode, 4)
    assert got.shape == (4,) and np.isnan(got[0])
    np.testing.assert_array_equal(got[1:], 0.0)
    norms = analysis.update_norms(learner, params, episode.xs, episode.ys)
    assert norms.shape == (12, 3)
    np.testing.assert_array_equal(norms, 0.0)
    assert np.all(np.isnan(analysis.gradient_alignment(learner, params, episode.xs, episode.ys)))


def test_interference_of_sgd_matches_numpy():
  """Gradient learner, 3 functions x 2 steps: outputs on earlier functions' queries, by hand."""
  rng = np.random.default_rng(4)
  f, s, q = 3, 2, 4
  with jax.enable_x64(True):
    learner = learners.gradient(LAYERS, (IN,), 2, lr=0.2)
    params = _f64(learner.init_params(jax.random.key(0)))
    xs, ys = _stream(rng, steps=f * s)
    xq = rng.normal(size=(f * q, IN))
    episode = lifetime.Episode(*_f64((xs, ys, xq, np.zeros((f * q, 1)))))
    got = jax.jit(lambda p, e: analysis.interference(learner, p, e, f))(params, episode)
  ws = [np.asarray(p["w"]) for p in params["ff"]]
  bs = [np.asarray(p["b"]) for p in params["ff"]]
  acts = [l.activation for l in LAYERS]
  outputs = [ref.forward(ws, bs, xq, acts)[-1]]
  for k in range(f * s):
    ws, bs = ref.sgd_step(ws, bs, acts, learner.plastic_layers, 0.2, xs[k], ys[k])
    if (k + 1) % s == 0:
      outputs.append(ref.forward(ws, bs, xq, acts)[-1])
  want = [np.nan] + [np.mean((outputs[j + 1][: j * q] - outputs[j][: j * q]) ** 2)
                     for j in range(1, f)]
  assert want[1] > 1e-4
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_interference_rejects_uneven_blocks():
  learner = learners.flp(LAYERS, (IN,), 1)
  params = learner.init_params(jax.random.key(0))
  episode = lifetime.Episode(jnp.zeros((7, 2, IN)), jnp.zeros((7, 2, 1)), jnp.zeros((6, IN)),
                             jnp.zeros((6, 1)))
  with pytest.raises(ValueError, match="7 steps do not split into 3 equal blocks"):
    analysis.interference(learner, params, episode, 3)
  with pytest.raises(ValueError, match="6 query examples do not split into 4 functions"):
    analysis.interference(learner, params, episode, 4)


# ----------------------------------------------------------------------------- Figure 2C, 2D


@pytest.mark.parametrize("output", ["regression", "classification"])
def test_sgd_updates_are_exactly_aligned_with_the_negative_gradient(output):
  rng = np.random.default_rng(5)
  layers = nets.regression_mlp((16, 16, 16, 16), outputs=1 if output == "regression" else 6)
  with jax.enable_x64(True):
    learner = learners.gradient(layers, (IN,), 4, lr=0.05, output=output)
    params = _f64(learner.init_params(jax.random.key(0)))
    xs = jnp.asarray(rng.normal(size=(8, 6, IN)))
    ys = (jnp.asarray(rng.normal(size=(8, 6, 1))) if output == "regression"
          else jnp.asarray(rng.integers(0, 6, size=(8, 6))))
    cos = analysis.gradient_alignment(learner, params, xs, ys, output=output)
  assert cos.shape == (8, 4)
  np.testing.assert_allclose(cos, 1.0, atol=1e-12)


def test_alignment_and_update_norms_match_numpy_for_a_tiny_flp_network():
  rng = np.random.default_rng(6)
  with jax.enable_x64(True):
    learner = learners.flp(LAYERS, (IN,), 3)
    params = _random_flp(learner, rng)
    xs, ys = _stream(rng, steps=7)
    cos = analysis.gradient_alignment(learner, params, *_f64((xs, ys)))
    norms = analysis.update_norms(learner, params, *_f64((xs, ys)))
    rel = analysis.update_norms(learner, params, *_f64((xs, ys)), relative=True)
  ws = [np.asarray(p["w"]) for p in params["ff"]]
  bs = [np.asarray(p["b"]) for p in params["ff"]]
  acts = [l.activation for l in LAYERS]
  plastic = learner.plastic_layers
  alpha = {int(k): np.asarray(v) for k, v in params["alpha"].items()}
  fb = {int(k): (np.asarray(v["B"]), np.asarray(v["c"])) for k, v in params["fb"].items()}
  beta = {int(k): np.asarray(v) for k, v in params["beta"].items()}
  want_cos, want_norm, want_rel = [], [], []
  for x, y in zip(xs, ys):
    new = ref.flp_step(ws, bs, acts, plastic, alpha, fb, beta, x, y)
    sgd, _ = ref.sgd_step(ws, bs, acts, plastic, 1.0, x, y)          # w - dL/dw
    row_cos, row_norm, row_rel = [], [], []
    for l in plastic:
      dw, neg_grad = new[l] - ws[l], sgd[l] - ws[l]
      row_cos.append(np.sum(dw * neg_grad) / np.linalg.norm(dw) / np.linalg.norm(neg_grad))
      row_norm.append(np.linalg.norm(dw))
      row_rel.append(np.linalg.norm(dw) / np.linalg.norm(ws[l]))
    want_cos.append(row_cos)
    want_norm.append(row_norm)
    want_rel.append(row_rel)
    ws = new
  assert np.ptp(want_cos) > 0.1                                       # a non-trivial case
  np.testing.assert_allclose(cos, want_cos, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(norms, want_norm, rtol=1e-10)
  np.testing.assert_allclose(rel, want_rel, rtol=1e-10)


# ----------------------------------------------------------------------------- lifetimes, 7.1


def test_map_lifetimes_draws_the_lifetimes_of_evaluate():
  task = sine.make_task(pool=None, n_functions=3, steps_per_function=2, batch_size=4,
                        queries_per_function=3)
  learner = learners.flp(nets.regression_mlp((8, 8)), (4,), 2, init_alpha=0.01)
  params = learner.init_params(jax.random.key(0))

  def mse(params, episode, key):
    fast, _ = lifetime.run(learner, params, episode.xs, episode.ys, key=key)
    return jnp.mean((lifetime.predict(learner, params, fast, episode.xq) - episode.yq) ** 2)

  got = analysis.map_lifetimes(mse, params, task, jax.random.key(5), lifetimes=5, batch=2)
  want = evaluate.evaluate(learner, task, params, jax.random.key(5), lifetimes=5, batch=3)
  np.testing.assert_allclose(got, want["per_lifetime"]["mse"], rtol=1e-5)


def test_extend_plasticity_keeps_ff_bit_identical_while_the_rest_moves():
  layers = nets.regression_mlp((8, 8, 8))
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 20), n_functions=3,
                        steps_per_function=2, batch_size=4, queries_per_function=4)
  reuse = learners.flp(layers, (4,), 1)
  source = reuse.init_params(jax.random.key(2))
  source["alpha"]["3"] = jnp.full_like(source["alpha"]["3"], 0.01)    # a "trained" readout
  source["beta"]["3"] = jnp.asarray(0.3, jnp.float32)
  flp3 = learners.flp(layers, (4,), 3)
  lrs = {"ff": 1e-3, "fb": 1e-3, "alpha": 1e-3, "beta": 1e-3}
  params, new_lrs = analysis.extend_plasticity(flp3, source, jax.random.key(3), lrs)
  assert new_lrs == dict(lrs, ff=0.0) and lrs["ff"] == 1e-3
  assert set(params["alpha"]) == {"1", "2", "3"}
  np.testing.assert_array_equal(params["alpha"]["3"], source["alpha"]["3"])
  assert float(params["beta"]["3"]) == pytest.approx(0.3)
  opt = meta.make_optimizer(new_lrs, flp3)
  state = meta.init_state(flp3, opt, jax.random.key(0), params)
  start = jax.tree.map(np.asarray, state.params)
  step = meta.make_meta_step(full.make(flp3, task), opt)
  for i in range(3):
    state, metrics = step(state, jax.random.key(10 + i), task.data)
    assert bool(metrics["finite"])
  chex.assert_trees_all_equal(state.params["ff"], source["ff"])
  for group in ("fb", "alpha", "beta"):
    for path, before in jax.tree_util.tree_leaves_with_path(start[group]):
      after = dict(jax.tree_util.tree_leaves_with_path(state.params[group]))[path]
      assert not np.array_equal(before, after), (group, path)


def test_extend_plasticity_rejects_another_network():
  source = learners.flp(nets.regression_mlp((8, 8)), (4,), 1).init_params(jax.random.key(0))
  with pytest.raises(ValueError, match="feed-forward network does not match"):
    analysis.extend_plasticity(learners.flp(nets.regression_mlp((8, 9)), (4,), 2), source,
                               jax.random.key(1), meta.PAPER_REGRESSION_LRS)
  wrong = dict(source, alpha={"2": jnp.zeros((1, 3))})  # the readout's plasticity, misshapen
  with pytest.raises(ValueError, match=r"source alpha\['2'\] does not match"):
    analysis.extend_plasticity(learners.flp(nets.regression_mlp((8, 8)), (4,), 2),
                               wrong, jax.random.key(1), meta.PAPER_REGRESSION_LRS)


def test_periodicity_is_the_one_way_anova_over_steps_within_a_function():
  from scipy import stats  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  curve = rng.normal(size=60)
  groups = curve.reshape(5, 12).T  # 5 functions of 12 steps: group by step within function
  assert analysis.periodicity(curve, 12) == pytest.approx(stats.f_oneway(*groups).pvalue,
                                                           rel=1e-12)
  # A profile that repeats every function, under noise: periodic; the same noise alone
  # (no function structure) is below 0.01 about 1% of the time.
  profile = np.linspace(0.8, -0.1, 12)
  assert analysis.periodicity(np.tile(profile, 5) + 0.05 * curve, 12) < 1e-6
  p = [analysis.periodicity(rng.normal(size=60), 12) for _ in range(400)]
  assert 0.0 <= np.mean(np.asarray(p) < 0.01) < 0.03 and 0.4 < np.median(p) < 0.6
  # A change from one function to the next, steady within each, is not periodic.
  assert analysis.periodicity(np.repeat(np.arange(5.0), 12), 12) == 1.0
  with_nan = np.tile(profile, 5) + 0.05 * curve
  with_nan[3] = np.nan
  assert analysis.periodicity(with_nan, 12) < 1e-6
  with pytest.raises(ValueError, match="multiple of period=7"):
    analysis.periodicity(curve, 7)
  assert np.isnan(analysis.periodicity(curve[:12], 12))
