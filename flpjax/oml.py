"""OML's evaluation under FLP's protocol (Javed & White 2019; docs/fidelity.md OML 2.4, 5).

The original OML procedure is spread over the seams it uses, nothing forked:

* regression (3) is configuration: the gradient learner with 3 plastic
  layers, fixed SGD rate 0.003, first-order; Adam 1e-4 on all tensors with
  ``MultiStepLR([1500, 2500, 3500], 0.3)`` (``meta.ff_milestones`` /
  ``meta.ff_decay``); no clipping;
* classification (2): the proxy task is `flpjax.tasks.oml_proxy`; the
  readout-row reset and the clamped meta-gradient are the estimator
  `flpjax.estimators.oml`;
* evaluation (this module): regression is the shared protocol (the gradient
  learner at 0.003). Few-shot: FLP's online 5-way protocol with OML's own
  adaptation rule by default: readout re-initialised, fc1 kept, inner
  **Adam** (`adam_learner`) at a rate chosen by OML's search (`select_lr`)
  on the support images only; option: FLP's gradient evaluation.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flpjax import evaluate as evaluate_lib
from flpjax import learners
from flpjax import lifetime
from flpjax import nets
from flpjax import types
from flpjax.learners import Learner
from flpjax.types import Episode, FastState, Params, Task

#: The 12 inner Adam rates of OML's Omniglot search (docs/fidelity.md OML 2.4), largest first.
OMNIGLOT_EVAL_LRS = (0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)
#: The 9 rates of OML's mini-ImageNet evaluation (docs/fidelity.md OML 3).
MINI_IMAGENET_EVAL_LRS = OMNIGLOT_EVAL_LRS[:9]
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
  """OML's evaluation-time adaptation: inner Adam on the plastic layers (docs/fidelity.md OML 2.4).

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
    grads = jax.grad(lambda f: types.loss(output, base.predict(params, f, h), y))(fast["pln"])
    updates, state = adam.update(jax.lax.stop_gradient(grads), fast["adam"], fast["pln"])
    return {"pln": optax.apply_updates(fast["pln"], updates), "adam": state}

  return base._replace(init=init, step=step, predict=predict,
                       plastic_weights=lambda fast: learners.base.weights_of(fast["pln"]))


def support_accuracy(learner: Learner, params: Params, episode: Episode,
                     key: jax.Array | None = None) -> jax.Array:
  """Accuracy on the support images themselves after a lifetime on them.

  OML's search criterion without ``--test`` (and HEAD's, docs/fidelity.md OML 2.4):
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
