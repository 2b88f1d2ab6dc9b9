"""flpjax/baselines.py: the no-learning levels, against NumPy on the same lifetimes."""

import math

import jax
import numpy as np
import pytest

from flpjax import baselines
from flpjax.tasks import fewshot, sine


def test_family_mean_is_the_family_expectation():
  x = np.linspace(-5, 5, 11)
  np.testing.assert_allclose(sine.family_mean(x), 2.6 * (2 / math.pi) * np.cos(x), rtol=1e-5)
  # Monte Carlo over the family: E[A sin(x + phi)].
  fns = sine.sample_functions(jax.random.key(0), 200_000)
  mc = np.mean(np.asarray(fns.amplitude)[:, None] * np.sin(x[None] + np.asarray(fns.phase)[:, None]), 0)
  np.testing.assert_allclose(sine.family_mean(x), mc, atol=0.02)


def test_sine_no_learning_level_is_3_12_and_uses_the_evaluation_lifetimes():
  task = sine.make_task(pool=None, n_functions=5, steps_per_function=2, batch_size=4,
                        queries_per_function=32)
  key = jax.random.key(3)
  out = baselines.no_learning(task, key, 400)["family_mean"]
  # E[(A sin(x+phi) - m(x))^2] = E[A^2]/2 - E[m(x)^2], E[A^2] = 8.843, m = 2.6 (2/pi) cos x,
  # E[cos^2 x] = 1/2 + sin(10)/20 over [-5, 5): 4.4217 - 1.2954 = 3.126 (not 3.05, which
  # takes E[cos^2 x] = 1/2).
  exact = ((0.1 ** 2 + 0.1 * 5.1 + 5.1 ** 2) / 3 / 2
           - 2.6 ** 2 * 4 / math.pi ** 2 * (0.5 + math.sin(10.0) / 20))
  assert exact == pytest.approx(3.126, abs=1e-3)
  assert out["mean"] == pytest.approx(exact, abs=3 * out["stderr"])
  # Lifetime i is the one evaluate.evaluate draws from split(key, n)[i].
  k_episode = jax.random.split(jax.random.split(key, 400)[7])[0]
  e = task.sample(k_episode, task.data)
  y, m = np.asarray(e.yq)[:, 0], 2.6 * 2 / math.pi * np.cos(np.asarray(e.xq)[:, -1])
  assert out["per_lifetime"][7] == pytest.approx(np.mean((y - m) ** 2), rel=1e-5)


def test_pixel_prototype_against_numpy():
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(6, 2, 4, 4, 1)).astype(np.float32)
  ys = rng.integers(0, 3, size=(6, 2))
  xq = rng.normal(size=(9, 4, 4, 1)).astype(np.float32)
  yq = rng.integers(0, 3, size=(9,))
  means = np.stack([xs.reshape(12, -1)[ys.reshape(-1) == c].mean(0) for c in range(3)])
  pred = np.argmin(((xq.reshape(9, 1, -1) - means[None]) ** 2).sum(-1), 1)
  got = baselines.pixel_prototype_error(xs, ys, xq, yq, 3)
  assert float(got) == pytest.approx(np.mean(pred != yq))


def test_classification_baselines_need_ways_and_give_chance():
  # Every class a constant image of its own grey level: raw-pixel prototypes are perfect.
  images = np.broadcast_to((np.arange(10, dtype=np.uint8) * 20)[:, None, None, None, None],
                           (10, 20, 4, 4, 1)).copy()
  task = fewshot.make_test_task(images, dataset="omniglot", ways=5, shots=2)
  with pytest.raises(ValueError, match="ways"):
    baselines.no_learning(task, jax.random.key(0), 4)
  out = baselines.no_learning(task, jax.random.key(0), 4, ways=5)
  assert out["pixel_prototype"]["mean"] == 0.0 and out["chance"]["mean"] == pytest.approx(0.8)
