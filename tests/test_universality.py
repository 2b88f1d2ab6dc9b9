"""Appendix A's universality argument, checked numerically.

The theory, written as tests: the construction of eq. (6)-(7) is built, a
lifetime of Hebb or Oja updates is run, and the change of a query's
representation is compared with the appendix's first-order expansion (eq. 3)
and decoded back into the training pairs. See `flpjax.universality` for the
conventions and the corrections to the appendix these tests pin down.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import universality as U

RULES = ("hebb", "oja")
ALPHAS = np.logspace(-4, -2, 7)  # two decades


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def _episode(rng, J, d, K, distinct_y=False):
  xs = rng.integers(0, J, K)
  ys = rng.permutation(d)[:K] if distinct_y else rng.integers(0, d, K)
  x_star = int(rng.integers(0, J))
  return xs, ys, x_star


def _inputs(xs, ys, x_star, J, d):
  return U.feature_map(xs, J, d), U.feedback_code(ys, d), U.feature_map(x_star, J, d)


def _code_block(v, J, d):
  return v[1 + J:1 + J + J * J * d].reshape(J, J, d)


def test_codes(x64):
  np.testing.assert_array_equal(U.discretize(jnp.array([0.0, 0.49, 0.5, 0.99, 1.0, -3.0]), 2),
                                [[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 0]])
  J, d = 3, 2
  phi = U.feature_map(jnp.array([2, 0]), J, d)
  assert phi.shape == (2, U.feature_dim(J, d)) == (2, 1 + 2 * J + J * J * d)
  np.testing.assert_array_equal(phi[0, 0], 0.0)
  np.testing.assert_array_equal(phi[0, 1:1 + J], [0, 0, 1])
  np.testing.assert_array_equal(phi[0, 1 + J:-J], 0.0)
  np.testing.assert_array_equal(phi[0, -J:], [0, 0, 1])
  np.testing.assert_array_equal(U.feedback_code(1, d), [0, 1])
  np.testing.assert_array_equal(U.pair_counts(jnp.array([0, 2, 2]), jnp.array([1, 0, 0]), J, d),
                                [[0, 1], [0, 0], [2, 0]])


@pytest.mark.parametrize("J,d", [(2, 3), (3, 2)])
def test_weights_reproduce_maps(x64, J, d):
  c = U.construction(J, d)
  N, D = J * J + 1, U.feature_dim(J, d)
  assert c.W.shape == (N, D, D) and c.G.shape == (N + 1, D, D) and c.B.shape == (N, D, d)
  # G_i = W_{i+1} ... W_N, G_N = I, G_0 the whole product.
  np.testing.assert_allclose(U.maps_from_weights(c.W), c.G, atol=1e-12)
  np.testing.assert_array_equal(c.G[N], np.eye(D))
  np.testing.assert_allclose(np.linalg.multi_dot(list(c.W)), c.G[0], atol=1e-12)
  for j in range(J):
    for l in range(J):
      i = J * j + l + 1
      np.testing.assert_array_equal(c.G[i], U.layer_map(j, l, J, d, c.eps))
      np.testing.assert_array_equal(c.B[i - 1], U.layer_feedback(j, l, J, d))
  # The input-side layer has no feedback, so no rule ever changes it.
  np.testing.assert_array_equal(c.B[N - 1], 0.0)
  # W_i (i < N) is the identity on the code block, so G_0 G_{i-1}^{-1} B_i = B_i exactly.
  code = slice(1 + J, 1 + J + J * J * d)
  np.testing.assert_allclose(c.W[:-1, :, code],
                             np.broadcast_to(np.eye(D)[:, code], (N - 1, D, J * J * d)), atol=1e-12)
  reach = np.linalg.solve(np.swapaxes(c.G[:-1], 1, 2), np.broadcast_to(c.G[0].T, (N, D, D)))
  np.testing.assert_allclose(np.swapaxes(reach, 1, 2) @ c.B, c.B, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_activations_nonnegative_and_relu_is_identity(x64, rule):
  J, d, K = 3, 2, 5
  c = U.construction(J, d)
  rng = np.random.default_rng(0)
  xs, ys, x_star = _episode(rng, J, d, K)
  phis, varphis, phi_star = _inputs(xs, ys, x_star, J, d)
  alpha = 1e-2
  w_k, trace = U.run_lifetime(c.W, c.B, phis, varphis, alpha, rule)
  _, query_pre = U.forward(w_k, phi_star)
  for acts in (trace.pre, trace.post, trace.out, query_pre):
    assert float(jnp.min(acts)) >= -1e-12
  # ... so the ReLUs the appendix drops change nothing.
  z = U.exact_query(c.W, c.B, phis, varphis, phi_star, alpha, rule)
  z_relu = U.exact_query(c.W, c.B, phis, varphis, phi_star, alpha, rule, relu=True)
  np.testing.assert_allclose(z_relu, z, atol=1e-12)


def test_first_order_code_by_hand(x64):
  """J = d = 2, x* in bin 0, one training pair: the slots eq. (3) writes to."""
  J, d, eps = 2, 2, 0.1
  c = U.construction(J, d, eps)
  kappa = (1 + eps) ** 2 + eps ** 2
  phi_star = U.feature_map(0, J, d)

  def code(x, y):
    first = U.first_order_term(c.W, c.B, U.feature_map(jnp.array([x]), J, d),
                               U.feedback_code(jnp.array([y]), d), phi_star, 1.0, "hebb")
    return np.asarray(_code_block(first, J, d))

  # x in another bin: varphi(y) in slots (0, 1) and (1, 0) only.
  expected = np.zeros((J, J, d))
  expected[0, 1, 1] = expected[1, 0, 1] = 1.0
  np.testing.assert_allclose(code(1, 1), expected, atol=1e-12)
  # x in x*'s bin: (1 + kappa) varphi(y) where bin 0 is in {j, l}, kappa elsewhere.
  expected = np.zeros((J, J, d))
  expected[0, 0, 0] = expected[0, 1, 0] = expected[1, 0, 0] = 1 + kappa
  expected[1, 1, 0] = kappa
  np.testing.assert_allclose(code(0, 0), expected, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_first_order_term_is_slot_code(x64, rule):
  J, d, K = 3, 2, 5
  c = U.construction(J, d)
  rng = np.random.default_rng(1)
  for _ in range(3):
    xs, ys, x_star = _episode(rng, J, d, K)
    phis, varphis, phi_star = _inputs(xs, ys, x_star, J, d)
    first = U.first_order_term(c.W, c.B, phis, varphis, phi_star, 1.0, rule)
    np.testing.assert_allclose(_code_block(first, J, d), U.slot_code(xs, ys, x_star, J, d, c.eps),
                               atol=1e-12)
    # Nothing outside the code block: Oja's decay term (5) vanishes, x* is untouched.
    outside = first.at[1 + J:1 + J + J * J * d].set(0.0)
    np.testing.assert_allclose(outside, 0.0, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_remainder_is_second_order_for_generic_weights(x64, rule):
  """Eq. (3) itself: for generic non-negative weights the remainder is O(alpha^2)."""
  rng = np.random.default_rng(2)
  N, D, d, K = 4, 6, 3, 3
  W = jnp.asarray(0.5 * np.eye(D) + rng.uniform(0, 0.1, (N, D, D)))
  B = jnp.asarray(rng.uniform(0, 1, (N, D, d)))
  phis = jnp.asarray(rng.uniform(0, 1, (K, D)))
  varphis = jnp.asarray(rng.uniform(0, 1, (K, d)))
  phi_star = jnp.asarray(rng.uniform(0, 1, D))
  curve = U.remainder_curve(W, B, phis, varphis, phi_star, jnp.asarray(ALPHAS), rule)
  assert np.all(np.asarray(curve.first_order) > 0)
  assert 0.98 < U.loglog_slope(curve.alphas, curve.first_order) < 1.02
  assert 0.95 < U.loglog_slope(curve.alphas, curve.change) < 1.05
  assert 1.8 < U.loglog_slope(curve.alphas, curve.remainder) < 2.2
  assert np.all(np.asarray(curve.remainder) < 0.1 * np.asarray(curve.change))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("J,d,K", [(2, 3, 4), (3, 2, 5)])
def test_remainder_slope_in_construction(x64, J, d, K, rule):
  """Oja: slope 2 (a y bin repeats); Hebb: slope 3, the alpha^2 term vanishes."""
  c = U.construction(J, d)
  rng = np.random.default_rng(3)
  xs, ys, x_star = _episode(rng, J, d, K)
  assert len(set(ys.tolist())) < K  # some y bin repeats (K > d)
  phis, varphis, phi_star = _inputs(xs, ys, x_star, J, d)
  curve = U.remainder_curve(c.W, c.B, phis, varphis, phi_star, jnp.asarray(ALPHAS), rule)
  assert np.all(np.asarray(curve.first_order) > 0)
  assert 0.98 < U.loglog_slope(curve.alphas, curve.first_order) < 1.02
  assert 0.95 < U.loglog_slope(curve.alphas, curve.change) < 1.05
  slope = U.loglog_slope(curve.alphas, curve.remainder)
  if rule == "oja":
    assert 1.8 < slope < 2.2
  else:
    assert 2.8 < slope < 3.2
  assert np.all(np.asarray(curve.remainder) < 0.1 * np.asarray(curve.change))


def test_oja_second_order_coefficient(x64):
  J, d, K = 3, 2, 5
  c = U.construction(J, d)
  rng = np.random.default_rng(4)
  xs, ys, x_star = _episode(rng, J, d, K)
  phis, varphis, phi_star = _inputs(xs, ys, x_star, J, d)
  alpha = 1e-5
  z = U.exact_query(c.W, c.B, phis, varphis, phi_star, alpha, "oja")
  rest = z - U.forward(c.W, phi_star)[0] - U.first_order_term(c.W, c.B, phis, varphis, phi_star,
                                                               alpha, "oja")
  coeff = U.oja_second_order_code(xs, ys, x_star, J, d, c.eps)
  assert float(jnp.max(jnp.abs(coeff))) > 1.0
  np.testing.assert_allclose(_code_block(rest, J, d) / alpha ** 2, coeff, atol=1e-2)


@pytest.mark.parametrize("rule", RULES)
def test_single_step_is_exactly_linear(x64, rule):
  J, d = 2, 3
  c = U.construction(J, d)
  for x, y, x_star in [(0, 2, 0), (1, 0, 0)]:
    phis, varphis, phi_star = _inputs(jnp.array([x]), jnp.array([y]), x_star, J, d)
    curve = U.remainder_curve(c.W, c.B, phis, varphis, phi_star, jnp.asarray(ALPHAS), rule)
    assert np.all(np.asarray(curve.remainder) < 1e-12 * np.asarray(curve.change))


def test_oja_equals_hebb_when_y_bins_distinct(x64):
  J, d, K = 2, 3, 3
  c = U.construction(J, d)
  rng = np.random.default_rng(5)
  xs, ys, x_star = _episode(rng, J, d, K, distinct_y=True)
  phis, varphis, phi_star = _inputs(xs, ys, x_star, J, d)
  hebb = U.exact_query(c.W, c.B, phis, varphis, phi_star, 0.1, "hebb")
  oja = U.exact_query(c.W, c.B, phis, varphis, phi_star, 0.1, "oja")
  np.testing.assert_allclose(oja, hebb, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("J,d,K", [(2, 3, 4), (3, 2, 5)])
def test_decoder_recovers_query_and_training_pairs(x64, J, d, K, rule):
  c = U.construction(J, d)
  rng = np.random.default_rng(6)
  alpha = 1e-6
  for _ in range(4):
    xs, ys, x_star = _episode(rng, J, d, K)
    phis, varphis, phi_star = _inputs(xs, ys, x_star, J, d)
    truth = np.asarray(U.pair_counts(xs, ys, J, d))
    z0 = U.forward(c.W, phi_star)[0]
    expansion = z0 + U.first_order_term(c.W, c.B, phis, varphis, phi_star, alpha, rule)
    network = U.exact_query(c.W, c.B, phis, varphis, phi_star, alpha, rule)
    for z in (expansion, network):
      out = U.decode(z, alpha, J, d, c.eps)
      assert int(out.x_star) == x_star
      np.testing.assert_allclose(out.counts, truth, atol=1e-3)  # O(alpha K^2) for Oja
      np.testing.assert_array_equal(np.round(np.asarray(out.counts)), truth)


def test_literal_transpose_reading_cannot_decode(x64):
  """With prod_{j>i} W_j = (eq. 6 matrix)^T, pairs outside x*'s bin leave no trace."""
  J, d = 3, 2
  c = U.construction(J, d)
  W_literal = U.weights_from_maps(jnp.swapaxes(c.G, 1, 2))
  np.testing.assert_allclose(U.maps_from_weights(W_literal), jnp.swapaxes(c.G, 1, 2), atol=1e-12)
  ys, x_star, alpha = jnp.array([0, 1, 1]), 0, 1e-6
  phi_star = U.feature_map(x_star, J, d)
  zs = []
  for xs in (jnp.array([1, 2, 0]), jnp.array([2, 2, 0]), jnp.array([1, 1, 0])):
    z = U.exact_query(W_literal, c.B, U.feature_map(xs, J, d), U.feedback_code(ys, d), phi_star,
                      alpha, "hebb")
    zs.append(z)
    # The construction as corrected tells these training sets apart.
    z_ok = U.exact_query(c.W, c.B, U.feature_map(xs, J, d), U.feedback_code(ys, d), phi_star,
                         alpha, "hebb")
    np.testing.assert_array_equal(np.round(np.asarray(U.decode(z_ok, alpha, J, d, c.eps).counts)),
                                  U.pair_counts(xs, ys, J, d))
  for z in zs[1:]:
    assert float(jnp.max(jnp.abs(z - zs[0]))) / alpha < 1e-3


def test_remainder_curve_plot(x64, tmp_path):
  J, d = 2, 2
  c = U.construction(J, d)
  phis, varphis, phi_star = _inputs(jnp.array([0, 1, 1]), jnp.array([1, 1, 0]), 1, J, d)
  curves = {rule: U.remainder_curve(c.W, c.B, phis, varphis, phi_star, jnp.asarray(ALPHAS), rule)
            for rule in RULES}
  path = tmp_path / "remainder.png"
  U.plot_remainder_curves(curves, str(path))
  assert path.stat().st_size > 0
