"""The original OML procedure (Javed & White 2019; docs/fidelity.md part II, OML), in one place.

Meta-training, OML's way, differs from FLP's protocol in three pieces, each here:

* **the proxy task** (`make_train_task`; docs/fidelity.md OML 2.3, 3): one
  trajectory class learned in ``S`` single-image SGD steps, then tested on its
  held-out images and on a "remember" batch of other classes, with raw class
  ids over the 1000-way readout (classification; regression meta-trains on the
  sine task itself, in ``oml.train_order``);
* **the meta-gradient** (`make`; OML 2.3): full backprop through the proxy
  lifetime with the readout row of the trajectory class re-initialised before
  each step (`reset_readout_row`) and the meta-gradient clamped elementwise;
* **the evaluation** (`evaluate_adam`; OML 2.4, 5): FLP's online 5-way
  protocol with OML's adaptation rule: readout re-initialised, fc1 kept, inner
  **Adam** (`adam_learner`) at a rate chosen by OML's search (`select_lr`) on
  the support images only; option: FLP's gradient evaluation.

Regression (3) is otherwise configuration: the gradient learner with 3 plastic
layers, fixed SGD rate 0.003, first-order; Adam 1e-4 on all tensors with
``MultiStepLR([1500, 2500, 3500], 0.3)`` (``meta.ff_milestones`` /
``meta.ff_decay``); no clipping. The config plug-in (``config.estimator =
'oml'``, `flpjax.config.registry`) is at the end: the ``oml`` section, its
checks, and the three pieces above built from a config.
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
from flpjax import learners, lifetime, nets, types
from flpjax.estimators import base, full
from flpjax.learners.base import Learner
from flpjax.tasks import fewshot, sine
from flpjax.types import Episode, FastState, Params, Task

# ----------------------------------------------------------------------------- the proxy task

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


# ----------------------------------------------------------------------------- the meta-gradient

def reset_readout_row(params: Params, readout: int, row: jax.Array, key: jax.Array) -> Params:
  """Re-initialises row ``row`` of the readout weight (OML's reset trick, docs/fidelity.md OML 2.3).

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


def make(learner: Learner, task: Task, *, clamp: float | None = 5.0, reset_row: bool = True,
         meta_batch: int = 1, remat: lifetime.Remat = "step", chunk: int | None = None
         ) -> base.Estimator:
  """OML's estimator (see the module docstring).

  Args:
    learner: the learner (`learners.gradient`, first-order, in OML).
    task: the meta-training task (`make_train_task`, or sine).
    clamp: elementwise bound of the meta-gradient, or None.
    reset_row: re-initialise the trajectory class's readout row.
    meta_batch: episodes per meta-step (OML: 1).
    remat, chunk: as `lifetime.run`.

  Raises:
    ValueError: a bad clamp, or ``reset_row`` on a regression task.
  """
  if clamp is not None and not clamp > 0:
    raise ValueError(f"clamp must be > 0 or None, got {clamp}")
  if reset_row and task.output != "classification":
    raise ValueError("reset_row needs a classification task (its targets are readout rows)")
  loss = full.make_loss(learner, task, meta_batch=meta_batch, remat=remat, chunk=chunk)

  def prepare(params, key, data):
    if not reset_row:
      return params
    if meta_batch == 1:
      classes = task.sample(jax.random.split(key)[0], data).ys[:1, 0]
    else:
      ks = jax.vmap(jax.random.split)(jax.random.split(key, meta_batch))
      classes = jax.vmap(task.sample, (0, None))(ks[:, 0], data).ys[:, 0, 0]
    for i, k in enumerate(jax.random.split(jax.random.fold_in(key, 1), meta_batch)):
      params = reset_readout_row(params, learner.readout, classes[i], k)
    return params

  def meta_grad(params, key, data):
    value, grads = jax.value_and_grad(loss)(params, key, data)
    grads = base.guard(value, grads)
    metrics = {"loss": value, "grad_norm": base.global_norm(grads)}
    if clamp is not None:
      grads = jax.tree.map(lambda g: jnp.clip(g, -clamp, clamp), grads)
    return grads, metrics

  return base.stateless(meta_grad, prepare, name="oml")


# ----------------------------------------------------------------------------- the evaluation

#: The 12 inner Adam rates of OML's Omniglot search (docs/fidelity.md OML 2.4), largest first.
OMNIGLOT_EVAL_LRS = (0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)
#: The 9 rates of OML's mini-ImageNet evaluation (docs/fidelity.md OML 3).
MINI_IMAGENET_EVAL_LRS = OMNIGLOT_EVAL_LRS[:9]


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
  """OML's evaluation-time adaptation: inner Adam on the plastic layers (docs/fidelity.md OML 2.4).

  `learners.gradient` with its SGD step replaced by Adam (torch defaults:
  ``b1 = 0.9, b2 = 0.999``, ``eps`` added to ``sqrt(v_hat)``, bias-corrected;
  a fresh Adam per lifetime). By default the readout is re-initialised at
  birth (kaiming weights, zero bias) and the other plastic layers (fc1) keep
  their meta-learned values, as OML's evaluation. Fast state:
  ``{'pln': {layer: {'w': (out, in), 'b': (out,)}}, 'adam': optax Adam state}``
  (Adam's moments of the shapes of ``'pln'``).

  Args:
    layers, input_shape, n_plastic, output: as `learners.gradient`.
    lr: the inner rate, a float or ``()`` array; may be traced (`select_lr`
      vmaps over it).
    reset_readout: re-initialise the readout at birth (OML: on).
    b1, b2, eps: Adam's constants.

  Returns:
    The `Learner` (its ``init`` needs a key when ``reset_readout``).
  """
  sgd = learners.gradient(layers, input_shape, n_plastic, output=output, lr=0.0,
                          reset_readout=reset_readout)
  adam = optax.adam(lr, b1=b1, b2=b2, eps=eps)

  def init(params: Params, key: jax.Array | None = None) -> FastState:
    pln = sgd.init(params, key)
    return {"pln": pln, "adam": adam.init(pln)}

  def predict(params: Params, fast: FastState, h: jax.Array) -> jax.Array:
    return sgd.predict(params, fast["pln"], h)

  def step(params: Params, fast: FastState, example) -> FastState:
    h, y = example
    grads = jax.grad(lambda f: types.loss(output, sgd.predict(params, f, h), y))(fast["pln"])
    updates, state = adam.update(jax.lax.stop_gradient(grads), fast["adam"], fast["pln"])
    return {"pln": optax.apply_updates(fast["pln"], updates), "adam": state}

  return sgd._replace(init=init, step=step, predict=predict,
                      plastic_weights=lambda fast: learners.base.weights_of(fast["pln"]))


def support_accuracy(learner: Learner, params: Params, episode: Episode,
                     key: jax.Array | None = None) -> jax.Array:
  """Accuracy ``()`` on the support images themselves after a lifetime on them.

  OML's search criterion without ``--test`` (and HEAD's, docs/fidelity.md OML 2.4):
  the query images of ``episode`` are never read; its support is ``xs (T, B,
  *input_shape)`` with integer labels ``ys (T, B)``. ``key`` ``()`` is for
  ``learner.init``.
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
  """OML's learning-rate search, on support images only (docs/fidelity.md OML 2.4, 5).

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
    params: meta-parameters (``learner.init_params``'s tree).
    key: PRNG key ``()`` of the searches (keep it apart from the evaluation's).
    lrs: candidate rates (OML Omniglot: the 12 of `OMNIGLOT_EVAL_LRS`).
    searches: independent searches (OML: 5).

  Returns:
    ``(best_lr, scores)``: a float and the support accuracies, NumPy
    ``(searches, n_lrs)`` with ``n_lrs = len(lrs)``.
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

  Args:
    make_learner, task, params, lrs, searches: as `select_lr`.
    key: PRNG key ``()``.
    lifetimes, batch: as `evaluate.evaluate`.

  Returns:
    `evaluate.evaluate`'s results plus ``oml_lr`` (the chosen rate),
    ``oml_lrs`` (the candidates) and ``oml_lr_scores`` (`select_lr`'s
    support accuracies ``(searches, n_lrs)``, as nested lists).
  """
  lr, scores = select_lr(make_learner, task, params, jax.random.fold_in(key, 1), lrs=lrs,
                         searches=searches)
  result = evaluate_lib.evaluate(make_learner(lr), task, params, key, lifetimes=lifetimes,
                                 batch=batch)
  result.update({"oml_lr": lr, "oml_lrs": [float(x) for x in lrs],
                 "oml_lr_scores": scores.tolist()})
  return result


# ----------------------------------------------------------------------------- config plug-in
# config.estimator = 'oml' (flpjax.config.registry): the rows "Original OML".

#: ``train_order`` (sine): the stream order of meta-training; '' = ``config.order`` (the
#: i.i.d. column meta-trains on i.i.d. streams as every other row, OML 5), 'continual' =
#: OML's only training order, evaluated on ``config.order``.
#: The few-shot proxy task (OML 2.3, 3): ``steps`` single-image inner steps on one
#: trajectory class, a remember batch of ``remember`` images from other classes,
#: ``[lo, hi)`` class ranges of the meta-training split (Omniglot's; mini-ImageNet's
#: are `CLASS_RANGES`); ``reset_row`` re-initialises the trajectory class's readout row
#: every episode; ``clamp``: elementwise meta-gradient clamp (0 = none; regression, OML 1.4).
#: Few-shot evaluation: ``eval_rule`` 'adam' = OML's rule (`evaluate_adam` over
#: ``eval_lrs``, ``lr_searches`` searches), 'sgd' = FLP's gradient evaluation (no reset,
#: SGD at ``gradient.lr``); regression always uses the shared protocol.
CONFIG = {"oml": dict(
    train_order="", steps=10, remember=10, trajectory_classes=CLASS_RANGES["omniglot"][0],
    remember_classes=CLASS_RANGES["omniglot"][1], reset_row=True, clamp=5.0,
    eval_rule="adam", eval_lrs=OMNIGLOT_EVAL_LRS, lr_searches=5)}
LEARNERS = ("gradient",)
STORES_LIFETIME = True


def validate_config(config) -> None:
  """Checks ``config.oml`` against the task."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  checks.check_bool(config, "oml.reset_row")
  checks.check_float(config, "oml.clamp", 0.0)
  if config.task == "custom":
    checks.fail("task", config.task, "'omniglot' or 'mini_imagenet' with estimator='oml' "
                "(its proxy task's class ranges are theirs)")
  if config.task == "sine":
    checks.check_choice(config, "oml.train_order", ("", "iid", "continual"))
    if config.oml.reset_row:
      checks.fail("oml.reset_row", True, "False for sine (no class rows to reset)")
    return
  if config.oml.train_order:
    checks.fail("oml.train_order", config.oml.train_order, "'' (the proxy task has no "
                "stream order)")
  checks.check_int(config, "oml.steps", 2)
  checks.check_int(config, "oml.remember", 0)
  for name in ("trajectory_classes", "remember_classes"):
    r = config.oml[name]
    if (not isinstance(r, (tuple, list)) or len(r) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in r)
        or not 0 <= r[0] < r[1] <= config.net.readout):
      checks.fail(f"oml.{name}", r, f"(lo, hi) integers with 0 <= lo < hi <= net.readout="
                  f"{config.net.readout} (raw class ids are readout rows)")
  checks.check_choice(config, "oml.eval_rule", ("adam", "sgd"))
  checks.check_positive_numbers(config, "oml.eval_lrs")
  checks.check_int(config, "oml.lr_searches", 1)


def from_config(config, learner: Learner, task: Task) -> base.Estimator:
  """`make` from ``config.oml`` and ``config.meta``."""
  m = config.meta
  return make(learner, task, clamp=config.oml.clamp or None, reset_row=config.oml.reset_row,
              meta_batch=m.batch_size, remat=m.remat, chunk=m.chunk or None)


def train_lifetime_steps(config) -> int:
  """``T``: ``oml.steps`` on the proxy task; the sine task's own on sine."""
  return sine.lifetime_steps(config) if config.task == "sine" else config.oml.steps


def train_task(config) -> Task:
  """Sine: the sine task in ``oml.train_order``; few-shot: OML's proxy task over the
  training split."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  if config.task == "sine":
    return sine.train_task(config, order=config.oml.train_order or None)
  images = fewshot.load(config, fewshot.SPLITS[config.task][0])
  o = config.oml
  try:
    return make_train_task(images, dataset=config.task, steps=o.steps,
                           trajectory_classes=tuple(o.trajectory_classes),
                           remember_classes=tuple(o.remember_classes), remember=o.remember)
  except ValueError as e:
    raise checks.ConfigError(f"config.oml: {e}") from None


def evaluate(config, params: Params, lifetimes: int) -> dict:
  """OML's rows (OML 5): few-shot with ``oml.eval_rule='adam'`` is `evaluate_adam`;
  otherwise the shared protocol (`flpjax.evaluate.evaluate` with the config's learner).

  ``params``: the config's learner's meta-parameters (leaf shapes:
  `learners.param_labels`); the result is `evaluate.evaluate`'s (per-lifetime
  values ``(n,)`` as lists, ``n = lifetimes``).
  """
  from flpjax.config import build  # pylint: disable=g-import-not-at-top
  task = build.task_plugin(config).test_task(config)
  key = jax.random.key(config.eval.seed)
  if config.task == "sine" or config.oml.eval_rule == "sgd":
    return evaluate_lib.evaluate(build.make_learner(config), task, params, key,
                                 lifetimes=lifetimes, batch=config.eval.batch)
  layers, input_shape = build.network(config)

  def adam(lr):
    return adam_learner(layers, input_shape, config.plastic_layers,
                        output=build.output_kind(config), lr=lr)

  return evaluate_adam(adam, task, params, key, lrs=tuple(config.oml.eval_lrs),
                       searches=config.oml.lr_searches, lifetimes=lifetimes,
                       batch=config.eval.batch)
