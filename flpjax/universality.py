"""Appendix A's universality construction, built and checked numerically.

The appendix shows that a deep network learning with direct feedback and a
local rule (Hebb or Oja) can encode its whole training set in the response to
a query. This module builds that network and the objects the proof uses, so
that the argument can be run (``tests/test_universality.py``):

* the codes: ``discr`` (`discretize`), the feedback code
  ``varphi(y) = discr(y)`` (`feedback_code`, one-hot, ``d``-dim) and the
  feature map ``phi(x) = [0; discr(x); 0_{J^2 d}; discr(x)]``
  (`feature_map`, ``D = 1 + 2J + J^2 d``-dim);
* the construction: maps ``G_0..G_N``, weights ``W_1..W_N`` and feedback
  matrices ``B_1..B_N`` (eq. 6-7, `construction`);
* the paired network (plastic ``W_i`` with ``beta = 1``, then a frozen
  identity with ``beta = 0``) and its lifetime (`run_lifetime`,
  `exact_query`);
* the expansion the proof rests on, eq. (3) (`first_order_term`), its closed
  form for the construction (`slot_code`) and the decoder of the training
  pairs (`decode`);
* `remainder_curve`: ``|z*_true - z*_0 - first order|`` against ``alpha``
  (and `plot_remainder_curves`, the log-log plot).

Conventions (the appendix leaves them open or gets them wrong):

1. Layer order. The network is ``z = W_1 W_2 ... W_N phi(x)``: ``W_N`` is the
   input-side layer, ``W_1`` the output side (each ``W_i`` followed by the
   identity layer ``W_i^2``). This is the only order for which the appendix's
   expansion (1)-(3) is the expansion of ``prod (W_i + dW_i)``.

2. Presynaptic activity. The post-synaptic activity of ``W_i`` is replaced by
   ``B_i varphi(y)`` (``beta_i^1 = 1``). Its presynaptic activity is the
   activity at the output of the identity layer ``W_{i+1}^2`` after feedback;
   with ``beta^2 = 0`` that is the feed-forward activity
   ``W_{i+1}...W_N phi(x)`` (feedback is not re-propagated forward). This is
   what the appendix's update uses and what `run_lifetime` does.

3. The maps ``G_i`` are the *forward* maps ``G_i := W_{i+1} ... W_N`` from
   ``phi(x)`` to the input of ``W_i`` (``G_N = I``, ``G_0`` the whole
   product), **not** their transposes. The appendix defines
   ``G_i^T = prod_{j>i} W_j`` but then uses ``G_i phi(x*)``,
   ``G_0 G_{i-1}^{-1}`` and ``G_{i-1} phi(x*)`` in (4)-(5) and in the
   observation after (7), all of which are right for ``G_i = prod_{j>i} W_j``
   only; ``phi(x_k)^T G_i^T G_i^T phi(x*)`` in (4) is a typo for
   ``phi(x_k)^T G_i^T G_i phi(x*)``. Read literally (``prod_{j>i} W_j`` equal
   to the transpose of the matrix of eq. 6) the presynaptic activity is
   ``[0; 0; 0; discr(x)] + eps phi(x)``, which only says whether ``x_k`` falls
   in ``x*``'s bin, and the training pairs cannot be decoded (tested). The
   weights are ``W_i = G_{i-1} G_i^{-1}`` (`weights_from_maps`).

4. One extra layer. ``G_N = W_{N+1}...W_N = I`` is forced (empty product), so
   the ``J^2`` layers with the prescribed maps of eq. (6) need
   ``N = J^2 + 1`` layers: layers ``i = 1..J^2`` carry the pairs ``(j, l)``
   and the input-side layer ``W_N = G_{N-1}`` gets ``B_N = 0``, so that
   neither rule ever changes it (both updates are proportional to the
   post-synaptic activity). ``G_0`` is only said to "contain an identity in
   its last block"; we take ``G_0 = diag(0, 0_J, 0_{J^2 d}, I_J) + eps I``.

5. Indices. Layer ``i = J j + l + 1`` carries the pair ``(j, l)``,
   ``j, l = 0..J-1``, and writes ``varphi(y)`` into slot ``s = J j + l`` of
   the ``J^2 d`` code block (``J*j + l`` with 1-based ``j, l`` would overflow;
   the appendix also mixes ``J*j + l`` and ``j + J*l``). ``G~_{j,l}`` is the
   indicator of ``{j, l}``: a single one when ``j = l``.

6. The epsilon terms are exact, not approximate. ``G_i = M_i + eps I`` with
   ``M_i`` zero on the code block (rows and columns) and ``M_i M_{i'}``
   zero on the first three blocks, so for ``i < N``
   ``W_i = I + (M_{i-1} - M_i) / eps`` on the first three blocks (entries of
   size ``1/eps``) and ``W_i`` is the identity on the code block (the input
   layer ``W_N = G_{N-1}`` scales it by ``eps``, harmlessly: ``phi(x)`` is
   zero there and ``W_N`` never changes). Hence ``G_0 G_{i-1}^{-1} B_i = B_i``
   exactly: what the feedback writes into a slot reaches ``z`` unchanged.

7. The identity block counts. The presynaptic overlap at layer ``(j, l)`` is

     c_{jl}(x_k, x*) = <G_{jl} phi(x_k), G_{jl} phi(x*)>
                     = h_{jl}(x_k) h_{jl}(x*) + kappa [x_k ~ x*],
     h_{jl}(x) = [bin(x) in {j, l}],   kappa = (1 + eps)^2 + eps^2,

   where ``x_k ~ x*`` means "same bin". The appendix drops the ``kappa`` term,
   which the last-block identity adds to *every* slot for every training
   example in ``x*``'s bin. The exact first-order code is (`slot_code`)

     (z* - G_0 phi(x*)) / alpha = [0; 0_J; S; 0_J],
     S[j, l] = sum_k varphi(y_k) c_{jl}(x_k, x*)   (a (J, J, d) array).

8. Oja's first-order decay term (5) vanishes: ``diag(B_i varphi(y))^2``
   selects a code-block row and ``G_{i-1} phi(x*)`` is zero on the code
   block. The first-order code, and hence the decoding, is the same for Hebb
   and Oja.

9. Decoding (`decode`). With ``a`` the bin of ``x*`` (argmax of the last
   ``J`` entries of ``z*``, which hold ``(1 + eps) discr(x*)`` and are never
   changed by plasticity) and ``n_b`` the ``d``-vector of counts of ``y`` bins
   among the training pairs with ``x`` in bin ``b``:

     S[a, a] = (1 + kappa) n_a,    S[a, b] = S[b, a] = (1 + kappa) n_a + n_b,

   so ``n_a = S[a, a] / (1 + kappa)`` and ``n_b = S[a, b] - S[a, a]``
   (we average the two symmetric slots). Every pair is decoded, including
   those in ``x*``'s bin: the appendix's "value c of slot j + J*j" is
   ``(1 + kappa) n_a ~ 2 n_a``, not ``n_a``; subtracting it is right, reading
   it as the count of ``x*``'s bin is off by the factor ``1 + kappa``. The
   order of the pairs is lost (as the appendix says).

10. Size of the remainder. For generic (non-negative) weights the remainder
    ``z*_true - z*_0 - first order`` is ``O(alpha^2)`` for both rules. In the
    construction it is smaller: every update writes only into code-block
    rows, and a layer's input never has content in its own slot, so the
    second-order cross terms between updates vanish. With Hebb the remainder
    is ``O(alpha^3)`` (log-log slope 3). With Oja the only ``alpha^2`` term
    is the decay of a row written more than once (same layer, same ``y``
    bin): ``-alpha^2 sum_{m < m', y_m ~ y_m'} c(x_m, x*)`` in slot ``y``
    (`oja_second_order_code`), so the slope is 2 when a ``y`` bin repeats,
    and if all ``y`` bins differ Oja and Hebb give the same ``z*``. With
    ``K = 1``, ``z*`` is exactly linear in ``alpha``.

Shapes: ``D = feature_dim(J, d)``, ``N`` layers, ``K`` training pairs.
``W`` is ``(N, D, D)`` (``W[i - 1]`` is ``W_i``), ``B`` is ``(N, D, d)``,
``G`` is ``(N + 1, D, D)`` (``G[i]`` is ``G_i``), ``phis`` is ``(K, D)``,
``varphis`` is ``(K, d)``, ``phi_star`` is ``(D,)``.

Example (float64: ``alpha`` must be small and the weights are of size ``1/eps``):
  >>> jax.config.update("jax_enable_x64", True)
  >>> c = construction(J=2, d=2)
  >>> xs, ys, x_star = jnp.array([0, 1, 1]), jnp.array([1, 0, 1]), 1
  >>> phis, varphis = feature_map(xs, 2, 2), feedback_code(ys, 2)
  >>> z = exact_query(c.W, c.B, phis, varphis, feature_map(x_star, 2, 2), 1e-6)
  >>> decode(z, 1e-6, J=2, d=2).counts.round()
  Array([[0., 1.], [1., 1.]], dtype=float64)
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flpjax import plasticity


# --------------------------------------------------------------------------
# Codes.


def discretize(v: jax.Array, J: int, low: float = 0.0, high: float = 1.0) -> jax.Array:
  """One-hot code of the bin of ``v`` among ``J`` equal bins of ``[low, high)``.

  Args:
    v: values, any shape ``(...)``; values outside the range go to the end bins.
    J: number of bins.
    low: lower end of the range.
    high: upper end of the range.

  Returns:
    ``(..., J)`` one-hot codes.
  """
  v = jnp.asarray(v)
  idx = jnp.floor((v - low) / (high - low) * J).astype(jnp.int32)
  return jax.nn.one_hot(jnp.clip(idx, 0, J - 1), J, dtype=_float())


def feature_dim(J: int, d: int) -> int:
  """``D = 1 + J + J^2 d + J``, the width of ``phi(x)`` and of every layer."""
  return 1 + 2 * J + J * J * d


def _blocks(J: int, d: int) -> tuple[slice, slice, slice, slice]:
  """Slices of the scalar, ``discr(x)``, code and copy blocks of a ``D``-vector."""
  code = 1 + J + J * J * d
  return slice(0, 1), slice(1, 1 + J), slice(1 + J, code), slice(code, code + J)


def feature_map(x_index: jax.Array, J: int, d: int) -> jax.Array:
  """``phi(x) = [0; discr(x); 0_{J^2 d}; discr(x)]``.

  Args:
    x_index: bin of ``x``, integer ``(...)`` in ``0..J-1``.
    J: number of ``x`` bins.
    d: number of ``y`` bins.

  Returns:
    ``(..., D)`` non-negative features.
  """
  e = jax.nn.one_hot(jnp.asarray(x_index), J, dtype=_float())
  zero = jnp.zeros(e.shape[:-1] + (1,), e.dtype)
  code = jnp.zeros(e.shape[:-1] + (J * J * d,), e.dtype)
  return jnp.concatenate([zero, e, code, e], axis=-1)


def feedback_code(y_index: jax.Array, d: int) -> jax.Array:
  """``varphi(y) = discr(y)``: ``(..., d)`` one-hot code of the ``y`` bin."""
  return jax.nn.one_hot(jnp.asarray(y_index), d, dtype=_float())


def pair_counts(x_index: jax.Array, y_index: jax.Array, J: int, d: int) -> jax.Array:
  """The multiset of training pairs: ``(J, d)`` counts per ``(x bin, y bin)``."""
  return jnp.einsum("kj,kd->jd", jax.nn.one_hot(x_index, J, dtype=_float()),
                    jax.nn.one_hot(y_index, d, dtype=_float()))


def kappa(eps: float) -> float:
  """``(1 + eps)^2 + eps^2``: overlap of the copy block for two ``x`` in one bin."""
  return (1.0 + eps) ** 2 + eps ** 2


# --------------------------------------------------------------------------
# The construction (eq. 6-7).


class Construction(NamedTuple):
  """Appendix A's network for ``J`` bins of ``x`` and ``d`` bins of ``y``.

  Attributes:
    G: ``(N + 1, D, D)`` forward maps, ``G[i] = W_{i+1} ... W_N``.
    W: ``(N, D, D)`` initial plastic weights, ``W[i - 1] = W_i``.
    B: ``(N, D, d)`` feedback matrices (``B[N - 1] = 0``).
    J: number of ``x`` bins.
    d: number of ``y`` bins.
    eps: the ``eps I`` added to every ``G`` for invertibility.
  """
  G: jax.Array
  W: jax.Array
  B: jax.Array
  J: int
  d: int
  eps: float


def layer_map(j: int, l: int, J: int, d: int, eps: float) -> jax.Array:
  """``G_{j,l}`` of eq. (6): ``(D, D)``, ``G~_{j,l}`` in the top row, ``I_J`` last, ``+ eps I``."""
  D = feature_dim(J, d)
  s, x, _, copy = _blocks(J, d)
  m = np.zeros((D, D))
  m[0, x.start + j] = 1.0
  m[0, x.start + l] = 1.0
  m[copy, copy] = np.eye(J)
  return jnp.asarray(m + eps * np.eye(D), _float())


def output_map(J: int, d: int, eps: float) -> jax.Array:
  """``G_0 = diag(0, 0_J, 0_{J^2 d}, I_J) + eps I``: ``(D, D)``."""
  D = feature_dim(J, d)
  m = np.zeros((D, D))
  copy = _blocks(J, d)[3]
  m[copy, copy] = np.eye(J)
  return jnp.asarray(m + eps * np.eye(D), _float())


def layer_feedback(j: int, l: int, J: int, d: int) -> jax.Array:
  """``B_{j,l}`` of eq. (6)-(7): ``(D, d)``, ``I_d`` in code slot ``J j + l``."""
  D = feature_dim(J, d)
  b = np.zeros((D, d))
  start = _blocks(J, d)[2].start + (J * j + l) * d
  b[start:start + d] = np.eye(d)
  return jnp.asarray(b, _float())


def weights_from_maps(G: jax.Array) -> jax.Array:
  """``W_i = G_{i-1} G_i^{-1}``, ``i = 1..N``, so that ``G_i = W_{i+1} ... W_N``.

  Args:
    G: ``(N + 1, D, D)`` invertible maps with ``G[N] = I``.

  Returns:
    ``(N, D, D)`` weights.
  """
  # W_i G_i = G_{i-1}  <=>  G_i^T W_i^T = G_{i-1}^T.
  wt = jnp.linalg.solve(jnp.swapaxes(G[1:], 1, 2), jnp.swapaxes(G[:-1], 1, 2))
  return jnp.swapaxes(wt, 1, 2)


def maps_from_weights(W: jax.Array) -> jax.Array:
  """``G_i = W_{i+1} ... W_N`` for ``i = 0..N``: ``(N + 1, D, D)``, ``G[N] = I``."""
  eye = jnp.eye(W.shape[-1], dtype=W.dtype)
  # From the input side: the carry is G_i when W_i is reached; the final carry is G_0.
  g0, G = jax.lax.scan(lambda g, w: (w @ g, g), eye, W, reverse=True)
  return jnp.concatenate([g0[None], G], axis=0)


def construction(J: int, d: int, eps: float = 1e-2) -> Construction:
  """Appendix A's ``G``, ``W`` and ``B`` with ``N = J^2 + 1`` layers.

  Layer ``i = J j + l + 1`` (``j, l = 0..J-1``) has input map ``G_{j,l}``
  and feedback ``B_{j,l}``; the input-side layer ``W_N = G_{N-1}`` has
  ``B_N = 0`` (see the module docstring, points 3-5). Built in NumPy (float64)
  and returned in JAX's default float dtype.

  Args:
    J: number of ``x`` bins.
    d: number of ``y`` bins.
    eps: the ``eps I`` that makes the maps invertible.

  Returns:
    The `Construction`.
  """
  D = feature_dim(J, d)
  pairs = [(j, l) for j in range(J) for l in range(J)]
  G = np.stack([np.asarray(output_map(J, d, eps), np.float64)]
               + [np.asarray(layer_map(j, l, J, d, eps), np.float64) for j, l in pairs]
               + [np.eye(D)])
  B = np.stack([np.asarray(layer_feedback(j, l, J, d)) for j, l in pairs] + [np.zeros((D, d))])
  # W_i = G_{i-1} G_i^{-1}, as in `weights_from_maps`.
  W = np.swapaxes(np.linalg.solve(np.swapaxes(G[1:], 1, 2), np.swapaxes(G[:-1], 1, 2)), 1, 2)
  f = _float()
  return Construction(G=jnp.asarray(G, f), W=jnp.asarray(W, f), B=jnp.asarray(B, f),
                      J=J, d=d, eps=eps)


# --------------------------------------------------------------------------
# The paired network and its lifetime.


@functools.partial(jax.jit, static_argnames=("relu",))
def forward(W: jax.Array, phi: jax.Array, relu: bool = False) -> tuple[jax.Array, jax.Array]:
  """Feed-forward pass through ``W_N, I, W_{N-1}, I, ..., W_1, I``.

  Args:
    W: ``(N, D, D)`` weights.
    phi: ``(D,)`` features of the input.
    relu: apply the ReLU of every layer (the construction keeps activities
      non-negative, so this changes nothing; tested).

  Returns:
    ``(z, pre)``: ``z`` ``(D,)`` the output, ``pre`` ``(N, D)`` the
    feed-forward activity at the input of each ``W_i`` (``pre[i - 1]``).
  """
  act = jax.nn.relu if relu else (lambda h: h)

  def layer(h, w):
    # W_i^1 then the identity W_i^2 (beta^2 = 0: its activity stays feed-forward).
    return act(act(w @ h)), h

  return jax.lax.scan(layer, phi, W, reverse=True)


class Trace(NamedTuple):
  """Activities seen during a lifetime, one row per step.

  Attributes:
    pre: ``(K, N, D)`` presynaptic (feed-forward) activity of each ``W_i``.
    post: ``(K, N, D)`` post-synaptic activity after feedback, ``B_i varphi(y)``.
    out: ``(K, D)`` feed-forward output ``z_k``.
  """
  pre: jax.Array
  post: jax.Array
  out: jax.Array


@functools.partial(jax.jit, static_argnames=("rule", "relu"))
def run_lifetime(W: jax.Array, B: jax.Array, phis: jax.Array, varphis: jax.Array,
                 alpha: jax.Array, rule: str = "hebb", relu: bool = False
                 ) -> tuple[jax.Array, Trace]:
  """``K`` sequential lifetime steps: forward, feedback (``beta = 1``), local update.

  At step ``k`` every ``W_i`` is updated by ``flpjax.plasticity.<rule>`` with
  presynaptic activity ``G_i phi(x_k)`` (feed-forward, current weights),
  post-synaptic activity ``B_i varphi(y_k)`` and rate ``alpha``; the identity
  layers have ``alpha = 0`` and are not represented.

  Args:
    W: ``(N, D, D)`` initial weights.
    B: ``(N, D, d)`` feedback matrices.
    phis: ``(K, D)`` features of the training inputs, in order.
    varphis: ``(K, d)`` feedback codes of the training targets.
    alpha: scalar plasticity rate.
    rule: ``'hebb'`` or ``'oja'``.
    relu: apply the ReLUs (see `forward`).

  Returns:
    ``(W_K, trace)``: the weights after ``K`` steps and the `Trace`.
  """
  update = jax.vmap(plasticity.get_rule(rule), in_axes=(0, 0, 0, None))

  def step(w, example):
    phi, varphi = example
    z, pre = forward(w, phi, relu)
    post = B @ varphi
    if relu:
      post = jax.nn.relu(post)
    w = update(w, pre[:, None, :], post[:, None, :], alpha)
    return w, Trace(pre, post, z)

  return jax.lax.scan(step, W, (phis, varphis))


@functools.partial(jax.jit, static_argnames=("rule", "relu"))
def exact_query(W: jax.Array, B: jax.Array, phis: jax.Array, varphis: jax.Array,
                phi_star: jax.Array, alpha: jax.Array, rule: str = "hebb",
                relu: bool = False) -> jax.Array:
  """``z* = (prod_i W_i') phi(x*)`` after the ``K`` lifetime steps: ``(D,)``."""
  w, _ = run_lifetime(W, B, phis, varphis, alpha, rule, relu)
  return forward(w, phi_star, relu)[0]


@functools.partial(jax.jit, static_argnames=("rule",))
def first_order_term(W: jax.Array, B: jax.Array, phis: jax.Array, varphis: jax.Array,
                     phi_star: jax.Array, alpha: jax.Array, rule: str = "hebb") -> jax.Array:
  """The ``alpha``-linear terms of eq. (3), at the initial weights: ``(D,)``.

    alpha sum_k sum_i (W_1..W_{i-1}) B_i varphi(y_k) <G_i phi(x_k), G_i phi(x*)>
    - L alpha sum_k sum_i (W_1..W_{i-1}) diag(B_i varphi(y_k))^2 G_{i-1} phi(x*)

  with ``G_i = W_{i+1}...W_N`` and ``L = 1`` for Oja, ``0`` for Hebb. So
  ``z*_true = G_0 phi(x*) + first_order_term(...) + O(alpha^2)``.

  Args:
    W: ``(N, D, D)`` initial weights.
    B: ``(N, D, d)`` feedback matrices.
    phis: ``(K, D)`` training features.
    varphis: ``(K, d)`` training feedback codes.
    phi_star: ``(D,)`` query features.
    alpha: scalar plasticity rate.
    rule: ``'hebb'`` or ``'oja'``.

  Returns:
    The first-order change of the query's representation.
  """
  plasticity.get_rule(rule)  # raises ValueError on an unknown rule
  G = maps_from_weights(W)
  eye = jnp.eye(W.shape[-1], dtype=W.dtype)
  # prefix[i - 1] = W_1 ... W_{i-1}.
  _, prefix = jax.lax.scan(lambda p, w: (p @ w, p), eye, W)
  pre_k = jnp.einsum("nab,kb->kna", G[1:], phis)          # G_i phi(x_k)
  pre_star = G[1:] @ phi_star                               # G_i phi(x*)
  post = jnp.einsum("nad,kd->kna", B, varphis)             # B_i varphi(y_k)
  overlap = jnp.einsum("kna,na->kn", pre_k, pre_star)
  hebb = jnp.einsum("nab,knb,kn->a", prefix, post, overlap)
  if rule == "hebb":
    return alpha * hebb
  decay = jnp.einsum("nab,knb,nb->a", prefix, post ** 2, G[:-1] @ phi_star)
  return alpha * (hebb - decay)


# --------------------------------------------------------------------------
# Closed forms for the construction, and the decoder.


def layer_overlaps(x_index: jax.Array, x_star: jax.Array, J: int, eps: float) -> jax.Array:
  """``c_{jl}(x_k, x*) = h_{jl}(x_k) h_{jl}(x*) + kappa [x_k ~ x*]``: ``(K, J, J)``."""
  e = jax.nn.one_hot(x_index, J, dtype=_float())
  e_star = jax.nn.one_hot(x_star, J, dtype=_float())
  def h(v):  # (..., J, J): [bin in {j, l}]
    return jnp.maximum(v[..., :, None], v[..., None, :])
  same = (jnp.asarray(x_index) == x_star).astype(e.dtype)
  return h(e) * h(e_star) + kappa(eps) * same[:, None, None]


def slot_code(x_index: jax.Array, y_index: jax.Array, x_star: jax.Array, J: int, d: int,
              eps: float) -> jax.Array:
  """``S = (z* - G_0 phi(x*)) / alpha`` on the code block, to first order: ``(J, J, d)``.

  ``S[j, l] = sum_k varphi(y_k) c_{jl}(x_k, x*)``, the same for Hebb and Oja
  (module docstring, points 7-8).
  """
  c = layer_overlaps(x_index, x_star, J, eps)
  return jnp.einsum("kjl,kd->jld", c, feedback_code(y_index, d))


def oja_second_order_code(x_index: jax.Array, y_index: jax.Array, x_star: jax.Array,
                          J: int, d: int, eps: float) -> jax.Array:
  """The ``alpha^2`` coefficient of ``z*`` on the code block under Oja: ``(J, J, d)``.

  ``-sum_{m < m', y_m ~ y_m'} varphi(y_m) c_{jl}(x_m, x*)``: the decay of a
  row written more than once. Hebb has no ``alpha^2`` term in the
  construction (module docstring, point 10).
  """
  c = layer_overlaps(x_index, x_star, J, eps)
  y = feedback_code(y_index, d)
  K = y.shape[0]
  later = jnp.triu(jnp.ones((K, K), y.dtype), k=1)          # m < m'
  repeats = jnp.einsum("mn,md,nd->md", later, y, y)           # later steps with the same y
  return -jnp.einsum("kjl,kd->jld", c, repeats)


class Decoded(NamedTuple):
  """What `decode` reads out of ``z*``.

  Attributes:
    x_star: bin of the query.
    counts: ``(J, d)`` counts of training pairs per ``(x bin, y bin)``
      (not rounded).
    code: ``(J, J, d)`` the code block ``S`` of ``(z* - G_0 phi(x*)) / alpha``.
  """
  x_star: jax.Array
  counts: jax.Array
  code: jax.Array


@functools.partial(jax.jit, static_argnames=("J", "d", "eps"))
def decode(z: jax.Array, alpha: jax.Array, J: int, d: int, eps: float = 1e-2) -> Decoded:
  """The appendix's decoding procedure, corrected (module docstring, point 9).

  Reads ``discr(x*)`` from the last ``J`` entries, subtracts ``G_0 phi(x*)``,
  divides by ``alpha``, and reads the counts from the code block ``S``:
  ``n_a = S[a, a] / (1 + kappa)`` for ``x*``'s bin ``a`` and
  ``n_b = (S[a, b] + S[b, a]) / 2 - S[a, a]`` for ``b != a``.

  Args:
    z: ``(D,)`` the query's representation after learning (true network at
      small ``alpha`` or ``G_0 phi(x*) + first_order_term``).
    alpha: the plasticity rate of the lifetime.
    J: number of ``x`` bins.
    d: number of ``y`` bins.
    eps: the construction's ``eps``.

  Returns:
    The `Decoded` query bin and pair counts.
  """
  *_, code_block, copy = _blocks(J, d)
  a = jnp.argmax(z[copy])
  residual = (z - output_map(J, d, eps) @ feature_map(a, J, d)) / alpha
  S = residual[code_block].reshape(J, J, d)
  diag = S[a, a]
  counts = 0.5 * (S[a] + S[:, a]) - diag
  counts = counts.at[a].set(diag / (1.0 + kappa(eps)))
  return Decoded(x_star=a, counts=counts, code=S)


# --------------------------------------------------------------------------
# The remainder against alpha.


class RemainderCurve(NamedTuple):
  """Norms along a sweep of ``alpha`` (each ``(A,)``).

  Attributes:
    alphas: the rates.
    change: ``|z*_true - G_0 phi(x*)|``, the change of the query's representation.
    first_order: ``|first_order_term|``.
    remainder: ``|z*_true - G_0 phi(x*) - first_order_term|``.
  """
  alphas: jax.Array
  change: jax.Array
  first_order: jax.Array
  remainder: jax.Array


@functools.partial(jax.jit, static_argnames=("rule",))
def remainder_curve(W: jax.Array, B: jax.Array, phis: jax.Array, varphis: jax.Array,
                    phi_star: jax.Array, alphas: jax.Array, rule: str = "hebb"
                    ) -> RemainderCurve:
  """How well eq. (3) predicts the true change of ``z*``, for each ``alpha``.

  Args:
    W: ``(N, D, D)`` initial weights.
    B: ``(N, D, d)`` feedback matrices.
    phis: ``(K, D)`` training features.
    varphis: ``(K, d)`` training feedback codes.
    phi_star: ``(D,)`` query features.
    alphas: ``(A,)`` rates (use float64 for small ``alpha``).
    rule: ``'hebb'`` or ``'oja'``.

  Returns:
    The `RemainderCurve`.
  """
  z0 = forward(W, phi_star)[0]

  def one(alpha):
    change = exact_query(W, B, phis, varphis, phi_star, alpha, rule) - z0
    first = first_order_term(W, B, phis, varphis, phi_star, alpha, rule)
    return jnp.stack([jnp.linalg.norm(change), jnp.linalg.norm(first),
                      jnp.linalg.norm(change - first)])

  norms = jax.vmap(one)(alphas)
  return RemainderCurve(alphas, norms[:, 0], norms[:, 1], norms[:, 2])


def loglog_slope(x: jax.Array, y: jax.Array) -> float:
  """Least-squares slope of ``log y`` against ``log x``."""
  lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
  return float(np.polyfit(lx, ly, 1)[0])


def plot_remainder_curves(curves: dict[str, RemainderCurve], path: str) -> None:
  """Log-log plot of change, first-order term and remainder per curve, saved to ``path``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5, 4))
  for (name, c), color in zip(curves.items(), _colors(len(curves))):
    ax.loglog(c.alphas, c.change, "--", color=color, label=f"{name}: |change|")
    ax.loglog(c.alphas, c.remainder, "o-", color=color,
              label=f"{name}: remainder (slope {loglog_slope(c.alphas, c.remainder):.2f})")
  ax.set_xlabel("alpha")
  ax.set_ylabel("norm")
  ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _colors(n: int) -> Sequence[str]:
  return [f"C{i % 10}" for i in range(n)]


def _float():
  return jnp.zeros(()).dtype
