"""Online few-shot episodes, and a short Omniglot meta-training that must beat chance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import config as config_lib
from flpjax import datasets, train
from flpjax.tasks import fewshot

OMNIGLOT = datasets.dataset_dir("omniglot")
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT / "images_background.npz").is_file(),
    reason=f"Omniglot data not found in {OMNIGLOT} (set FLPJAX_DATA_DIR)")


def _labelled_images(classes=12, per_class=20):
  """uint8 images whose pixel (0, 0) encodes the class and (0, 1) the image index."""
  x = np.zeros((classes, per_class, 4, 4, 1), np.uint8)
  x[:, :, 0, 0, 0] = np.arange(classes)[:, None]
  x[:, :, 0, 1, 0] = np.arange(per_class)[None, :]
  return x


def _decode(x):
  x = np.rint(np.asarray(x) * 255).astype(int)
  return x[..., 0, 0, 0], x[..., 0, 1, 0]  # class id, image index


@pytest.mark.parametrize("order", ["iid", "continual"])
def test_train_episode_structure(order):
  images = _labelled_images()
  ep = fewshot.sample_train_episode(jax.random.key(0), jnp.asarray(images), dataset="omniglot",
                                    ways=5, shots=5, queries=3, order=order)
  assert ep.xs.shape == (25, 1, 4, 4, 1) and ep.ys.shape == (25, 1)
  assert ep.xq.shape == (15, 4, 4, 1) and ep.yq.shape == (15,)
  cls, idx = _decode(ep.xs[:, 0])
  labels = np.asarray(ep.ys[:, 0])
  assert len(set(cls)) == 5
  # one label per class, a bijection onto 0..4, 5 shots each
  mapping = {c: l for c, l in zip(cls, labels)}
  assert len(mapping) == 5 and sorted(mapping.values()) == list(range(5))
  assert all(mapping[c] == l for c, l in zip(cls, labels))
  assert np.bincount(labels, minlength=5).tolist() == [5] * 5
  if order == "continual":
    assert all(len(set(labels[i:i + 5])) == 1 for i in range(0, 25, 5))
  else:
    assert sum(labels[1:] != labels[:-1]) > 8
  qcls, qidx = _decode(ep.xq)
  assert all(mapping[c] == l for c, l in zip(qcls, np.asarray(ep.yq)))
  for c in set(cls):  # query images are never support images
    assert not set(qidx[qcls == c]) & set(idx[cls == c])
    assert len(set(idx[cls == c])) == 5


def test_per_run_orders_give_each_run_the_episode_of_its_order():
  images = _labelled_images()
  orders = ("continual", "iid", "iid")
  task = fewshot.make_train_task(images, dataset="omniglot", ways=5, shots=5, queries=3,
                                 order=orders)
  keys = jax.random.split(jax.random.key(2), len(orders))
  episodes = jax.vmap(task.sample, in_axes=(0, task.data_axes))(keys, task.data)
  for r, order in enumerate(orders):
    alone = fewshot.sample_train_episode(keys[r], jnp.asarray(images), dataset="omniglot",
                                         ways=5, shots=5, queries=3, order=order)
    jax.tree.map(lambda a, b, r=r: np.testing.assert_array_equal(a[r], b), episodes, alone)


def test_query_overlap_option_can_repeat_support_images():
  images = jnp.asarray(_labelled_images(classes=5, per_class=6))
  overlaps = 0
  for i in range(20):
    ep = fewshot.sample_train_episode(jax.random.key(i), images, dataset="omniglot",
                                      queries=5, query_overlap=True)
    cls, idx = _decode(ep.xs[:, 0])
    qcls, qidx = _decode(ep.xq)
    overlaps += sum(bool(set(qidx[qcls == c]) & set(idx[cls == c])) for c in range(5))
  assert overlaps > 0


def test_labels_are_permuted_per_episode():
  images = jnp.asarray(_labelled_images(classes=5))
  seen = set()
  for i in range(10):
    ep = fewshot.sample_train_episode(jax.random.key(i), images, dataset="omniglot")
    cls, _ = _decode(ep.xs[:, 0])
    seen.add(tuple(int(np.asarray(ep.ys[:, 0])[cls == c][0]) for c in range(5)))
  assert len(seen) > 5


def test_test_episode_uses_the_held_out_images():
  images = jnp.asarray(_labelled_images(classes=30))
  ep = fewshot.sample_test_episode(jax.random.key(1), images, dataset="omniglot",
                                   support_pool=15, order="continual")
  _, idx = _decode(ep.xs[:, 0])
  qcls, qidx = _decode(ep.xq)
  assert idx.max() < 15 and qidx.min() >= 15
  assert ep.xq.shape[0] == 25 and sorted(set(qidx)) == list(range(15, 20))


def test_mini_imagenet_test_lifetime_queries_images_30_to_59():
  """docs/fidelity.md 6.3: support from images 0-29 of each class, queries 30-59 (not the
  other 540 images of the class)."""
  x = _labelled_images(classes=6, per_class=100)
  x = np.repeat(x, 3, axis=-1)  # RGB
  task = fewshot.make_test_task(x, dataset="mini_imagenet")
  ep = task.sample(jax.random.key(3), task.data)
  assert ep.xq.shape[0] == 5 * 30 and ep.xs.shape[0] == 25
  raw = np.rint((np.asarray(ep.xq)[..., 0, 1, 0] * 0.229 + 0.485) * 255).astype(int)
  assert sorted(set(raw.tolist())) == list(range(30, 60))


def test_normalisation():
  x = jnp.full((2, 2, 3), 255, jnp.uint8)
  np.testing.assert_allclose(fewshot.normalize(x, "omniglot"), 1.0)
  want = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(fewshot.normalize(x, "mini_imagenet")[0, 0], want, rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(ways=13), "need at least 13 classes"),
    (dict(shots=15, queries=6), "need 21 images per class"),
    (dict(order="blocked"), "unknown order"),
])
def test_bad_episode_settings(kwargs, message):
  with pytest.raises(ValueError, match=message):
    fewshot.make_train_task(_labelled_images(), dataset="omniglot", **kwargs)


def small_omniglot_config(steps):
  """FLP (2) on 28x28 Omniglot with a 3-conv trunk of 32 channels and a 16-unit readout."""
  c = config_lib.base_config()
  c.task = "omniglot"
  c.fewshot.image_size = 28
  c.net.strides = (2, 2, 2)
  c.net.channels = 32
  c.net.hidden = 64
  c.net.readout = 16
  c.plastic_layers = 2
  c.flp.signal = "target"
  c.flp.clamp_readout = True
  c.flp.init_beta = 1.0
  c.meta.lr.beta = 0.0
  c.meta.lr.ff = 1e-3
  c.meta.lr.fb = 1e-3
  c.meta.lr.alpha = 1e-2
  c.meta.lr.alpha_readout = 1e-2
  c.meta.steps = steps
  c.eval.lifetimes = 100
  c.eval.batch = 50
  c.checkpoint_every = 1000
  c.log_every = 100
  return c


@needs_omniglot
@pytest.mark.slow
def test_short_omniglot_meta_training_beats_chance(tmp_path, monkeypatch, data_cache):
  monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(data_cache))
  result = train.train_and_evaluate(small_omniglot_config(600), str(tmp_path / "run"))
  # 5-way: chance is 0.2 (100 lifetimes of 25 unseen query images of unseen classes).
  assert result["accuracy"] > 0.4, result["accuracy"]
  assert result["accuracy"] - 5 * result["accuracy_stderr"] > 0.2


@needs_omniglot
def test_omniglot_tasks_from_config(monkeypatch, data_cache):
  monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(data_cache))
  c = small_omniglot_config(0)
  config_lib.validate(c)
  train_task, test_task = config_lib.make_tasks(c)
  assert train_task.data.shape == (963, 20, 28, 28, 1) and test_task.data.shape == (660, 20, 28, 28, 1)
  ep = test_task.sample(jax.random.key(0), test_task.data)
  assert ep.xs.shape == (25, 1, 28, 28, 1) and ep.xq.shape == (25, 28, 28, 1)
  x = np.asarray(ep.xs)
  assert 0.0 <= x.min() and x.max() <= 1.0 and x.mean() > 0.5  # white paper, dark strokes
