"""Incremental sine waves (docs/fidelity.md 1.3 and 5.1), generated in JAX.

A lifetime sees ``F = 10`` sine functions ``y = A sin(x + phi)``. The input is
``(one_hot(slot, F), x)`` of width ``F + 1``, where ``slot`` is the function's
position within the episode (not a global id) and ``x ~ U[-5, 5)``. The
support stream has ``S = 40`` batches of ``B = 32`` points per function,
``T = F * S = 400`` steps in all:

* ``order='continual'``: all batches of function 0, then function 1, ...
* ``order='iid'``: the 400 *batches* are shuffled; each batch still holds 32
  points of one function (the reference's i.i.d. order);
* ``order='iid'`` with ``mixed_batches=True``: the 12,800 points are shuffled
  before batching, so batches mix functions.

The query set has 32 fresh points per function (320), in function order.
Meta-training draws the 10 functions of an episode without replacement from a
fixed pool of 400 functions (the reference caches its first 400 draws);
``pool=None`` draws fresh functions for every lifetime (meta-testing, or the
"fresh functions" training option). Amplitudes are ``5 (U + 0.02)`` in
[0.1, 5.1) and phases ``pi U`` in [0, pi), as the reference code.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from flpjax import nets
from flpjax.lifetime import Episode
from flpjax.tasks.base import ORDERS, Task, order_flags

Order = Literal["iid", "continual"]


#: Amplitude and phase ranges of the function family (`sample_functions`' defaults).
AMPLITUDE, PHASE = (0.1, 5.1), (0.0, math.pi)


class Pool(NamedTuple):
  """Sine functions: amplitudes and phases, each ``(N,)``."""

  amplitude: jax.Array
  phase: jax.Array


def sample_functions(key: jax.Array, n: int, amplitude=AMPLITUDE, phase=PHASE) -> Pool:
  """``n`` random sine functions, uniform amplitude and phase: a `Pool` of two ``(n,)`` arrays."""
  ka, kp = jax.random.split(key)
  return Pool(jax.random.uniform(ka, (n,), minval=amplitude[0], maxval=amplitude[1]),
              jax.random.uniform(kp, (n,), minval=phase[0], maxval=phase[1]))


def family_mean(x: jax.Array, amplitude=AMPLITUDE, phase=PHASE) -> jax.Array:
  """``E[A sin(x + phi)]`` over the family (``A``, ``phi`` uniform and independent).

  The best prediction of a function of the family from ``x`` alone, without
  learning anything about the function: ``E[A] (cos(x + a) - cos(x + b)) / (b - a)``
  for ``phi ~ U[a, b)`` (``2.6 (2 / pi) cos x`` for the default family). Its mean
  squared error is the regression tasks' no-learning level. Elementwise: ``x``
  of any shape, e.g. ``(Q,)``, gives the same shape.
  """
  (lo, hi), (a, b) = amplitude, phase
  return 0.5 * (lo + hi) * (jnp.cos(x + a) - jnp.cos(x + b)) / (b - a)


def encode(slot: jax.Array, x: jax.Array, n_functions: int) -> jax.Array:
  """Network input ``(..., n_functions + 1)`` from slots ``(...)`` and points ``(...)``."""
  return jnp.concatenate([jax.nn.one_hot(slot, n_functions), x[..., None]], axis=-1)


def sample_episode(
    key: jax.Array,
    pool: Pool | None = None,
    *,
    order: Order = "iid",
    mixed_batches: bool = False,
    n_functions: int = 10,
    steps_per_function: int = 40,
    batch_size: int = 32,
    queries_per_function: int = 32,
    x_range: tuple[float, float] = (-5.0, 5.0),
) -> Episode:
  """One lifetime of the incremental sine task.

  Args:
    key: a typed PRNG key.
    pool: functions to draw from without replacement; ``None`` for fresh ones.
    order: ``'iid'`` or ``'continual'``; or a boolean array (True: continual),
      e.g. one element of `flpjax.tasks.base.order_flags` under `vmap`, which
      selects the order at run time (the episode the named order gives for that key).
    mixed_batches: with ``order='iid'``, shuffle points rather than batches.
    n_functions, steps_per_function, batch_size, queries_per_function: sizes.
    x_range: range of the scalar input.

  Returns:
    An `Episode` with ``xs (T, B, F + 1)``, ``ys (T, B, 1)``, ``xq (F Q, F + 1)``,
    ``yq (F Q, 1)``, ``T = F * steps_per_function``.
  """
  if isinstance(order, str) and order not in ORDERS:
    raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
  k_fn, k_x, k_q, k_perm = jax.random.split(key, 4)
  f, s, b, q = n_functions, steps_per_function, batch_size, queries_per_function
  if pool is None:
    fns = sample_functions(k_fn, f)
  else:
    ids = jax.random.choice(k_fn, pool.amplitude.shape[0], (f,), replace=False)
    fns = Pool(pool.amplitude[ids], pool.phase[ids])

  def points(k, shape):
    x = jax.random.uniform(k, shape, minval=x_range[0], maxval=x_range[1])
    slot = jnp.broadcast_to(jnp.arange(f).reshape((f,) + (1,) * (len(shape) - 1)), shape)
    amp = fns.amplitude.reshape((f,) + (1,) * (len(shape) - 1))
    ph = fns.phase.reshape((f,) + (1,) * (len(shape) - 1))
    return encode(slot, x, f), (amp * jnp.sin(x + ph))[..., None]

  xs, ys = points(k_x, (f, s, b))                     # (F, S, B, F+1), (F, S, B, 1)
  xs, ys = xs.reshape(f * s, b, f + 1), ys.reshape(f * s, b, 1)
  if not isinstance(order, str) or order == "iid":
    n = f * s * b if mixed_batches else f * s
    perm = jax.random.permutation(k_perm, n)
    if not isinstance(order, str):  # traced: continual keeps the stream as it is
      perm = jnp.where(order, jnp.arange(n), perm)
    if mixed_batches:
      xs = xs.reshape(n, f + 1)[perm].reshape(f * s, b, f + 1)
      ys = ys.reshape(n, 1)[perm].reshape(f * s, b, 1)
    else:
      xs, ys = xs[perm], ys[perm]
  xq, yq = points(k_q, (f, q))
  return Episode(xs, ys, xq.reshape(f * q, f + 1), yq.reshape(f * q, 1))


def make_task(
    *,
    pool: Pool | None,
    order: Order | tuple[Order, ...] = "iid",
    mixed_batches: bool = False,
    n_functions: int = 10,
    steps_per_function: int = 40,
    batch_size: int = 32,
    queries_per_function: int = 32,
) -> Task:
  """The sine `Task`; its ``data`` is the pool (or None for fresh functions).

  Its episodes are `sample_episode`'s: ``xs (T, B, F + 1)``, ``ys (T, B, 1)``,
  ``xq (F Q, F + 1)``, ``yq (F Q, 1)`` (``F = n_functions``, ``B = batch_size``,
  ``Q = queries_per_function``, ``T = F * steps_per_function``). ``pool`` is a
  `Pool` of ``(N,)`` arrays.

  ``order`` a tuple (one order per run of `meta.make_runs_meta_step`): ``data`` is
  ``(pool, order_flags(order))`` (flags ``(R,)``) with ``data_axes = (None, 0)``,
  so that run ``r`` samples the lifetimes of ``order[r]`` while the runs share the pool.
  """
  kwargs = dict(mixed_batches=mixed_batches, n_functions=n_functions,
                steps_per_function=steps_per_function, batch_size=batch_size,
                queries_per_function=queries_per_function)
  if isinstance(order, (tuple, list)):
    flags = order_flags(order)

    def sample_per_run(key, data):
      pool_, continual = data
      return sample_episode(key, pool_, order=continual, **kwargs)

    return Task(sample_per_run, (pool, flags), "regression", (n_functions + 1,), 1, (None, 0))
  if order not in ORDERS:
    raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")

  def sample(key, data):
    return sample_episode(key, data, order=order, **kwargs)

  return Task(sample, pool, "regression", (n_functions + 1,), 1)


# ----------------------------------------------------------------------------- config plug-in
# config.task = 'sine' (flpjax.config.registry): its section, network and lifetimes.

OUTPUT = "regression"
#: ``pool_size``: the fixed pool of meta-training functions (0: fresh functions per
#: episode), drawn with ``pool_seed`` (shared by every run and seed, as the reference's);
#: ``mixed_batches``: the i.i.d. order shuffles points instead of batches.
#: ``net.widths``: the MLP's hidden widths.
CONFIG = {
    "sine": dict(n_functions=10, steps_per_function=40, batch_size=32,
                 queries_per_function=32, pool_size=400, pool_seed=1000, mixed_batches=False),
    "net": dict(widths=nets.REGRESSION_WIDTHS),
}


def validate_config(config) -> None:
  """Checks ``config.sine`` and ``config.net.widths``."""
  from flpjax.config import checks  # pylint: disable=g-import-not-at-top
  for f in ("n_functions", "steps_per_function", "batch_size", "queries_per_function"):
    checks.check_int(config, f"sine.{f}", 1)
  checks.check_int(config, "sine.pool_seed", 0)
  checks.check_bool(config, "sine.mixed_batches")
  checks.check_int(config, "sine.pool_size", 0)
  if 0 < config.sine.pool_size < config.sine.n_functions:
    checks.fail("sine.pool_size", config.sine.pool_size,
                f"0 (fresh functions) or at least sine.n_functions={config.sine.n_functions}")
  checks.check_positive_ints(config, "net.widths")


def network(config):
  """The regression MLP (``net.widths``) and one input's shape ``(n_functions + 1,)``."""
  return nets.regression_mlp(tuple(config.net.widths)), (config.sine.n_functions + 1,)


def lifetime_steps(config) -> int:
  """``T = n_functions * steps_per_function``."""
  return config.sine.n_functions * config.sine.steps_per_function


def _options(config, order: str | None = None) -> dict:
  s = config.sine
  return dict(order=order or config.order, mixed_batches=s.mixed_batches,
              n_functions=s.n_functions, steps_per_function=s.steps_per_function,
              batch_size=s.batch_size, queries_per_function=s.queries_per_function)


def train_task(config, order: str | None = None) -> Task:
  """Meta-training lifetimes: functions from a fixed pool of ``sine.pool_size``
  (``sine.pool_seed``), in ``order`` (default ``config.order``; ``config.run_orders``: one
  order per run)."""
  s = config.sine
  pool = sample_functions(jax.random.key(s.pool_seed), s.pool_size) if s.pool_size else None
  options = _options(config, order)
  if config.get("run_orders") and order is None:  # one order per run (`Task.data_axes`)
    options["order"] = tuple(config.run_orders)
  return make_task(pool=pool, **options)


def test_task(config) -> Task:
  """Meta-test lifetimes: fresh functions."""
  return make_task(pool=None, **_options(config))


#: Validation lifetimes are fresh functions too (drawn with ``eval.validation_seed``).
validation_task = test_task
