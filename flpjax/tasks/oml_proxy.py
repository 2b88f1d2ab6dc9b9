"""OML's meta-training proxy task (Javed & White 2019; docs/fidelity.md OML 2.3, 3).

One trajectory class learned in ``S`` single-image SGD steps, then tested on
its held-out images and on a "remember" batch of other classes, with raw
class ids over the 1000-way readout. The readout-row reset and the clamped
meta-gradient that go with it are `flpjax.estimators.oml`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flpjax.tasks import fewshot
from flpjax.types import Episode, Task

#: Class ranges ``[lo, hi)`` of the proxy task per data set (docs/fidelity.md OML 2.2, 3):
#: (trajectory classes, remember classes) of the meta-training split.
CLASS_RANGES = {
    "omniglot": ((481, 963), (0, 481)),
    "mini_imagenet": ((0, 64), (0, 64)),
}


def proxy_positions(images_per_class: int, steps: int, max_held: int = 5
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Positions, in a shuffled class, of the trajectory and held-out images.

  OML walks the class's shuffled images with a counter ``1, 2, ...``: image
  ``counter`` is held out when ``counter % S == 0`` and joins the trajectory
  otherwise, until ``max_held`` are held out; the inner loop uses the first
  ``S`` trajectory images (docs/fidelity.md OML 2.3 table: S = 10 of 20 images gives
  10 used and 2 held out; S = 5 gives 5 and 4; S = 20 fails, as OML's
  IndexError).

  Args:
    images_per_class: images of one class (20 Omniglot, 600 mini-ImageNet).
    steps: ``S``, inner-loop steps (single images).
    max_held: OML stops after 5 held-out images.

  Returns:
    ``(trajectory (S,), held (h,))`` 0-based positions, disjoint.

  Raises:
    ValueError: fewer than ``S`` trajectory images.
  """
  if steps < 2:
    raise ValueError(f"steps={steps}: OML's proxy task needs S >= 2 (S = 1 holds out every image)")
  traj, held = [], []
  for counter in range(1, images_per_class + 1):
    if counter % steps:
      traj.append(counter - 1)
    else:
      held.append(counter - 1)
      if len(held) == max_held:
        break
  if len(traj) < steps:
    raise ValueError(f"steps={steps}: a class of {images_per_class} images gives only "
                     f"{len(traj)} trajectory images (OML needs S + 1 <= images per class)")
  return np.asarray(traj[:steps]), np.asarray(held)


def sample_oml_episode(
    key: jax.Array,
    images: jax.Array,
    *,
    dataset: str = "omniglot",
    steps: int = 10,
    trajectory_classes: Sequence[int] = (481, 963),
    remember_classes: Sequence[int] = (0, 481),
    remember: int = 10,
    max_held: int = 5,
) -> Episode:
  """One episode of OML's meta-training proxy task (docs/fidelity.md OML 2.3, 3).

  One class ``c`` is drawn from ``trajectory_classes``; its images are
  shuffled and split by `proxy_positions` into ``S`` trajectory images (the
  inner loop, one image per step) and ``h`` held-out ones. The meta set is a
  "remember" batch of ``remember`` images drawn without replacement from all
  images of ``remember_classes``, followed by the held-out images of ``c``.
  Labels are raw class ids (the network has a 1000-way readout).

  Args:
    key: a typed PRNG key.
    images: uint8 ``(classes, images_per_class, H, W, C)`` of the
      meta-training split.
    dataset: ``'omniglot'`` or ``'mini_imagenet'`` (normalisation,
      `fewshot.normalize`).
    steps: ``S``. Default 10, OML's argparse default (its README's 20 crashes).
    trajectory_classes: ``[lo, hi)``; Omniglot 481..962 (the default),
      mini-ImageNet all 64 (`CLASS_RANGES`).
    remember_classes: ``[lo, hi)``; Omniglot 0..480, mini-ImageNet all 64
      (so it may include ``c``, as OML).
    remember: size of the remember batch (OML: 10).
    max_held: held-out images at most (OML: 5).

  Returns:
    ``Episode(xs (S, 1, H, W, C), ys (S, 1), xq (R + h, H, W, C), yq (R + h,))``;
    ``ys`` is ``c`` everywhere (int32), ``yq`` the raw ids of the meta set.
  """
  per_class = images.shape[1]
  traj_pos, held_pos = proxy_positions(per_class, steps, max_held)
  k_cls, k_perm, k_rem = jax.random.split(key, 3)
  lo, hi = trajectory_classes
  c = jax.random.randint(k_cls, (), lo, hi, jnp.int32)
  perm = jax.random.permutation(k_perm, per_class)
  xs = images[c, perm[traj_pos]]                                  # (S, H, W, C)
  held = images[c, perm[held_pos]]                                # (h, H, W, C)
  r_lo, r_hi = remember_classes
  flat = jax.random.choice(k_rem, (r_hi - r_lo) * per_class, (remember,), replace=False)
  r_cls = (r_lo + flat // per_class).astype(jnp.int32)
  x_rem = images[r_cls, flat % per_class]                         # (R, H, W, C)
  xq = jnp.concatenate([x_rem, held])
  yq = jnp.concatenate([r_cls, jnp.full((held.shape[0],), c, jnp.int32)])
  return Episode(fewshot.normalize(xs, dataset)[:, None], jnp.full((steps, 1), c, jnp.int32),
                 fewshot.normalize(xq, dataset), yq)


def make_train_task(
    images,
    *,
    dataset: str = "omniglot",
    steps: int = 10,
    trajectory_classes: Sequence[int] | None = None,
    remember_classes: Sequence[int] | None = None,
    remember: int = 10,
) -> Task:
  """The proxy-task `Task` over ``images`` (its ``data``, kept uint8 on the device).

  Args:
    images: uint8 ``(classes, images_per_class, H, W, C)``.
    dataset: ``'omniglot'`` or ``'mini_imagenet'``.
    steps, remember: as `sample_oml_episode`.
    trajectory_classes, remember_classes: ``[lo, hi)``; default `CLASS_RANGES`.

  Raises:
    ValueError: the array or the class ranges do not fit.
  """
  if dataset not in CLASS_RANGES:
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {tuple(CLASS_RANGES)}")
  traj = tuple(trajectory_classes or CLASS_RANGES[dataset][0])
  rem = tuple(remember_classes or CLASS_RANGES[dataset][1])
  if images.ndim != 5 or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 (classes, images, H, W, C), got "
                     f"{images.dtype} {images.shape}")
  n_classes, per_class = images.shape[:2]
  for name, (lo, hi) in (("trajectory_classes", traj), ("remember_classes", rem)):
    if not 0 <= lo < hi <= n_classes:
      raise ValueError(f"{name}={(lo, hi)}: expected 0 <= lo < hi <= {n_classes} (the split's "
                       "classes)")
  if remember > (rem[1] - rem[0]) * per_class:
    raise ValueError(f"remember={remember} exceeds the {(rem[1] - rem[0]) * per_class} images "
                     "of the remember classes")
  proxy_positions(per_class, steps)  # raises if S does not fit a class

  def sample(key, data):
    return sample_oml_episode(key, data, dataset=dataset, steps=steps, trajectory_classes=traj,
                              remember_classes=rem, remember=remember)

  return Task(sample, jnp.asarray(images), "classification", tuple(images.shape[2:]), 1)
