"""Online N-way k-shot classification from a ``[classes, images, H, W, C]`` array.

One lifetime sees ``N = ways`` classes and ``k = shots`` images of each, **one
image per step** (``T = N k`` steps of batch 1), then is tested on unseen
images of the same classes (REFERENCE.md 5.5, 6.2, 6.3):

* classes: ``N`` drawn without replacement from the split's classes;
  labels: a random permutation of ``0..N-1`` over them (per episode);
* ``order='iid'``: the ``N k`` support images in random order;
  ``order='continual'``: all ``k`` images of one class, then the next class;
* meta-training (`sample_train_episode`): per class a random permutation of
  its images; the first ``k`` are the support, the next ``q`` the query, so
  query images are never support images. ``query_overlap=True`` draws the query
  from an independent permutation instead, which can repeat support images
  (the reference's meta-training);
* meta-testing (`sample_test_episode`): each class's images are split into a
  support pool (Omniglot images 0-14, mini-ImageNet 0-29) and a held-out test
  pool (Omniglot 15-19, mini-ImageNet 30-59); the support is ``k`` images of the
  pool (the reference took the first ``k`` of its directory order, we draw
  them at random), the query is the whole test pool.

Images stay ``uint8`` on the device and are normalised inside the sampler
(Omniglot ``x / 255``; mini-ImageNet ImageNet mean/std), so an episode never
waits for host data. Targets are integer labels: ``ys (T, 1)``, ``yq (Q,)``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from flpjax.lifetime import Episode
from flpjax.tasks.base import ORDERS, Task, order_flags

Order = Literal["iid", "continual"]

#: Per data set: (meta-train split, meta-test split, meta-validation split,
#: test-time support pool size = first images of each class).
SPLITS = {  # meta-train, meta-test and validation splits; test-time support and test pools
    "omniglot": ("train", "test", None, 15, 5),
    "mini_imagenet": ("train", "test", "val", 30, 30),
}
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize(x: jax.Array, dataset: str) -> jax.Array:
  """uint8 images -> float32: ``x / 255`` (Omniglot) or ImageNet mean/std (RGB)."""
  x = x.astype(jnp.float32) / 255.0
  if dataset == "mini_imagenet":
    x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
  return x


def _classes_and_labels(key, n_classes: int, ways: int):
  k_cls, k_lab = jax.random.split(key)
  classes = jax.random.choice(k_cls, n_classes, (ways,), replace=False)
  labels = jax.random.permutation(k_lab, ways)
  return classes, labels


def _stream(key, images, classes, labels, support_idx, order: Order, dataset: str):
  """Support stream from per-class image indices ``support_idx (N, k)``."""
  ways, shots = support_idx.shape
  x = images[classes[:, None], support_idx]                  # (N, k, H, W, C)
  y = jnp.broadcast_to(labels[:, None], (ways, shots))
  x = x.reshape((ways * shots,) + x.shape[2:])
  y = y.reshape(ways * shots)
  if not isinstance(order, str) or order == "iid":
    perm = jax.random.permutation(key, ways * shots)
    if not isinstance(order, str):  # a traced flag (base.order_flags): True keeps class order
      perm = jnp.where(order, jnp.arange(ways * shots), perm)
    x, y = x[perm], y[perm]
  return normalize(x, dataset)[:, None], y[:, None]          # (T, 1, H, W, C), (T, 1)


def sample_train_episode(
    key: jax.Array, images: jax.Array, *, dataset: str, ways: int = 5, shots: int = 5,
    queries: int = 5, order: Order = "iid", query_overlap: bool = False,
) -> Episode:
  """A meta-training lifetime; query images disjoint from the support by default.

  Args:
    key: a typed PRNG key.
    images: uint8 ``(classes, images_per_class, H, W, C)``.
    dataset: ``'omniglot'`` or ``'mini_imagenet'`` (normalisation).
    ways, shots, queries: classes, support images and query images per class.
    order: ``'iid'`` or ``'continual'``, or a boolean array (True: continual;
      `flpjax.tasks.base.order_flags`) that selects the order at run time.
    query_overlap: draw the query independently of the support (may repeat).

  Returns:
    ``Episode(xs (N k, 1, H, W, C), ys (N k, 1), xq (N q, H, W, C), yq (N q,))``.
  """
  n_classes, per_class = images.shape[:2]
  k_cls, k_img, k_q, k_ord = jax.random.split(key, 4)
  classes, labels = _classes_and_labels(k_cls, n_classes, ways)
  perms = jax.vmap(lambda k: jax.random.permutation(k, per_class))(jax.random.split(k_img, ways))
  support = perms[:, :shots]
  if query_overlap:
    qperms = jax.vmap(lambda k: jax.random.permutation(k, per_class))(jax.random.split(k_q, ways))
    query = qperms[:, :queries]
  else:
    query = perms[:, shots:shots + queries]
  xs, ys = _stream(k_ord, images, classes, labels, support, order, dataset)
  xq = images[classes[:, None], query]
  xq = normalize(xq.reshape((ways * queries,) + xq.shape[2:]), dataset)
  yq = jnp.repeat(labels, queries)
  return Episode(xs, ys, xq, yq)


def sample_test_episode(
    key: jax.Array, images: jax.Array, *, dataset: str, ways: int = 5, shots: int = 5,
    support_pool: int = 15, test_pool: int | None = None, order: Order = "iid",
) -> Episode:
  """A meta-test lifetime: support from images ``[0, support_pool)``, query the next
  ``test_pool`` images of each class (None: all the rest).

  Returns:
    ``Episode`` with ``N k`` support steps and ``N test_pool`` queries.
  """
  n_classes, per_class = images.shape[:2]
  k_cls, k_img, k_ord = jax.random.split(key, 3)
  classes, labels = _classes_and_labels(k_cls, n_classes, ways)
  perms = jax.vmap(lambda k: jax.random.permutation(k, support_pool))(jax.random.split(k_img, ways))
  xs, ys = _stream(k_ord, images, classes, labels, perms[:, :shots], order, dataset)
  held = per_class - support_pool if test_pool is None else min(test_pool,
                                                                 per_class - support_pool)
  xq = images[classes, support_pool:support_pool + held]      # (N, held, H, W, C)
  xq = normalize(xq.reshape((ways * held,) + xq.shape[2:]), dataset)
  return Episode(xs, ys, xq, jnp.repeat(labels, held))


def make_train_task(images, *, dataset: str, ways=5, shots=5, queries=5,
                    order: Order | tuple[Order, ...] = "iid", query_overlap=False) -> Task:
  """Meta-training `Task` over ``images`` (its ``data``, kept uint8 on the device).

  ``order`` a tuple (one order per run of `meta.make_runs_meta_step`): ``data`` is
  ``(images, order_flags(order))`` with ``data_axes = (None, 0)``; the runs share the
  images.
  """
  per_run = isinstance(order, (tuple, list))
  _check(images, dataset, ways, shots + (0 if query_overlap else queries),
         order[0] if per_run and order else order)
  kwargs = dict(dataset=dataset, ways=ways, shots=shots, queries=queries,
                query_overlap=query_overlap)
  shape = tuple(images.shape[2:])
  if per_run:
    flags = order_flags(order)

    def sample_per_run(key, data):
      return sample_train_episode(key, data[0], order=data[1], **kwargs)

    return Task(sample_per_run, (jnp.asarray(images), flags), "classification", shape, ways,
                (None, 0))

  def sample(key, data):
    return sample_train_episode(key, data, order=order, **kwargs)

  return Task(sample, jnp.asarray(images), "classification", shape, ways)


def make_test_task(images, *, dataset: str, ways=5, shots=5, support_pool=None,
                   order: Order = "iid") -> Task:
  """Meta-test `Task`: held-out images of each class (REFERENCE.md 6.2, 6.3)."""
  support_pool = SPLITS[dataset][3] if support_pool is None else support_pool
  _check(images, dataset, ways, support_pool + 1, order)
  if shots > support_pool:
    raise ValueError(f"shots={shots} exceeds the test-time support pool of {support_pool} images")

  def sample(key, data):
    return sample_test_episode(key, data, dataset=dataset, ways=ways, shots=shots,
                               support_pool=support_pool, test_pool=SPLITS[dataset][4],
                               order=order)

  return Task(sample, jnp.asarray(images), "classification", tuple(images.shape[2:]), ways)


def _check(images, dataset, ways, per_class_needed, order):
  if dataset not in SPLITS:
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {tuple(SPLITS)}")
  if order not in ORDERS:
    raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
  if images.ndim != 5 or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 (classes, images, H, W, C), got "
                     f"{images.dtype} {images.shape}")
  if images.shape[0] < ways:
    raise ValueError(f"{ways}-way episodes need at least {ways} classes, the split has "
                     f"{images.shape[0]}")
  if images.shape[1] < per_class_needed:
    raise ValueError(f"episodes need {per_class_needed} images per class, the split has "
                     f"{images.shape[1]}")


def make_tasks(config):
  """``(meta-train task, meta-test task)`` of a validated classification config."""
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  f = config.fewshot
  name = config.task
  train_split, test_split, _, pool, _ = SPLITS[name]
  kwargs = dict(data_dir=f.data_dir or None, image_size=f.image_size)
  train_images = datasets.load_split(name, train_split, **kwargs)
  test_images = datasets.load_split(name, test_split, **kwargs)
  if f.validation_classes:
    train_images = train_images[:-f.validation_classes]
  return (make_train_task(train_images, dataset=name, ways=f.ways, shots=f.shots,
                          queries=f.queries_per_class, order=config.order,
                          query_overlap=f.query_overlap),
          make_test_task(test_images, dataset=name, ways=f.ways, shots=f.shots,
                         support_pool=pool, order=config.order))


def make_validation_task(config):
  """Meta-test-protocol lifetimes on validation classes (see `config.make_validation_task`)."""
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  f = config.fewshot
  name = config.task
  train_split, _, val_split, pool, _ = SPLITS[name]
  kwargs = dict(data_dir=f.data_dir or None, image_size=f.image_size)
  if val_split is not None:
    images = datasets.load_split(name, val_split, **kwargs)
  elif f.validation_classes:
    images = datasets.load_split(name, train_split, **kwargs)[-f.validation_classes:]
  else:
    raise ValueError(f"{name} has no validation split: set config.fewshot.validation_classes "
                     "to hold out meta-training classes")
  return make_test_task(images, dataset=name, ways=f.ways, shots=f.shots, support_pool=pool,
                        order=config.order)
