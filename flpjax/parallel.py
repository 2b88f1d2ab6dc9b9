"""Spreading independent runs and lifetimes over devices with `jax.sharding`.

Everything parallel in flpjax is a leading axis of independent items (runs of
a table row or a sweep; lifetimes of an evaluation). On one device that axis is
`vmap`ped; on several it is also sharded along a one-dimensional `Mesh`, and
`jax.jit` partitions the program (GSPMD): no hand-written collectives. On a
multi-host system call `jax.distributed.initialize()` first; `jax.devices()`
then lists every host's devices and the same code runs.

Example (4 CPU devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=4``):
  >>> states = parallel.shard_runs(meta.init_states(learner, opt, keys))
  >>> states, metrics = meta.make_runs_meta_step(full.make(learner, task), opt)(states, keys, data)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "runs"


def mesh(devices=None) -> Mesh:
  """A one-dimensional mesh over ``devices`` (default: all), axis name ``'runs'``."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def runs_sharding(n: int, devices=None) -> NamedSharding | None:
  """Sharding of a leading axis of ``n`` items over the devices, or None.

  None (leave it to jit, replicated on one device) when there is one device
  or ``n`` is not a multiple of the device count.
  """
  devices = jax.devices() if devices is None else devices
  if len(devices) < 2 or n % len(devices):
    return None
  return NamedSharding(mesh(devices), PartitionSpec(AXIS))


def shard_runs(tree: Any, devices=None) -> Any:
  """Places every leaf's leading axis across the devices (no-op when not divisible)."""
  n = jax.tree.leaves(tree)[0].shape[0]
  sharding = runs_sharding(n, devices)
  if sharding is None:
    return tree
  return jax.device_put(tree, sharding)
