"""Analyses of meta-trained learners: Section 7 and Figure 2 of the paper.

Pure functions of a `Learner`, its meta-parameters and lifetimes. Each works
for any learner (FLP or gradient-based), is jittable, and maps over many
lifetimes with `map_lifetimes` (``jax.lax.map`` over batches of ``vmap``).

* `frozen_readout` (Figure 2A): every non-readout layer frozen at its
  meta-learned *initial* weights, the readout fitted to convergence on the
  lifetime's data; query metrics of that network.
* `interference` (Figure 2B): on a continual lifetime, the mean squared change
  of the outputs on earlier functions' examples caused by learning each new
  function.
* `gradient_alignment` (Figure 2C): per step and plastic layer, the cosine
  between the weight update made and the negative gradient of the step's loss;
  `periodicity` (NumPy, on a stored curve): whether such a curve repeats with
  a continual lifetime's functions.
* `update_norms` (Figure 2D): per step and plastic layer, the Frobenius norm
  of the weight update (optionally relative to the weights).
* `extend_plasticity` (Section 7.1): a feature-reuse network's meta-parameters
  as the start of an FLP network with more plastic layers whose feed-forward
  initialisation is frozen for meta-training.

Plastic layers are always listed in the order of ``learner.plastic_layers``
(input side first, readout last).

Example:
  >>> learner = learners.flp(nets.regression_mlp(), (11,), n_plastic=3)
  >>> params = learner.init_params(jax.random.key(0))
  >>> episode = sine.sample_episode(jax.random.key(1), order="continual")
  >>> interference(learner, params, episode, n_functions=10).shape
  (10,)
  >>> update_norms(learner, params, episode.xs, episode.ys).shape
  (400, 3)
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from flpjax import lifetime
from flpjax.learners import FastState, Learner, Params, inner_loss
from flpjax.learners.base import weights_of
from flpjax.tasks.base import Task, metrics as task_metrics

ReadoutFit = Literal["least_squares", "softmax"]
READOUT_FITS = ("least_squares", "softmax")


# --------------------------------------------------------------------------- lifetimes


def map_lifetimes(
    fn: Callable[[Params, lifetime.Episode, jax.Array], Any],
    params: Params,
    task: Task,
    key: jax.Array,
    *,
    lifetimes: int,
    batch: int = 10,
) -> Any:
  """Runs ``fn(params, episode, init_key)`` on ``lifetimes`` fresh lifetimes of ``task``.

  Lifetime ``i`` uses ``k_episode, k_init = split(split(key, lifetimes)[i])``,
  as `evaluate.evaluate`, so the same key gives the same lifetimes there and
  in every analysis.

  Args:
    fn: a jittable analysis of one lifetime; ``init_key`` ``()`` is for ``learner.init``.
    params: meta-parameters (``learner.init_params``'s tree).
    task: the task whose ``sample`` draws the lifetimes.
    key: PRNG key ``()``.
    lifetimes: number of lifetimes, ``L``.
    batch: lifetimes evaluated together with ``vmap``.

  Returns:
    ``fn``'s outputs stacked over lifetimes, on the host: every leaf ``(L, ...)``,
    e.g. ``(L, T, n_plastic)`` for `update_norms`.
  """
  keys = jax.random.split(key, lifetimes)

  @jax.jit
  def run_all(params, keys, data):
    def one(k):
      k_episode, k_init = jax.random.split(k)
      return fn(params, task.sample(k_episode, data), k_init)

    return jax.lax.map(one, keys, batch_size=min(batch, lifetimes))

  return jax.device_get(run_all(params, keys, task.data))


# --------------------------------------------------------------------------- Figure 2A


def readout_features(
    learner: Learner,
    params: Params,
    x: jax.Array,
    fast: FastState | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
  """The readout's input (penultimate activity) ``(N, d)`` for raw inputs ``x (N, ...)``.

  The network runs with the fast state ``fast`` (default: ``learner.init``,
  i.e. every layer at its meta-learned initial weights). Works for any
  learner by replacing the readout with the identity (weights ``eye(d)``,
  zero bias) and calling ``learner.predict``; the penultimate activity of
  the library's networks is post-ReLU, so the readout's own activation
  (linear in both networks) does not change it.

  Args:
    learner: the learner.
    params: meta-parameters.
    x: raw inputs ``(N, *input_shape)``.
    fast: fast state (default ``learner.init(params, key)``).
    key: for ``learner.init``; it only affects the readout, which is discarded.

  Returns:
    ``(N, d)`` with ``d`` the readout's input width.
  """
  if fast is None:
    fast = learner.init(params, jax.random.key(0) if key is None else key)
  r = str(learner.readout)
  d = fast[r]["w"].shape[1]
  dtype = fast[r]["w"].dtype
  identity = {"w": jnp.eye(d, dtype=dtype), "b": jnp.zeros((d,), dtype)}
  fast = dict(fast)
  fast[r] = {k: identity[k] for k in fast[r]}
  ff = list(params["ff"])
  ff[learner.readout] = identity
  params = dict(params, ff=ff)
  return lifetime.predict(learner, params, fast, x)


def _targets(y: jax.Array, output: str, width: int) -> jax.Array:
  if output == "classification":
    return jax.nn.one_hot(y.reshape(-1), width, dtype=jnp.float32)
  return y.reshape(y.shape[0], -1)


def fit_readout(
    h: jax.Array,
    y: jax.Array,
    w0: jax.Array,
    b0: jax.Array,
    *,
    output: str = "regression",
    method: ReadoutFit = "least_squares",
    ridge: float = 0.0,
    l2: float = 1e-3,
    iterations: int = 200,
) -> tuple[jax.Array, jax.Array]:
  """A linear readout ``y ~ h @ w.T + b`` fitted to convergence from ``(w0, b0)``.

  ``'least_squares'``: the limit of full-batch gradient descent on the mean squared
  error started at ``(w0, b0)``, in closed form: ``theta = theta0 +
  X^+ (Y - X theta0)`` with ``X = [h, 1]`` and ``X^+`` the pseudo-inverse,
  computed from the SVD of ``X``: singular values below ``eps * max(N, d + 1) *
  s_max`` are dropped (numpy's ``lstsq`` cut-off); ``ridge > 0`` optionally
  damps the rest, ``s / (s^2 + lambda)`` with ``lambda = ridge * s_max^2``
  (the ridge solution). Directions the features do not span keep their
  initial values, as under gradient descent.
  Targets are the regression targets, or one-hot labels over all readout units
  for classification (a least-squares classifier).

  ``'softmax'`` (classification): minimises the mean cross-entropy over all
  readout units plus ``l2 / 2 * |theta - theta0|^2`` with ``iterations``
  steps of L-BFGS (optax, zoom line search). The penalty makes the optimum
  finite (few-shot episodes are linearly separable, where the unpenalised
  cross-entropy has no minimiser) and anchors the null space of the features
  at the meta-learned readout.

  Args:
    h: features ``(N, d)``.
    y: targets ``(N, m)`` (regression) or integer labels ``(N,)`` / ``(N, 1)``.
    w0: initial readout weights ``(m, d)``; ``b0``: initial bias ``(m,)``.
    output: ``'regression'`` or ``'classification'``.
    method: ``'least_squares'`` or ``'softmax'`` (classification only).
    ridge: relative damping of the solve (0: the exact limit of gradient descent).
    l2: weight of the penalty of the softmax fit.
    iterations: L-BFGS iterations of the softmax fit.

  Returns:
    ``(w (m, d), b (m,))``.

  Example:
    >>> w, b = fit_readout(h, h @ w_true.T + 0.5, jnp.zeros((1, 8)), jnp.zeros(1))
  """
  if method not in READOUT_FITS:
    raise ValueError(f"unknown readout fit {method!r}; expected one of {READOUT_FITS}")
  if method == "softmax" and output != "classification":
    raise ValueError("the softmax readout fit is for classification; use method='least_squares'")
  m, d = w0.shape
  x = jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)   # (N, d + 1)
  theta0 = jnp.concatenate([w0.T, b0[None]], axis=0)                     # (d + 1, m)
  if method == "least_squares":
    u, s, vt = jnp.linalg.svd(x, full_matrices=False)
    lam = ridge * jnp.max(s) ** 2
    residual = _targets(y, output, m).astype(x.dtype) - x @ theta0
    cutoff = jnp.finfo(x.dtype).eps * max(x.shape) * jnp.max(s)        # numpy's lstsq rcond
    inv = jnp.where(s > cutoff, s / (s * s + lam), 0.0)
    theta = theta0 + vt.T @ (inv[:, None] * (u.T @ residual))
  else:
    labels = y.reshape(-1).astype(jnp.int32)

    def objective(theta):
      logp = jax.nn.log_softmax(x @ theta, axis=-1)
      ce = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
      return ce + 0.5 * l2 * jnp.sum((theta - theta0) ** 2)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def body(carry, _):
      theta, state = carry
      value, grad = value_and_grad(theta, state=state)
      updates, state = opt.update(grad, state, theta, value=value, grad=grad,
                                  value_fn=objective)
      return (optax.apply_updates(theta, updates), state), None

    (theta, _), _ = jax.lax.scan(body, (theta0, opt.init(theta0)), None, length=iterations)
  return theta[:d].T, theta[d]


def frozen_readout(
    learner: Learner,
    params: Params,
    episode: lifetime.Episode,
    *,
    output: str = "regression",
    method: ReadoutFit = "least_squares",
    ridge: float = 0.0,
    l2: float = 1e-3,
    iterations: int = 200,
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Figure 2A: query metrics of the frozen initial network with a fitted readout.

  Every non-readout layer keeps its meta-learned initial weights
  (``params['ff']``, the fast state at birth); the readout (weights and
  bias) is fitted to convergence (`fit_readout`, from the meta-learned readout)
  on the penultimate features of the lifetime's whole support stream, which
  for the sine task is ``T * B`` i.i.d. points of the lifetime's functions
  (the fit does not depend on their order). The result is what the network's
  initial feature extractor supports "from birth" with a perfectly trained
  linear readout; compare it with the learner's own query metrics on the same
  lifetime (`evaluate.make_lifetime_metrics`).

  Args:
    learner: the learner (any number of plastic layers).
    params: meta-parameters.
    episode: one lifetime: support ``xs (T, B, ...)``, ``ys (T, B, ...)``; query
      ``xq (Q, ...)``, ``yq (Q, ...)``.
    output: ``'regression'`` or ``'classification'`` (``task.output``).
    method, ridge, l2, iterations: see `fit_readout`.
    key: for ``learner.init`` (only a reset readout depends on it, and the
      readout is refitted).

  Returns:
    `tasks.base.metrics` of the query predictions: ``{'mse': ()}`` or
    ``{'accuracy', 'error', 'loss': ()}``.

  Example:
    >>> frozen_readout(learner, params, episode)["mse"]
  """
  t, b = episode.xs.shape[:2]
  fast = learner.init(params, jax.random.key(0) if key is None else key)
  x_support = episode.xs.reshape((t * b,) + episode.xs.shape[2:])
  y_support = episode.ys.reshape((t * b,) + episode.ys.shape[2:])
  h = readout_features(learner, params, x_support, fast)
  readout = params["ff"][learner.readout]
  w, bias = fit_readout(h, y_support, readout["w"], readout["b"], output=output, method=method,
                        ridge=ridge, l2=l2, iterations=iterations)
  pred = readout_features(learner, params, episode.xq, fast) @ w.T + bias
  return task_metrics(output, pred, episode.yq)


# --------------------------------------------------------------------------- Figure 2B


def outputs_after_blocks(
    learner: Learner,
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    x_eval: jax.Array,
    n_blocks: int,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
  """Outputs on ``x_eval`` at birth and after each of ``n_blocks`` equal blocks of steps.

  Args:
    learner, params: the learner and its meta-parameters.
    xs: support inputs ``(T, B, ...)``, ``T`` divisible by ``n_blocks``.
    ys: support targets ``(T, B, ...)``.
    x_eval: raw inputs ``(N, ...)`` to read the network on.
    n_blocks: number of blocks.
    key: for ``learner.init``.

  Returns:
    ``(n_blocks + 1, N, m)``: entry 0 at birth, entry ``k`` after block ``k - 1``.
  """
  t = xs.shape[0]
  if t % n_blocks:
    raise ValueError(f"{t} steps do not split into {n_blocks} equal blocks")
  fast = learner.init(params, key)
  h_eval = learner.encode(params, x_eval)
  h = lifetime.encode_stream(learner, params, xs)         # the frozen trunk, once
  split = lambda a: a.reshape((n_blocks, t // n_blocks) + a.shape[1:])

  def block(fast, data):
    fast, _ = lifetime.run_encoded(learner, params, *data, fast=fast, remat="none")
    return fast, learner.predict(params, fast, h_eval)

  _, outs = jax.lax.scan(block, fast, (split(h), split(ys)))
  return jnp.concatenate([learner.predict(params, fast, h_eval)[None], outs])


def interference(
    learner: Learner,
    params: Params,
    episode: lifetime.Episode,
    n_functions: int,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
  """Figure 2B: how much learning each function changes the outputs on earlier ones.

  The lifetime must be continual: its ``T`` support steps are ``n_functions``
  consecutive blocks of ``T / n_functions`` steps, one function each, and its
  query set holds equally many examples of every function in function order
  (the sine task's layout). Entry ``f`` is the mean, over the query examples
  of functions ``0 .. f-1`` (and output units), of the squared change of the
  network's output between the end of block ``f - 1`` (before it meets
  function ``f``) and the end of block ``f``. The x-axis of the figure,
  "functions encountered so far", is ``f + 1``.

  Args:
    learner, params: the learner and its meta-parameters.
    episode: a continual lifetime (``xs (T, B, ...)``, ``xq (F Q, ...)``).
    n_functions: ``F``.
    key: for ``learner.init``.

  Returns:
    ``(F,)``; entry 0 is NaN (no earlier function).

  Example:
    >>> episode = sine.sample_episode(key, order="continual")
    >>> interference(learner, params, episode, n_functions=10)[1:].mean()
  """
  n = episode.xq.shape[0]
  if n % n_functions:
    raise ValueError(f"{n} query examples do not split into {n_functions} functions")
  outs = outputs_after_blocks(learner, params, episode.xs, episode.ys, episode.xq, n_functions,
                              key=key)
  change = jnp.mean((outs[1:] - outs[:-1]) ** 2, axis=tuple(range(2, outs.ndim)))   # (F, N)
  function_of = jnp.arange(n) // (n // n_functions)
  earlier = function_of[None, :] < jnp.arange(n_functions)[:, None]                  # (F, N)
  count = jnp.sum(earlier, axis=1)
  total = jnp.sum(jnp.where(earlier, change, 0.0), axis=1)
  return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


# --------------------------------------------------------------------------- Figure 2C, 2D


def _cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  denom = jnp.linalg.norm(a) * jnp.linalg.norm(b)
  return jnp.where(denom > 0, jnp.vdot(a, b) / jnp.where(denom > 0, denom, 1.0), jnp.nan)


def _weights(learner: Learner, fast: FastState) -> dict:
  """``{layer: W}``: the learner's plastic weights (`Learner.plastic_weights`)."""
  return (learner.plastic_weights or weights_of)(fast)


def gradient_alignment(
    learner: Learner,
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    *,
    output: str = "regression",
    key: jax.Array | None = None,
) -> jax.Array:
  """Figure 2C: cosine between each weight update and the negative loss gradient.

  At step ``k`` and plastic layer ``l``: ``cos(W_l^{k+1} - W_l^k, -dL_k/dW_l)``
  where ``L_k`` is the loss of the step's own batch under the current fast
  weights ``W^k`` (`learners.inner_loss`: mean squared error, or mean
  cross-entropy over the readout's logits). Weights only; a gradient
  learner's bias updates are not included. A plain SGD learner gives exactly 1.

  Args:
    learner, params: the learner and its meta-parameters.
    xs: support inputs ``(T, B, ...)``; ``ys``: targets ``(T, B, ...)``.
    output: ``'regression'`` or ``'classification'`` (``task.output``).
    key: for ``learner.init``.

  Returns:
    ``(T, n_plastic)``; NaN where the update or the gradient is exactly zero.

  Example:
    >>> gradient_alignment(learner, params, episode.xs, episode.ys).mean(0)
  """

  def observe(params, before, after, example):
    h, y = example
    grads = jax.grad(lambda f: inner_loss(output, learner.predict(params, f, h), y))(before)
    w0, w1, g = (_weights(learner, t) for t in (before, after, grads))
    return jnp.stack([_cosine(w1[str(l)] - w0[str(l)], -g[str(l)])
                      for l in learner.plastic_layers])

  _, cosines = lifetime.run(learner, params, xs, ys, key=key, remat="none", observe=observe)
  return cosines


def periodicity(curve, period: int) -> float:
  """Figure 2C's periodicity: whether a curve repeats with the continual task's functions.

  One-way analysis of variance of ``curve`` grouped by the step within a period
  (``t mod period``), the ``T // period`` periods (a continual lifetime's functions,
  each ``period`` steps) as the replicates; NaN steps are left out. A curve that rises
  or falls the same way within every function gives a small p-value; one whose
  variation does not follow the functions (an i.i.d. lifetime's) gives a p-value
  uniform on [0, 1].

  Args:
    curve: ``(T,)``, e.g. one layer's column of `gradient_alignment` (mean over
      lifetimes); ``T`` a multiple of ``period``.
    period: steps per function.

  Returns:
    The p-value of the F statistic (``scipy.stats.f_oneway``'s); NaN with fewer than
    two periods or positions, 1.0 for a constant curve.

  Example:
    >>> periodicity(gradient_alignment(learner, params, xs, ys).mean(0)[:, 0], 20)
  """
  curve = np.asarray(curve, np.float64)
  if curve.ndim != 1 or period < 2 or len(curve) % period:
    raise ValueError(f"periodicity: curve of shape {curve.shape} is not (T,) with T a "
                     f"multiple of period={period}")
  if len(curve) // period < 2:
    return float("nan")
  groups = [g[np.isfinite(g)] for g in curve.reshape(-1, period).T]
  groups = [g for g in groups if len(g)]
  if len(groups) < 2 or sum(map(len, groups)) <= len(groups):
    return float("nan")
  if all(np.all(g == g[0]) for g in groups):  # no variation within a step: F undefined
    return 0.0 if len({float(g[0]) for g in groups}) > 1 else 1.0
  return float(stats.f_oneway(*groups).pvalue)


def update_norms(
    learner: Learner,
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    *,
    relative: bool = False,
    key: jax.Array | None = None,
) -> jax.Array:
  """Figure 2D: Frobenius norm of every weight update.

  Args:
    learner, params: the learner and its meta-parameters.
    xs: support inputs ``(T, B, ...)``; ``ys``: targets ``(T, B, ...)``.
    relative: divide by the norm of the weights before the update,
      ``|W^{k+1} - W^k| / |W^k|``.
    key: for ``learner.init``.

  Returns:
    ``(T, n_plastic)``: ``|W_l^{k+1} - W_l^k|_F`` per step ``k`` and plastic layer ``l``.

  Example:
    >>> update_norms(learner, params, episode.xs, episode.ys).mean(0)
  """

  def observe(params, before, after, example):
    del params, example
    norms = []
    w0, w1 = _weights(learner, before), _weights(learner, after)
    for l in learner.plastic_layers:
      w = w0[str(l)]
      n = jnp.linalg.norm(w1[str(l)] - w)
      norms.append(n / jnp.linalg.norm(w) if relative else n)
    return jnp.stack(norms)

  _, norms = lifetime.run(learner, params, xs, ys, key=key, remat="none", observe=observe)
  return norms


# --------------------------------------------------------------------------- Section 7.1


def extend_plasticity(
    learner: Learner,
    source: Params,
    key: jax.Array,
    lrs: Mapping[str, float],
) -> tuple[Params, dict[str, float]]:
  """Section 7.1: more plastic layers on top of a feature-reuse network's initialisation.

  Builds ``learner``'s meta-parameters (an FLP network with more plastic
  layers than ``source``) from ``learner.init_params(key)``, then copies
  ``source['ff']`` (every layer's feed-forward initialisation) and every
  ``fb`` / ``alpha`` / ``beta`` entry of a layer that is plastic in both
  (the readout's plasticity, feedback and feedback strength). Layers that
  become plastic start from the learner's initial values. The returned
  learning rates are ``lrs`` with ``'ff'`` set to 0, so that
  ``meta.make_optimizer(lrs, learner)`` keeps the feed-forward weights fixed
  (bit-identical) while the rest is meta-trained.

  With the binaries the same experiment, without copying the readout's
  plasticity, is ``--config.init_ff_from=<feature-reuse workdir>
  --config.meta.lr.ff=0``.

  Args:
    learner: the learner to continue with (same network as ``source``).
    source: meta-parameters of a (feature-reuse) FLP run (FLP's tree, leaf
      shapes: `learners.param_labels`).
    key: PRNG key ``()`` for the new layers' parameters.
    lrs: learning rate per meta-parameter group (``meta.make_optimizer``).

  Returns:
    ``(params, lrs)``: ``learner.init_params``' tree, the shared entries of
    the shapes of ``source``'s.

  Raises:
    ValueError: if the networks (or a shared layer's parameters) differ.

  Example:
    >>> params, lrs = extend_plasticity(flp3, reuse_params, key, meta.PAPER_REGRESSION_LRS)
    >>> opt = meta.make_optimizer(lrs, flp3)
    >>> state = meta.init_state(flp3, opt, key, params)
  """
  params = learner.init_params(key)
  shape = lambda tree: jax.tree.map(jnp.shape, tree)
  if shape(params["ff"]) != shape(source["ff"]):
    raise ValueError("the source's feed-forward network does not match the learner's")
  params["ff"] = source["ff"]
  for group in ("fb", "alpha", "beta"):
    for layer, value in source.get(group, {}).items():
      if layer in params.get(group, {}):
        if (jax.tree.structure(value) != jax.tree.structure(params[group][layer])
            or shape(value) != shape(params[group][layer])):
          raise ValueError(f"source {group}[{layer!r}] does not match the learner's")
        params[group][layer] = value
  return params, dict(lrs, ff=0.0)
