"""The incremental sine task: statistics, orders, pool, determinism."""

import math

import jax
import numpy as np
import pytest

from flpjax.tasks import sine


def _functions_of(episode, n=10):
  """Recover (slot -> (A, phi)) from an episode's points by least squares."""
  xs = np.asarray(episode.xs).reshape(-1, n + 1)
  ys = np.asarray(episode.ys).reshape(-1)
  out = {}
  for slot in range(n):
    sel = xs[:, slot] == 1
    x = xs[sel, n]
    design = np.stack([np.sin(x), np.cos(x)], 1)  # A sin(x + p) = A cos p sin x + A sin p cos x
    (a, b), *_ = np.linalg.lstsq(design, ys[sel], rcond=None)
    out[slot] = (math.hypot(a, b), math.atan2(b, a) % (2 * math.pi))
  return out


def test_shapes_and_encoding():
  ep = sine.sample_episode(jax.random.key(0))
  assert ep.xs.shape == (400, 32, 11) and ep.ys.shape == (400, 32, 1)
  assert ep.xq.shape == (320, 11) and ep.yq.shape == (320, 1)
  onehot = np.asarray(ep.xs[..., :10])
  assert np.all(onehot.sum(-1) == 1) and set(np.unique(onehot)) == {0.0, 1.0}
  x = np.asarray(ep.xs[..., 10])
  assert x.min() >= -5 and x.max() < 5
  assert abs(x.mean()) < 0.1 and abs(x.std() - 10 / math.sqrt(12)) < 0.05
  # Query: 32 points per function, in function order.
  np.testing.assert_array_equal(np.argmax(ep.xq[:, :10], -1), np.repeat(np.arange(10), 32))


def test_targets_are_sines_of_the_drawn_functions():
  pool = sine.sample_functions(jax.random.key(1), 400)
  ep = sine.sample_episode(jax.random.key(2), pool)
  fits = _functions_of(ep)
  table = {(round(float(a), 4), round(float(p), 4)) for a, p in zip(pool.amplitude, pool.phase)}
  for a, p in fits.values():
    assert (round(a, 4), round(p, 4)) in table
  assert len({round(a, 4) for a, _ in fits.values()}) == 10  # without replacement
  # query targets come from the same functions
  xq, yq = np.asarray(ep.xq), np.asarray(ep.yq)[:, 0]
  for slot, (a, p) in fits.items():
    sel = xq[:, slot] == 1
    np.testing.assert_allclose(yq[sel], a * np.sin(xq[sel, 10] + p), atol=1e-4)


def test_amplitude_and_phase_ranges():
  pool = sine.sample_functions(jax.random.key(3), 20000)
  a, p = np.asarray(pool.amplitude), np.asarray(pool.phase)
  assert 0.1 <= a.min() < 0.11 and 5.09 < a.max() < 5.1
  assert 0 <= p.min() < 0.01 and math.pi - 0.01 < p.max() < math.pi
  assert abs(a.mean() - 2.6) < 0.05 and abs(p.mean() - math.pi / 2) < 0.05


def test_continual_order_is_function_after_function():
  ep = sine.sample_episode(jax.random.key(4), order="continual")
  slots = np.argmax(np.asarray(ep.xs[..., :10]), -1)  # (400, 32)
  assert np.all(slots == slots[:, :1])  # single-function batches
  np.testing.assert_array_equal(slots[:, 0], np.repeat(np.arange(10), 40))


def test_iid_order_shuffles_single_function_batches():
  ep = sine.sample_episode(jax.random.key(5), order="iid")
  slots = np.argmax(np.asarray(ep.xs[..., :10]), -1)
  assert np.all(slots == slots[:, :1])
  assert np.bincount(slots[:, 0], minlength=10).tolist() == [40] * 10
  assert not np.array_equal(slots[:, 0], np.sort(slots[:, 0]))
  changes = np.sum(slots[1:, 0] != slots[:-1, 0])
  assert changes > 300  # far from blocks (continual has 9 changes)


def test_mixed_batches():
  ep = sine.sample_episode(jax.random.key(6), order="iid", mixed_batches=True)
  slots = np.argmax(np.asarray(ep.xs[..., :10]), -1)
  assert np.bincount(slots.ravel(), minlength=10).tolist() == [1280] * 10
  per_batch = [len(set(b)) for b in slots]
  assert np.mean(per_batch) > 8  # 32 draws over 10 functions: ~9.7 distinct


def test_fresh_functions_and_determinism():
  a = sine.sample_episode(jax.random.key(7))
  b = sine.sample_episode(jax.random.key(7))
  c = sine.sample_episode(jax.random.key(8))
  np.testing.assert_array_equal(a.ys, b.ys)
  assert not np.allclose(a.ys, c.ys)


def test_pool_is_the_only_source_of_training_functions():
  pool = sine.sample_functions(jax.random.key(9), 12)
  seen = set()
  for i in range(20):
    ep = sine.sample_episode(jax.random.key(100 + i), pool)
    seen |= {round(a, 3) for a, _ in _functions_of(ep).values()}
  assert seen <= {round(float(a), 3) for a in pool.amplitude}
  assert len(seen) == 12


def test_sizes_and_jit():
  task = sine.make_task(pool=None, order="continual", n_functions=3, steps_per_function=2,
                        batch_size=4, queries_per_function=5)
  ep = jax.jit(task.sample)(jax.random.key(0), None)
  assert ep.xs.shape == (6, 4, 4) and ep.xq.shape == (15, 4)
  assert task.input_shape == (4,) and task.output == "regression"
  vm = jax.vmap(task.sample, (0, None))(jax.random.split(jax.random.key(0), 3), None)
  assert vm.xs.shape == (3, 6, 4, 4)


def test_unknown_order():
  with pytest.raises(ValueError, match="unknown order 'shuffled'"):
    sine.make_task(pool=None, order="shuffled")


@pytest.mark.parametrize("mixed", [False, True])
def test_per_run_orders_give_each_run_the_episode_of_its_order(mixed):
  """A task with one order per run (Task.data_axes): under vmap, run r's episode is the
  one the named order gives for its key, exactly."""
  pool = sine.sample_functions(jax.random.key(3), 40)
  orders = ("iid", "continual", "continual", "iid")
  task = sine.make_task(pool=pool, order=orders, mixed_batches=mixed, n_functions=4,
                        steps_per_function=3, batch_size=5, queries_per_function=2)
  assert task.data_axes == (None, 0)
  keys = jax.random.split(jax.random.key(0), len(orders))
  episodes = jax.jit(jax.vmap(task.sample, in_axes=(0, task.data_axes)))(keys, task.data)
  for r, order in enumerate(orders):
    alone = sine.sample_episode(keys[r], pool, order=order, mixed_batches=mixed, n_functions=4,
                                steps_per_function=3, batch_size=5, queries_per_function=2)
    jax.tree.map(lambda a, b, r=r: np.testing.assert_array_equal(a[r], b), episodes, alone)


def test_per_run_orders_reject_unknown_orders():
  with pytest.raises(ValueError, match="orders=.*expected a non-empty tuple"):
    sine.make_task(pool=None, order=("iid", "sorted"))
