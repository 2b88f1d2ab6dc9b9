"""The original OML procedure (Javed & White 2019), for the "Original OML" rows.

REFERENCE-OML.md (``../shared``) specifies what the authors' review-period
code (mrcl 1314da6) computes; its section 5 what flpjax does for rows
comparable with FLP's Tables 1 and 2. Everything OML shares with the
gradient baseline is reused, not rewritten: the learner is
`learners.gradient` (first-order inner SGD on the plastic layers' weights and
biases), lifetimes are `lifetime.query_loss`, the optimizer is
`meta.make_optimizer`, evaluation is `evaluate.evaluate` on the few-shot
meta-test task. This module adds only what OML does differently:

* **Regression (3)** (REFERENCE-OML 1, 5) is configuration: the gradient
  learner with 3 plastic layers, fixed SGD rate 0.003, first-order; Adam 1e-4
  on all tensors with ``MultiStepLR([1500, 2500, 3500], 0.3)`` (the
  ``meta.ff_milestones`` / ``meta.ff_decay`` fields, an
  ``optax.piecewise_constant_schedule`` built in `config.meta_lrs`); no
  clipping. `make_meta_step` with ``clamp=None, reset_row=False`` computes
  exactly `meta.make_meta_step`.
* **Classification (2)** (REFERENCE-OML 2.3, 3): the proxy task
  (`sample_oml_episode`): one trajectory class learned in ``S`` single-image
  SGD steps, then tested on its held-out images and on a "remember" batch of
  other classes, with raw class ids over the 1000-way readout; the readout
  row of the trajectory class is re-initialised in the meta-parameters
  before every episode (`reset_readout_row`); the meta-gradient is clamped
  elementwise to +-5 (`make_meta_step`).
* **Evaluation under FLP's protocol** (REFERENCE-OML 5): regression is the
  shared protocol (the gradient learner at 0.003, PLN not reset). Few-shot:
  FLP's online 5-way protocol with OML's own adaptation rule by default:
  readout re-initialised, fc1 kept, inner **Adam** (`adam_learner`) at a
  rate chosen by OML's search (`select_lr`) on the support images only;
  option: FLP's gradient evaluation (no reset, SGD at the meta-training rate).

Example (Omniglot proxy task on a uint8 ``[classes, images, H, W, C]`` array):
  >>> layers = nets.conv_classifier(256, 1024, 1000)
  >>> learner = learners.gradient(layers, (84, 84, 1), 2, output="classification", lr=0.03)
  >>> task = make_train_task(images, dataset="omniglot")
  >>> opt = meta.make_optimizer({"ff": 1e-4}, learner)
  >>> state = meta.init_state(learner, opt, jax.random.key(10000))
  >>> step = make_meta_step(learner, task, opt)          # clamp 5, row reset
  >>> state, metrics = step(state, jax.random.key(1), task.data)
"""

from __future__ import annotations

import collections
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flpjax import evaluate as evaluate_lib
from flpjax import learners
from flpjax import lifetime
from flpjax import meta
from flpjax import nets
from flpjax.learners import FastState, Learner, Params
from flpjax.lifetime import Episode
from flpjax.tasks import fewshot
from flpjax.tasks.base import Task, loss_fn

#: The 12 inner Adam rates of OML's Omniglot search (REFERENCE-OML 2.4), largest first.
OMNIGLOT_EVAL_LRS = (0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)
#: The 9 rates of OML's mini-ImageNet evaluation (REFERENCE-OML 3).
MINI_IMAGENET_EVAL_LRS = OMNIGLOT_EVAL_LRS[:9]
#: Class ranges ``[lo, hi)`` of the proxy task per data set (REFERENCE-OML 2.2, 3):
#: (trajectory classes, remember classes) of the meta-training split.
CLASS_RANGES = {
    "omniglot": ((481, 963), (0, 481)),
    "mini_imagenet": ((0, 64), (0, 64)),
}


# ----------------------------------------------------------------------------- proxy task


def proxy_positions(images_per_class: int, steps: int, max_held: int = 5
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Positions, in a shuffled class, of the trajectory and held-out images.

  OML walks the class's shuffled images with a counter ``1, 2, ...``: image
  ``counter`` is held out when ``counter % S == 0`` and joins the trajectory
  otherwise, until ``max_held`` are held out; the inner loop uses the first
  ``S`` trajectory images (REFERENCE-OML 2.3 table: S = 10 of 20 images gives
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
  """One episode of OML's meta-training proxy task (REFERENCE-OML 2.3, 3).

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


# ----------------------------------------------------------------------------- meta-step


def reset_readout_row(params: Params, readout: int, row: jax.Array, key: jax.Array) -> Params:
  """Re-initialises row ``row`` of the readout weight (OML's reset trick, REFERENCE-OML 2.3).

  The row gets kaiming-normal values with fan_in = the readout's input width
  (std ``sqrt(2 / in)``); the bias and every other row are untouched.

  Args:
    params: meta-parameters (``params['ff'][readout]['w']`` is ``(out, in)``).
    readout: index of the readout layer.
    row: the class id (int scalar, may be traced).
    key: PRNG key of the new row.

  Returns:
    New meta-parameters (the input is not modified).
  """
  w = params["ff"][readout]["w"]
  new_row = math.sqrt(2.0 / w.shape[1]) * jax.random.normal(key, w.shape[1:], w.dtype)
  ff = list(params["ff"])
  ff[readout] = {**ff[readout], "w": w.at[row].set(new_row)}
  return {**params, "ff": ff}


def make_meta_step(
    learner: Learner,
    task: Task,
    optimizer: optax.GradientTransformation,
    *,
    clamp: float | None = 5.0,
    reset_row: bool = True,
    meta_batch: int = 1,
    remat: lifetime.Remat = "step",
    chunk: int | None = None,
    jit: bool = True,
) -> Callable[[meta.TrainState, jax.Array, Any], tuple[meta.TrainState, dict]]:
  """OML's meta-training step ``(state, key, data) -> (state, metrics)``.

  Episodes and lifetimes are drawn from ``key`` exactly as in `meta.make_loss`
  (``meta_batch`` keys, each split into an episode key and an init key); then:

  1. ``reset_row``: the readout row of every episode's trajectory class
     (``episode.ys[0, 0]``) is re-initialised in the meta-parameters
     (`reset_readout_row`, key ``fold_in(key, 1)``); Adam's moments are kept.
     Default on for classification (REFERENCE-OML 2.3); must be off for
     regression, which has no class rows (REFERENCE-OML 1.3).
  2. The meta-gradient of the mean query loss at the reset parameters,
     clamped elementwise to ``[-clamp, clamp]`` (``clip_grad_params``,
     REFERENCE-OML 2.3: 5 for classification; ``None``: no clamp, regression
     1.4).
  3. The optimizer update of the reset parameters. A step whose loss or
     gradient is not finite leaves the parameters (the reset included) and
     the optimizer state untouched, as `meta.make_meta_step`.

  With ``clamp=None, reset_row=False`` this is `meta.make_meta_step`.

  Args:
    learner: the learner (`learners.gradient`, first-order, in OML).
    task: the meta-training task (`make_train_task`, or the sine task).
    optimizer: from `meta.make_optimizer` (``apply_if_finite`` outermost).
    clamp: elementwise bound of the meta-gradient, or None.
    reset_row: re-initialise the trajectory class's readout row.
    meta_batch: episodes per meta-step (OML: 1).
    remat, chunk: as `lifetime.run`.
    jit: jit the step (donating the state).

  Returns:
    The step. Metrics as `meta.make_meta_step`: ``loss`` (before the
    update), ``grad_norm`` (of the meta-gradient before clamping),
    ``finite``, ``nonfinite_total``, ``nonfinite_in_row``.
  """
  query_loss_fn = loss_fn(task.output)
  if clamp is not None and not clamp > 0:
    raise ValueError(f"clamp must be > 0 or None, got {clamp}")
  if reset_row and task.output != "classification":
    raise ValueError("reset_row needs a classification task (its targets are readout rows)")

  def episode_loss(params, episode, k_init):
    loss, _ = lifetime.query_loss(learner, params, episode, query_loss_fn, key=k_init,
                                  remat=remat, chunk=chunk)
    return loss

  def meta_step(state: meta.TrainState, key: jax.Array, data: Any):
    if meta_batch == 1:
      k_episode, k_init = jax.random.split(key)
      episodes = task.sample(k_episode, data)
      loss = lambda p: episode_loss(p, episodes, k_init)
      classes = episodes.ys[:1, 0]
    else:
      ks = jax.vmap(jax.random.split)(jax.random.split(key, meta_batch))
      k_episode, k_init = ks[:, 0], ks[:, 1]
      episodes = jax.vmap(task.sample, (0, None))(k_episode, data)
      loss = lambda p: jnp.mean(jax.vmap(episode_loss, (None, 0, 0))(p, episodes, k_init))
      classes = episodes.ys[:, 0, 0]
    params = state.params
    if reset_row:
      for i, k in enumerate(jax.random.split(jax.random.fold_in(key, 1), meta_batch)):
        params = reset_readout_row(params, learner.readout, classes[i], k)
    value, grads = jax.value_and_grad(loss)(params)
    grads = meta.guard(value, grads)
    grad_norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    if clamp is not None:
      grads = jax.tree.map(lambda g: jnp.clip(g, -clamp, clamp), grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    new = optax.apply_updates(params, updates)
    if reset_row:  # a skipped step does not keep the reset either
      new = jax.tree.map(lambda a, b: jnp.where(opt_state.last_finite, a, b), new, state.params)
    metrics = {
        "loss": value,
        "grad_norm": grad_norm,
        "finite": opt_state.last_finite,
        "nonfinite_total": opt_state.total_notfinite,
        "nonfinite_in_row": opt_state.notfinite_count,
    }
    return meta.TrainState(state.step + 1, new, opt_state), metrics

  return jax.jit(meta_step, donate_argnums=0) if jit else meta_step


# ----------------------------------------------------------------------------- evaluation


def adam_learner(
    layers: Sequence[nets.Layer],
    input_shape: Sequence[int],
    n_plastic: int,
    *,
    output: str = "classification",
    lr: float | jax.Array = 1e-3,
    reset_readout: bool = True,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> Learner:
  """OML's evaluation-time adaptation: inner Adam on the plastic layers (REFERENCE-OML 2.4).

  `learners.gradient` with its SGD step replaced by Adam (torch defaults:
  ``b1 = 0.9, b2 = 0.999``, ``eps`` added to ``sqrt(v_hat)``, bias-corrected;
  a fresh Adam per lifetime). By default the readout is re-initialised at
  birth (kaiming weights, zero bias) and the other plastic layers (fc1) keep
  their meta-learned values, as OML's evaluation. Fast state:
  ``{'pln': {layer: {'w', 'b'}}, 'adam': optax Adam state}``.

  Args:
    layers, input_shape, n_plastic, output: as `learners.gradient`.
    lr: the inner rate; may be a traced scalar (`select_lr` vmaps over it).
    reset_readout: re-initialise the readout at birth (OML: on).
    b1, b2, eps: Adam's constants.

  Returns:
    The `Learner` (its ``init`` needs a key when ``reset_readout``).
  """
  base = learners.gradient(layers, input_shape, n_plastic, output=output, lr=0.0,
                           reset_readout=reset_readout)
  adam = optax.adam(lr, b1=b1, b2=b2, eps=eps)

  def init(params: Params, key: jax.Array | None = None) -> FastState:
    pln = base.init(params, key)
    return {"pln": pln, "adam": adam.init(pln)}

  def predict(params: Params, fast: FastState, h: jax.Array) -> jax.Array:
    return base.predict(params, fast["pln"], h)

  def step(params: Params, fast: FastState, example) -> FastState:
    h, y = example
    grads = jax.grad(lambda f: learners.inner_loss(output, base.predict(params, f, h), y))(
        fast["pln"])
    updates, state = adam.update(jax.lax.stop_gradient(grads), fast["adam"], fast["pln"])
    return {"pln": optax.apply_updates(fast["pln"], updates), "adam": state}

  return Learner(base.init_params, init, base.encode, step, predict, base.plastic_layers,
                 base.readout)


def support_accuracy(learner: Learner, params: Params, episode: Episode,
                     key: jax.Array | None = None) -> jax.Array:
  """Accuracy on the support images themselves after a lifetime on them.

  OML's search criterion without ``--test`` (and HEAD's, REFERENCE-OML 2.4):
  the query images of ``episode`` are never read.
  """
  t, b = episode.xs.shape[:2]
  h = learner.encode(params, episode.xs.reshape((t * b,) + episode.xs.shape[2:]))
  fast, _ = lifetime.run_encoded(learner, params, h.reshape((t, b) + h.shape[1:]), episode.ys,
                                 key=key, remat="none")
  pred = learner.predict(params, fast, h)
  return jnp.mean(jnp.argmax(pred, axis=-1) == episode.ys.reshape(-1))


def select_lr(
    make_learner: Callable[[jax.Array], Learner],
    task: Task,
    params: Params,
    key: jax.Array,
    *,
    lrs: Sequence[float] = OMNIGLOT_EVAL_LRS,
    searches: int = 5,
) -> tuple[float, np.ndarray]:
  """OML's learning-rate search, on support images only (REFERENCE-OML 2.4, 5).

  ``searches`` times: draw a meta-test episode (fresh classes), adapt a
  learner at every rate of ``lrs`` on its support stream (the same stream
  and readout initialisation for every rate) and score it by its accuracy on
  those support images; keep the best rate (ties: the first in ``lrs``, as
  OML's strict ``>``). The result is the most frequent choice (ties: the
  first in ``lrs``). OML scored on the reported test images when run with
  ``--test``; here the query images are never read (`support_accuracy`).

  Args:
    make_learner: ``lr -> Learner`` (`adam_learner` with a traced rate).
    task: the meta-test task (support stream = the lifetime's images).
    params: meta-parameters.
    key: PRNG key of the searches (keep it apart from the evaluation's).
    lrs: candidate rates (OML Omniglot: the 12 of `OMNIGLOT_EVAL_LRS`).
    searches: independent searches (OML: 5).

  Returns:
    ``(best_lr, scores (searches, len(lrs)))``.
  """
  lrs_arr = jnp.asarray(lrs, jnp.float32)

  def score(p, k, lr, data):
    k_episode, k_init = jax.random.split(k)
    episode = task.sample(k_episode, data)
    return support_accuracy(make_learner(lr), p, episode, k_init)

  scores_fn = jax.jit(jax.vmap(score, (None, None, 0, None)))
  scores = np.stack([np.asarray(scores_fn(params, k, lrs_arr, task.data))
                     for k in jax.random.split(key, searches)])
  choices = [int(np.argmax(s)) for s in scores]
  counts = collections.Counter(choices)
  best = min(counts, key=lambda i: (-counts[i], i))
  return float(lrs[best]), scores


def evaluate_adam(
    make_learner: Callable[[jax.Array], Learner],
    task: Task,
    params: Params,
    key: jax.Array,
    *,
    lrs: Sequence[float] = OMNIGLOT_EVAL_LRS,
    searches: int = 5,
    lifetimes: int = 500,
    batch: int = 25,
) -> dict[str, Any]:
  """OML's adaptation rule under FLP's protocol: `select_lr`, then `evaluate.evaluate`.

  The search uses ``fold_in(key, 1)``; the lifetimes are those of
  `evaluate.evaluate` with ``key`` (the same lifetimes as every other row).

  Returns:
    `evaluate.evaluate`'s results plus ``oml_lr`` (the chosen rate),
    ``oml_lrs`` (the candidates) and ``oml_lr_scores`` (searches x rates
    support accuracies).
  """
  lr, scores = select_lr(make_learner, task, params, jax.random.fold_in(key, 1), lrs=lrs,
                         searches=searches)
  result = evaluate_lib.evaluate(make_learner(lr), task, params, key, lifetimes=lifetimes,
                                 batch=batch)
  result.update({"oml_lr": lr, "oml_lrs": [float(x) for x in lrs],
                 "oml_lr_scores": scores.tolist()})
  return result


# ----------------------------------------------------------------------------- from a config


def make_tasks(config) -> tuple[Task, Task]:
  """``(proxy task, meta-test task)`` of a validated few-shot config with ``procedure='oml'``.

  Meta-training: the proxy task over the whole meta-training split
  (`make_train_task`, fields ``config.oml.*``). Meta-testing: FLP's online
  N-way k-shot task (`fewshot.make_test_task`), as every other row.

  Raises:
    ConfigError: the class ranges or ``oml.steps`` do not fit the data.
  """
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  name = config.task
  train_split, _, _, _ = fewshot.SPLITS[name]
  images = datasets.load_split(name, train_split, data_dir=config.fewshot.data_dir or None,
                               image_size=config.fewshot.image_size)
  o = config.oml
  try:
    train_task = make_train_task(images, dataset=name, steps=o.steps,
                                 trajectory_classes=tuple(o.trajectory_classes),
                                 remember_classes=tuple(o.remember_classes),
                                 remember=o.remember)
  except ValueError as e:
    raise config_lib.ConfigError(f"config.oml: {e}") from None
  return train_task, _test_task(config)


def _test_task(config) -> Task:
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  if config.task == "sine":
    return config_lib.make_tasks(config)[1]
  name = config.task
  _, test_split, _, pool = fewshot.SPLITS[name]
  images = datasets.load_split(name, test_split, data_dir=config.fewshot.data_dir or None,
                               image_size=config.fewshot.image_size)
  return fewshot.make_test_task(images, dataset=name, ways=config.fewshot.ways,
                                shots=config.fewshot.shots, support_pool=pool,
                                order=config.order)


def evaluate_params(config, params: Params, lifetimes: int | None = None) -> dict[str, Any]:
  """Meta-test results of an OML run under ``config.eval`` (REFERENCE-OML 5).

  Regression, or ``oml.eval_rule='sgd'``: the config's own learner (the
  gradient learner at ``gradient.lr``, no reset), i.e. exactly
  `train.evaluate_params`. Few-shot with ``oml.eval_rule='adam'`` (default):
  `evaluate_adam` with `adam_learner` (readout reset, fc1 kept) over
  ``oml.eval_lrs`` with ``oml.lr_searches`` searches.
  """
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  task = _test_task(config)
  key = jax.random.key(config.eval.seed)
  lifetimes = lifetimes or config.eval.lifetimes
  if config.task == "sine" or config.oml.eval_rule == "sgd":
    return evaluate_lib.evaluate(config_lib.make_learner(config), task, params, key,
                                 lifetimes=lifetimes, batch=config.eval.batch)
  layers, input_shape = config_lib.network(config)

  def make_learner(lr):
    return adam_learner(layers, input_shape, config.plastic_layers,
                        output=config_lib.output_kind(config), lr=lr)

  return evaluate_adam(make_learner, task, params, key, lrs=tuple(config.oml.eval_lrs),
                       searches=config.oml.lr_searches, lifetimes=lifetimes,
                       batch=config.eval.batch)
