"""Spreading independent runs and lifetimes over devices, and over hosts, with `jax.sharding`.

Everything parallel in flpjax is a leading axis of independent items (runs of
a table row or a sweep; lifetimes of an evaluation). On one device that axis is
`vmap`ped; on several it is also sharded along a one-dimensional `Mesh`, and
`jax.jit` partitions the program (GSPMD): no hand-written collectives, since
the runs never talk to each other.

Several hosts (JAX's multi-controller model): the same program is started once
per host (process); `initialize` (``jax.distributed.initialize``) connects
them, after which `jax.devices()` lists every process's devices and the mesh
spans them all. `shard_runs` then turns a tree that every process built
identically (e.g. `meta.init_states` from the same seeds) into global arrays of
which each process holds only its slice of the run axis (`local_runs`);
`global_runs` does the same from each process's own slice. The vmapped
meta-step (`meta.make_runs_meta_step`) runs unchanged on such states: each
process computes its runs. `gather_runs` brings per-run results (metrics, final
parameters) back as NumPy arrays on every process; write them from process 0
(``jax.process_index() == 0``).

Example (4 CPU devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=4``):
  >>> states = parallel.shard_runs(meta.init_states(learner, opt, keys))
  >>> states, metrics = meta.make_runs_meta_step(full.make(learner, task), opt)(
  ...     states, parallel.shard_runs(step_keys), task.data)
  >>> metrics = parallel.gather_runs(metrics)

Several hosts (run on every host, ``i`` = 0..N-1; on Slurm, Open MPI and Cloud
TPU the arguments can be left out):
  >>> parallel.initialize("host0:1234", num_processes=N, process_id=i)
  >>> ... the same code as above ...
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "runs"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **kwargs) -> None:
  """Connects the processes of a multi-host run: ``jax.distributed.initialize``.

  Call it first thing, on every process, before any JAX computation. On Slurm,
  Open MPI and Cloud TPU every argument may be left out (JAX detects them);
  elsewhere give all three. On CPU hosts the processes' collectives (gathering
  results) use Gloo over TCP (``jax_cpu_collectives_implementation='gloo'``,
  the default of current JAX; set here when unset, as older JAX left it); GPUs
  use NCCL, TPUs their interconnect. A no-op when already initialized.

  Args:
    coordinator_address: ``'host:port'`` of process 0, reachable from every process.
    num_processes: the number of processes (usually hosts).
    process_id: this process's index, ``0 .. num_processes - 1``.
    **kwargs: passed on (e.g. ``local_device_ids``, ``initialization_timeout``).
  """
  is_initialized = getattr(jax.distributed, "is_initialized", None)  # not in older JAX
  if is_initialized is not None and is_initialized():
    return
  if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)


def mesh(devices=None) -> Mesh:
  """A one-dimensional mesh over ``devices`` (default: all processes'), axis name ``'runs'``.

  The devices are ordered by process, so that each process holds a contiguous
  slice of the run axis.
  """
  devices = jax.devices() if devices is None else devices
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (AXIS,))


def runs_sharding(n: int, devices=None) -> NamedSharding | None:
  """Sharding of a leading axis of ``n`` items over the devices, or None.

  None (leave it to jit, replicated on one device) when there is one device
  or ``n`` is not a multiple of the device count.

  Raises:
    ValueError: when the devices span several processes and ``n`` is not a
      multiple of their count (no process could hold every run).
  """
  devices = jax.devices() if devices is None else devices
  if len(devices) > 1 and n % len(devices) and len({d.process_index for d in devices}) > 1:
    raise ValueError(f"{n} runs cannot be split evenly over {len(devices)} devices of "
                     f"{jax.process_count()} processes; use a multiple of {len(devices)} runs")
  if len(devices) < 2 or n % len(devices):
    return None
  return NamedSharding(mesh(devices), PartitionSpec(AXIS))


def local_runs(n: int, devices=None) -> slice:
  """The runs (of ``n``) this process holds under `runs_sharding`: a slice of the run axis."""
  sharding = runs_sharding(n, devices)
  if sharding is None:
    return slice(0, n)
  starts = sorted(idx[0].start or 0 for idx in
                  sharding.addressable_devices_indices_map((n,)).values())
  size = n // len(sharding.device_set)
  return slice(starts[0], starts[-1] + size)


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaves_n(tree) -> int:
  leaves = jax.tree.leaves(tree)
  if not leaves:
    raise ValueError("an empty tree has no run axis")
  return leaves[0].shape[0]


def shard_runs(tree: Any, devices=None) -> Any:
  """Places every leaf's leading (run) axis across the devices (no-op when not divisible).

  Every leaf of ``tree`` is ``(R, ...)`` (e.g. `meta.init_states`' states, keys
  ``(R,)``); the result has the same shapes.

  With several processes, ``tree`` is the full value, the same on every process
  (not checked), and each process keeps its slice (`local_runs`); leaves that
  are already global arrays are resharded.
  """
  n = _leaves_n(tree)
  sharding = runs_sharding(n, devices)
  if sharding is None:
    return tree
  if sharding.is_fully_addressable:  # one process
    return jax.device_put(tree, sharding)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)
    if _is_key(x):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def global_runs(local_tree: Any, n: int | None = None, devices=None) -> Any:
  """Global run-sharded arrays from each process's own slice of the runs.

  Process ``p`` passes the runs `local_runs(n)` (e.g. states built from
  ``keys[local_runs(n)]``), so that no process builds all of them.

  Args:
    local_tree: this process's runs, leaves ``(n / process_count(), ...)``;
      the result's leaves are global ``(n, ...)`` arrays.
    n: the number of runs in all (default: the local count times the process count).
    devices: the devices (default: all).
  """
  n = _leaves_n(local_tree) * jax.process_count() if n is None else n
  sharding = runs_sharding(n, devices)
  if sharding is None:
    return local_tree

  def put(x):
    if _is_key(x):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(sharding, x, (n,) + x.shape[1:])

  return jax.tree.map(put, local_tree)


def gather_runs(tree: Any) -> Any:
  """Every run's values as NumPy arrays, on every process (a collective: all must call it).

  Per-run results (metrics, final parameters) of run-sharded arrays, gathered
  in one program (`jax.jit` to a replicated sharding: an all-gather between
  the processes, as ``jax.experimental.multihost_utils.process_allgather``
  does leaf by leaf). PRNG keys come back as key arrays on a local device.
  With one process this is ``jax.device_get``. Leaves keep their global shapes,
  ``(R, ...)`` for run-sharded ones.
  """
  leaves, treedef = jax.tree.flatten(tree)
  spread = [i for i, x in enumerate(leaves)
            if isinstance(x, jax.Array) and not x.is_fully_addressable]
  if spread:
    shardings = [NamedSharding(leaves[i].sharding.mesh, PartitionSpec())
                 if isinstance(leaves[i].sharding, NamedSharding) else
                 NamedSharding(mesh(leaves[i].sharding.device_set), PartitionSpec())
                 for i in spread]
    gathered = jax.jit(lambda xs: xs, out_shardings=shardings)([leaves[i] for i in spread])
    for i, x in zip(spread, gathered):
      leaves[i] = x.addressable_data(0)
  leaves = [x if _is_key(x) else np.asarray(jax.device_get(x)) for x in leaves]
  return jax.tree.unflatten(treedef, leaves)
