"""Online N-way k-shot classification from a ``[classes, images, H, W, C]`` array.

One lifetime sees ``N = ways`` classes and ``k = shots`` images of each, **one
image per step** (``T = N k`` steps of batch 1), then is tested on unseen
images of the same classes (docs/fidelity.md 5.5, 6.2, 6.3):

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
  support pool (Omniglot images 0-14, mini-ImageNet 0-29, a data set of your
  own: the first half) and a held-out test pool (Omniglot 15-19, mini-ImageNet
  30-59, your own: the rest; ``config.fewshot.support_pool`` / ``test_pool``
  choose others); the support is ``k`` images of the pool (the reference took
  the first ``k`` of its directory order, we draw them at random), the query is
  the whole test pool.

Images stay ``uint8`` on the device and are normalised inside the sampler
(Omniglot ``x / 255``; mini-ImageNet ImageNet mean/std; your own: the
`Normalization` you give), so an episode never waits for host data. Targets are
integer labels: ``ys (T, 1)``, ``yq (Q,)``.

A data set of your own from the command line: ``config.task='custom'`` with
``config.custom`` naming its splits (folders of class subfolders or array
files, `flpjax.datasets.folder`), channels and normalisation statistics;
`check_inputs` checks every split a run needs (class and image counts against
the episode settings) before anything is loaded or compiled.
"""

from __future__ import annotations

import os
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flpjax import nets
from flpjax.lifetime import Episode
from flpjax.tasks.base import ORDERS, Task, order_flags

Order = Literal["iid", "continual"]

#: Per data set: (meta-train split, meta-test split, meta-validation split,
#: test-time support pool, test pool: the first images of each class, then the next).
#: None: from the data (a data set of your own: half of each class's images, then the rest).
SPLITS = {
    "omniglot": ("train", "test", None, 15, 5),
    "mini_imagenet": ("train", "test", "val", 30, 30),
    "custom": ("train", "test", "val", None, None),
}
#: Images per class and channels of the standard data sets.
SHAPES = {"omniglot": (20, 1), "mini_imagenet": (600, 3)}
#: ImageNet's per-channel mean and standard deviation (mini-ImageNet's inputs).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class Normalization(NamedTuple):
  """Model inputs from uint8 images: ``(x / 255 - mean) / std`` per channel.

  ``mean`` and ``std`` have one entry per channel, or one for all; the default
  is ``x / 255``. Pass one as ``dataset`` for a data set of your own.
  """

  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)


#: The standard data sets' normalisations (Omniglot ``x / 255``; mini-ImageNet ImageNet's).
NORMALIZATIONS = {
    "omniglot": Normalization(),
    "mini_imagenet": Normalization(tuple(map(float, IMAGENET_MEAN)),
                                   tuple(map(float, IMAGENET_STD))),
}


def normalization(dataset) -> Normalization:
  """The `Normalization` of ``dataset``: a standard data set's name, or a `Normalization`."""
  if isinstance(dataset, Normalization):
    return dataset
  if isinstance(dataset, str) and dataset in NORMALIZATIONS:
    return NORMALIZATIONS[dataset]
  raise ValueError(f"unknown dataset {dataset!r}; expected one of {tuple(NORMALIZATIONS)} "
                   "or a fewshot.Normalization(mean, std) for a data set of your own")


def normalize(x: jax.Array, dataset) -> jax.Array:
  """uint8 images -> float32: ``x / 255`` (Omniglot), ImageNet mean/std (mini-ImageNet), or
  ``(x / 255 - mean) / std`` of a `Normalization`.

  ``x`` is ``(..., H, W, C)`` (the statistics are per channel); the result has its shape.
  """
  x = x.astype(jnp.float32) / 255.0
  if dataset == "mini_imagenet":
    return (x - IMAGENET_MEAN) / IMAGENET_STD
  n = normalization(dataset)
  if n != Normalization():
    x = (x - np.asarray(n.mean, np.float32)) / np.asarray(n.std, np.float32)
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
    key: jax.Array, images: jax.Array, *, dataset, ways: int = 5, shots: int = 5,
    queries: int = 5, order: Order = "iid", query_overlap: bool = False,
) -> Episode:
  """A meta-training lifetime; query images disjoint from the support by default.

  Args:
    key: a typed PRNG key.
    images: uint8 ``(classes, images_per_class, H, W, C)``.
    dataset: ``'omniglot'``, ``'mini_imagenet'`` or a `Normalization` (normalisation).
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
    key: jax.Array, images: jax.Array, *, dataset, ways: int = 5, shots: int = 5,
    support_pool: int = 15, test_pool: int | None = None, order: Order = "iid",
) -> Episode:
  """A meta-test lifetime: support from images ``[0, support_pool)``, query the next
  ``test_pool`` images of each class (None: all the rest).

  Args:
    key: a typed PRNG key.
    images: uint8 ``(classes, images_per_class, H, W, C)``.
    dataset, ways, shots, order: as `sample_train_episode`.
    support_pool, test_pool: images per class of the support pool and of the
      held-out test pool.

  Returns:
    ``Episode(xs (N k, 1, H, W, C), ys (N k, 1), xq (N h, H, W, C), yq (N h,))``
    with ``N = ways``, ``k = shots`` and ``h`` the test pool's size.
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


def make_train_task(images, *, dataset, ways=5, shots=5, queries=5,
                    order: Order | tuple[Order, ...] = "iid", query_overlap=False) -> Task:
  """Meta-training `Task` over ``images`` (its ``data``, kept uint8 on the device).

  ``images``: uint8 ``(classes, images_per_class, H, W, C)``; episodes are
  `sample_train_episode`'s. ``dataset``: a standard data set's name or a
  `Normalization` (a data set of your own). ``order`` a tuple (one order per
  run of `meta.make_runs_meta_step`): ``data`` is ``(images, order_flags(order))``
  (flags ``(R,)``) with ``data_axes = (None, 0)``; the runs share the images.
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


def pools(dataset, images_per_class: int, support_pool: int | None = None,
          test_pool: int | None = None) -> tuple[int, int]:
  """``(support pool, test pool)`` of meta-testing: given, else the data set's.

  Standard data sets: Omniglot 15 and 5, mini-ImageNet 30 and 30; a data set
  of your own: the first half of each class's images and the rest.
  """
  name = dataset if isinstance(dataset, str) else "custom"
  default_support, default_test = SPLITS.get(name, SPLITS["custom"])[3:]
  support = support_pool or default_support or images_per_class // 2
  test = test_pool or default_test or images_per_class - support
  return support, test


def make_test_task(images, *, dataset, ways=5, shots=5, support_pool=None, test_pool=None,
                   order: Order = "iid") -> Task:
  """Meta-test `Task`: held-out images of each class (docs/fidelity.md 6.2, 6.3).

  Support from images ``[0, support_pool)`` of each class, queries the next
  ``test_pool`` (defaults: `pools`). ``images``: uint8 ``(classes,
  images_per_class, H, W, C)``; episodes are `sample_test_episode`'s.
  """
  support_pool, test_pool = pools(dataset, images.shape[1], support_pool, test_pool)
  _check(images, dataset, ways, support_pool + test_pool, order)
  if shots > support_pool:
    raise ValueError(f"shots={shots} exceeds the test-time support pool of {support_pool} images")

  def sample(key, data):
    return sample_test_episode(key, data, dataset=dataset, ways=ways, shots=shots,
                               support_pool=support_pool, test_pool=test_pool, order=order)

  return Task(sample, jnp.asarray(images), "classification", tuple(images.shape[2:]), ways)


def _check(images, dataset, ways, per_class_needed, order):
  n = normalization(dataset)
  if order not in ORDERS:
    raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
  if images.ndim != 5 or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 (classes, images, H, W, C), got "
                     f"{images.dtype} {images.shape}")
  if any(len(v) not in (1, images.shape[-1]) for v in n):
    raise ValueError(f"normalisation mean {n.mean} and std {n.std}: expected 1 or "
                     f"{images.shape[-1]} values (the images' channels)")
  if images.shape[0] < ways:
    raise ValueError(f"{ways}-way episodes need at least {ways} classes, the split has "
                     f"{images.shape[0]}")
  if images.shape[1] < per_class_needed:
    raise ValueError(f"episodes need {per_class_needed} images per class, the split has "
                     f"{images.shape[1]}")


# ------------------------------------------------------------------ from a config


def config_dataset(config) -> str | Normalization:
  """The samplers' ``dataset`` for a config: the standard data set's name, or for 'custom'
  the `Normalization` of ``config.custom.mean`` and ``std``."""
  if config.task == "custom":
    return Normalization(tuple(map(float, config.custom.mean)),
                         tuple(map(float, config.custom.std)))
  return config.task


def channels(config) -> int:
  """Input channels of a config's data set."""
  return config.custom.channels if config.task == "custom" else SHAPES[config.task][1]


def custom_path(config, split: str) -> str:
  """Where ``config.custom.<split>`` is: relative paths are under ``fewshot.data_dir``."""
  path = os.path.expanduser(config.custom[split])
  if not os.path.isabs(path) and config.fewshot.data_dir:
    path = os.path.join(os.path.expanduser(config.fewshot.data_dir), path)
  return os.path.abspath(path)


def validation_split(config) -> str | None:
  """The split validation lifetimes come from (None: the last meta-training classes)."""
  val = SPLITS[config.task][2]
  if config.task == "custom" and not config.custom.val:
    return None
  return val


def needed_splits(config) -> list[str]:
  """Every split a run of ``config`` reads: meta-train, meta-test, and validation for sweeps."""
  train, test = SPLITS[config.task][:2]
  out = [train, test]
  if config.sweep.lrs and validation_split(config) is not None:
    out.append(validation_split(config))
  return out


def _field(config, split: str) -> str:
  if config.task == "custom":
    return f"config.custom.{split}={custom_path(config, split)}"
  return f"{config.task} split {split!r}"


def check_inputs(config) -> None:
  """Checks every split a run of ``config`` needs, from listings and stats alone.

  Each split must be present; its classes and images per class must fit the
  episodes: ``fewshot.ways`` classes (after ``validation_classes`` are held
  out), ``shots + queries_per_class`` images for meta-training and
  ``support_pool + test_pool`` for meta-testing and validation. Content
  (checksums, decoding, channels) is checked when the split is prepared.

  Raises:
    DataError: a split is missing, or its classes are too few or too small
      (the message names the split, the class and its count).
  """
  from flpjax import datasets  # pylint: disable=g-import-not-at-top  # tfds: only when needed
  f = config.fewshot
  splits = needed_splits(config)
  if config.task == "custom":
    shapes = {s: datasets.folder.inspect(custom_path(config, s)) for s in splits}
  else:
    layout_dir = f.data_dir or None
    available = datasets.available_splits(config.task, layout_dir)
    for split in splits:
      if split not in available:
        module = datasets.mini_imagenet if config.task == "mini_imagenet" else datasets.omniglot
        module.find_layout(datasets.dataset_dir(config.task, layout_dir)).require(split)
    per_class = SHAPES[config.task][0]
    shapes = {s: ([f"{s} class {i}" for i in range(datasets.split_shape(config.task, s)[0])],
                  per_class) for s in splits}
  train, test = SPLITS[config.task][:2]
  val = validation_split(config)
  needs = {train: (f.shots + (0 if f.query_overlap else f.queries_per_class),
                   f"fewshot.shots={f.shots} + fewshot.queries_per_class="
                   f"{f.queries_per_class}")}
  for split in {test, val} - {None}:
    if split in shapes:
      support, held = pools(config.task, shapes[split][1], f.support_pool, f.test_pool)
      needs[split] = (max(support + held, f.shots + 1),
                      f"the meta-test support pool {support} + test pool {held}"
                      f" (fewshot.support_pool, fewshot.test_pool; fewshot.shots={f.shots})")
  for split, (names, per_class) in shapes.items():
    classes = len(names) - (f.validation_classes if split == train else 0)
    if classes < f.ways:
      raise datasets.DataError(
          f"{_field(config, split)}: {classes} classes"
          + (f" after fewshot.validation_classes={f.validation_classes} held out"
             if split == train and f.validation_classes else "")
          + f", too few for fewshot.ways={f.ways}")
    need, why = needs.get(split, needs[train])
    if per_class < need:
      raise datasets.DataError(
          f"{_field(config, split)}: class {names[0]!r} has {per_class} images (as every"
          f" class), too few for {why} = {need} per class")
  if config.sweep.lrs and val is None:
    if not f.validation_classes:
      raise datasets.DataError(
          f"{_field(config, train)}: a sweep compares its runs on validation classes; set"
          " fewshot.validation_classes > 0" + (" or config.custom.val" if config.task ==
                                                "custom" else ""))
    if f.validation_classes < f.ways:
      raise datasets.DataError(
          f"config.fewshot.validation_classes={f.validation_classes}: too few for"
          f" fewshot.ways={f.ways} validation episodes")


def load(config, split: str) -> np.ndarray:
  """uint8 ``(classes, images_per_class, S, S, C)`` of one split of a config's data set.

  ``S = fewshot.image_size``; ``C``: the data set's channels.
  """
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  f = config.fewshot
  if config.task == "custom":
    images, _ = datasets.load_images(custom_path(config, split), image_size=f.image_size,
                                     channels=config.custom.channels)
    return images
  return datasets.load_split(config.task, split, data_dir=f.data_dir or None,
                             image_size=f.image_size)


# ----------------------------------------------------------------------------- config plug-in
# config.task = 'omniglot', 'mini_imagenet' or 'custom' (flpjax.config.registry).

OUTPUT = "classification"
#: ``fewshot``: the episodes. ``query_overlap``: meta-training query images may repeat
#: support images (the reference's). ``validation_classes`` > 0: the last N
#: meta-training classes are held out of meta-training as validation classes (sweeps;
#: mini-ImageNet validates on its 'val' split). ``support_pool`` / ``test_pool``:
#: meta-testing draws support from each class's images [0, support_pool) and queries
#: from the next test_pool (0: the data set's: Omniglot 15 and 5, mini-ImageNet 30 and
#: 30, 'custom' the first half and the rest).
#: ``custom`` (task 'custom', a data set of your own, `flpjax.datasets.folder`): each
#: split a folder of class subfolders or a .npy/.npz array file, relative paths under
#: ``fewshot.data_dir``; ``val`` '' = none (``fewshot.validation_classes`` holds classes
#: out instead); ``channels`` of every image (1 grey, 3 RGB, others refused); inputs are
#: ``(x / 255 - mean) / std``, one value per channel or one for all.
#: ``net``: the conv trunk (one 3x3 'VALID' convolution of ``channels`` per entry of
#: ``strides``), a dense layer of ``hidden`` and a readout of ``readout`` units.
CONFIG = {
    "fewshot": dict(ways=5, shots=5, queries_per_class=5, image_size=84, data_dir="",
                    query_overlap=False, validation_classes=0, support_pool=0, test_pool=0),
    "custom": dict(train="train", test="test", val="", channels=3, mean=(0.0,), std=(1.0,)),
    "net": dict(channels=128, hidden=128, readout=1000, strides=(2, 1, 2, 1, 2, 2)),
}


def validate_config(config) -> None:
  """Checks ``config.fewshot``, ``config.custom`` (task 'custom') and the ``net`` fields."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  for name in ("ways", "shots", "queries_per_class"):
    checks.check_int(config, f"fewshot.{name}", 1)
  checks.check_int(config, "fewshot.ways", 2, config.net.readout)
  checks.check_int(config, "fewshot.image_size", 8, 512)
  checks.check_bool(config, "fewshot.query_overlap")
  checks.check_int(config, "fewshot.validation_classes", 0)
  checks.check_int(config, "fewshot.support_pool", 0)
  checks.check_int(config, "fewshot.test_pool", 0)
  f = config.fewshot
  if config.task == "custom":  # counts are checked against the data (check_inputs)
    _validate_custom(config)
  else:
    per_class = SHAPES[config.task][0]
    pool, held = pools(config.task, per_class, f.support_pool, f.test_pool)
    if f.shots > pool:
      checks.fail("fewshot.shots", f.shots, f"at most {pool} (the meta-test support pool "
                  "per class)")
    if pool + held > per_class:
      checks.fail("fewshot.test_pool", f.test_pool, f"at most {per_class - pool} (support "
                  f"pool {pool} + test pool <= {per_class} images per class)")
    if not f.query_overlap and f.shots + f.queries_per_class > per_class:
      checks.fail("fewshot.queries_per_class", f.queries_per_class,
                  f"at most {per_class - f.shots} (fewshot.shots + queries <= {per_class} "
                  "images per class; or fewshot.query_overlap=True)")
    if config.sweep.lrs and SPLITS[config.task][2] is None and not f.validation_classes:
      checks.fail("fewshot.validation_classes", 0, f"> 0 with a sweep: {config.task} has no "
                  "validation split, so the sweep compares its runs on held-out "
                  "meta-training classes")
  if not isinstance(config.fewshot.data_dir, str):
    checks.fail("fewshot.data_dir", config.fewshot.data_dir, "a directory path or ''")
  for name in ("channels", "hidden", "readout"):
    checks.check_int(config, f"net.{name}", 1)
  checks.check_positive_ints(config, "net.strides")
  try:
    nets.output_shapes(*network(config))
  except ValueError as e:
    raise checks.ConfigError(f"config.fewshot.image_size={f.image_size!r}: {e} "
                             f"(config.net.strides={tuple(config.net.strides)!r})") from None


def _validate_custom(config) -> None:
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  c = config.custom
  for split in ("train", "test"):
    if not isinstance(c[split], str) or not c[split]:
      checks.fail(f"custom.{split}", c[split], "a folder of class subfolders or a .npy/.npz "
                  "file (relative: under fewshot.data_dir)")
  if not isinstance(c.val, str):
    checks.fail("custom.val", c.val, "a folder of class subfolders, a .npy/.npz file or ''")
  checks.check_int(config, "custom.channels", 1, 4)
  for name, low in (("mean", None), ("std", 1e-12)):
    values = c[name]
    if (not isinstance(values, (tuple, list)) or len(values) not in (1, c.channels)
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)
               or (low is not None and v < low) for v in values)):
      checks.fail(f"custom.{name}", values, f"a tuple of 1 or custom.channels={c.channels} "
                  "finite numbers" + (" > 0" if low else ""))
  if config.sweep.lrs and not c.val and not config.fewshot.validation_classes:
    checks.fail("custom.val", c.val, "validation classes for the sweep (a folder or array "
                "file), or set fewshot.validation_classes > 0")


def network(config):
  """The conv classifier (``config.net``) and one image's shape ``(S, S, C)``."""
  size = config.fewshot.image_size
  return (nets.conv_classifier(config.net.channels, config.net.hidden, config.net.readout,
                               tuple(config.net.strides)),
          (size, size, channels(config)))


def lifetime_steps(config) -> int:
  """``T = ways * shots``: one support image per step."""
  return config.fewshot.ways * config.fewshot.shots


def test_task(config, images=None) -> Task:
  """Meta-test lifetimes over the test split (or over ``images``)."""
  f = config.fewshot
  images = load(config, SPLITS[config.task][1]) if images is None else images
  return make_test_task(images, dataset=config_dataset(config), ways=f.ways, shots=f.shots,
                        support_pool=f.support_pool or None, test_pool=f.test_pool or None,
                        order=config.order)


def train_task(config) -> Task:
  """Meta-training episodes over the training split (less its ``validation_classes``)."""
  f = config.fewshot
  images = load(config, SPLITS[config.task][0])
  if f.validation_classes:
    images = images[:-f.validation_classes]
  return make_train_task(images, dataset=config_dataset(config), ways=f.ways, shots=f.shots,
                         queries=f.queries_per_class,
                         order=tuple(config.get("run_orders", ())) or config.order,
                         query_overlap=f.query_overlap)


def validation_task(config) -> Task:
  """Omniglot: the ``fewshot.validation_classes`` last meta-training classes; mini-ImageNet:
  'val'; 'custom': ``custom.val`` if set, else as Omniglot."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  f = config.fewshot
  val_split = validation_split(config)
  if val_split is not None:
    images = load(config, val_split)
  elif f.validation_classes:
    images = load(config, SPLITS[config.task][0])[-f.validation_classes:]
  else:
    raise checks.ConfigError(f"config.fewshot.validation_classes=0: {config.task} has no "
                             "validation split; expected > 0 to hold out meta-training classes")
  return test_task(config, images)
