"""How long a config's meta-step takes on this machine: `time_meta_step`.

Used by ``experiments/bench.py`` (speed reports) and by ``experiments/reproduce.py
--budget_s`` (which cells fit in a GPU allocation). All of a config's runs
(``config.runs``, one stream order each with ``config.run_orders``) are one
program, as in training (`meta.make_runs_meta_step`).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from flpjax import meta
from flpjax.config import build
from flpjax.types import Task


def time_meta_step(config, *, steps: int = 3, warmup: int = 1, task: Task | None = None
                   ) -> dict[str, Any]:
  """Times ``steps`` meta-steps of a validated ``config`` after its first call and ``warmup``.

  Args:
    config: a validated config (``matmul_precision`` is applied here).
    steps: timed meta-steps (each blocked on).
    warmup: untimed meta-steps after the first call.
    task: the meta-training task (default: the config's, `config.make_tasks`).

  Returns:
    ``first_s`` (compilation + one step), ``times`` (seconds of each timed step),
    ``s_per_step`` (their median), ``compile_s`` (first call minus the median),
    ``runs`` and ``loss`` (mean meta-loss of the last step).
  """
  jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  learner = build.make_learner(config)
  task = task if task is not None else build.make_tasks(config)[0]
  optimizer = build.make_optimizer(config, learner)
  estimator = build.make_estimator(config, learner, task)
  runs = config.runs
  if runs == 1:
    state = meta.init_state(learner, optimizer, jax.random.key(0), estimator=estimator)
    meta_step = meta.make_meta_step(estimator, optimizer)
    step = lambda s, i: meta_step(s, jax.random.key(i), task.data)
  else:  # run r: key(r), as config.runs does (experiment.checkpoints.run_keys)
    keys = jax.vmap(jax.random.key)(np.arange(runs))
    state = meta.init_states(learner, optimizer, keys, estimator=estimator)
    runs_step = meta.make_runs_meta_step(estimator, optimizer, task.data_axes)
    step = lambda s, i: runs_step(s, jax.vmap(jax.random.fold_in, (0, None))(keys, i), task.data)
  t = time.perf_counter()
  state, m = step(state, 0)
  jax.block_until_ready(m)
  first = time.perf_counter() - t
  for i in range(warmup):
    state, m = step(state, 1 + i)
  jax.block_until_ready(m)
  times = []
  for i in range(steps):
    t = time.perf_counter()
    state, m = step(state, 100 + i)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  median = float(np.median(times))
  return {"first_s": first, "times": times, "s_per_step": median,
          "compile_s": max(first - median, 0.0), "runs": runs,
          "loss": float(np.mean(m["loss"]))}
