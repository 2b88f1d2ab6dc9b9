"""The scanned lifetime against a Python loop of steps; checkpointing modes agree."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import learners, lifetime, nets

LAYERS = nets.regression_mlp((8, 8, 12, 8))


def _setup(n_plastic=3, steps=9):
  learner = learners.flp(LAYERS, (5,), n_plastic, init_alpha=0.003)
  params = learner.init_params(jax.random.key(0))
  xs = jax.random.normal(jax.random.key(1), (steps, 4, 5))
  ys = jax.random.normal(jax.random.key(2), (steps, 4, 1))
  return learner, params, xs, ys


def test_scan_equals_python_loop():
  learner, params, xs, ys = _setup()
  fast_scan, _ = jax.jit(lambda p: lifetime.run(learner, p, xs, ys))(params)
  fast = learner.init(params, None)
  step = jax.jit(learner.step)
  for x, y in zip(xs, ys):
    fast = step(params, fast, (learner.encode(params, x), y))
  chex.assert_trees_all_close(fast_scan, fast, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("remat, chunk", [("step", None), ("nested", 3), ("nested", 4), ("nested", None)])
def test_remat_modes_give_the_same_meta_gradient(remat, chunk):
  learner, params, xs, ys = _setup()
  xq = jax.random.normal(jax.random.key(3), (7, 5))

  def loss(p, remat, chunk):
    fast, _ = lifetime.run(learner, p, xs, ys, remat=remat, chunk=chunk)
    return jnp.sum(lifetime.predict(learner, p, fast, xq) ** 2)

  want = jax.grad(loss)(params, "none", None)
  got = jax.jit(jax.grad(loss), static_argnums=(1, 2))(params, remat, chunk)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-6)


def test_observe_stacks_per_step_values():
  learner, params, xs, ys = _setup(steps=6)
  fast, obs = lifetime.run(
      learner, params, xs, ys,
      observe=lambda p, before, after, ex: jnp.sum((after["2"]["w"] - before["2"]["w"]) ** 2))
  assert obs.shape == (6,)
  assert np.all(np.asarray(obs) > 0)


def test_unknown_remat():
  learner, params, xs, ys = _setup()
  with pytest.raises(ValueError, match="unknown remat 'all'"):
    lifetime.run(learner, params, xs, ys, remat="all")


def test_encode_stream_is_the_frozen_trunk():
  learner, params, xs, _ = _setup()
  h = lifetime.encode_stream(learner, params, xs)
  assert h.shape == (9, 4, 8)
  want = nets.apply(LAYERS[:2], params["ff"][:2], xs[2])
  np.testing.assert_allclose(h[2], want, rtol=1e-6)
