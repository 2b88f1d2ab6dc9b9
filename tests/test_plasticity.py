"""Local rules against a float64 NumPy loop over synapses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import plasticity


def _loop_reference(rule, w, pre, post, alpha):
  """Synapse by synapse: w_ij += alpha_ij * sum_b (post_bi pre_bj - [oja] post_bi^2 w_ij)."""
  out = w.copy()
  for i in range(w.shape[0]):
    for j in range(w.shape[1]):
      d = 0.0
      for b in range(pre.shape[0]):
        d += post[b, i] * pre[b, j]
        if rule == "oja":
          d -= post[b, i] ** 2 * w[i, j]
      out[i, j] = w[i, j] + alpha[i, j] * d
  return out


@pytest.mark.parametrize("rule", ["oja", "hebb"])
@pytest.mark.parametrize("batch", [1, 4])
def test_rule_matches_synapse_loop(rule, batch):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(5, 3))
  pre = rng.normal(size=(batch, 3))
  post = rng.normal(size=(batch, 5))
  alpha = rng.uniform(0, 0.1, size=(5, 3))
  with jax.enable_x64(True):
    got = jax.jit(plasticity.get_rule(rule))(*(jnp.asarray(a) for a in (w, pre, post, alpha)))
  np.testing.assert_allclose(got, _loop_reference(rule, w, pre, post, alpha), rtol=1e-13)


def test_zero_plasticity_is_identity():
  w = jnp.arange(6.0).reshape(2, 3)
  out = plasticity.oja(w, jnp.ones((4, 3)), jnp.ones((4, 2)), jnp.zeros((2, 3)))
  np.testing.assert_array_equal(out, w)


def test_oja_fixed_point_is_normalised():
  """One post unit driven by its own input converges to a unit-norm weight vector (Oja 1982)."""
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=(1, 4)) * 0.1, jnp.float32)
  cov = np.diag([3.0, 1.0, 0.5, 0.1])
  xs = jnp.asarray(rng.multivariate_normal(np.zeros(4), cov, size=4000), jnp.float32)
  for x in xs:
    x = x[None]
    w = plasticity.oja(w, x, x @ w.T, 0.01)
  np.testing.assert_allclose(np.linalg.norm(w), 1.0, atol=0.05)
  assert abs(float(w[0, 0])) > 0.95  # the principal component


def test_unknown_rule():
  with pytest.raises(ValueError, match=r"unknown plasticity rule 'bcm'; expected one of \['hebb', 'oja', 'oja_stable'\]"):
    plasticity.get_rule("bcm")


def test_oja_stable_is_oja_below_the_bound_and_bounds_the_decay_above():
  rng = np.random.default_rng(3)
  w = rng.normal(size=(4, 3))
  pre, post = rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
  small = np.full((4, 3), 1e-3)  # alpha * sum_b post^2 < 1 everywhere
  with jax.enable_x64(True):
    np.testing.assert_allclose(plasticity.oja_stable(w, pre, post, small),
                               plasticity.oja(w, pre, post, small), rtol=1e-12)
    big = np.full((4, 3), 10.0)  # alpha D > 2: Oja flips and grows the weights
    got = np.asarray(plasticity.oja_stable(w, pre, post, big))
    decay = (post ** 2).sum(0)[:, None]
    want = w + big * (post.T @ pre) - np.minimum(big * decay, 1.0) * w  # loop-free reference
    np.testing.assert_allclose(got, want, rtol=1e-12)
    full = (big * decay >= 1.0)[:, 0]  # there the decay removes w exactly, no sign flip
    assert full.any()
    np.testing.assert_allclose(got[full], (big * (post.T @ pre))[full], rtol=1e-12)
    np.testing.assert_allclose(
        plasticity.get_rule("oja_stable", increment=True)(w, pre, post, big), got - w,
        rtol=1e-12, atol=1e-12)
