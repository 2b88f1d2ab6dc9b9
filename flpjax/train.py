"""Meta-training and evaluation of one configuration, resumable: `train_and_evaluate`.

The job in one function; its parts are modules of `flpjax.experiment`:
`workdir` (the run's directory and config), `checkpoints` (orbax, stored
meta-parameters), `warmstart` (where the meta-parameters start), `loop` (the
meta-training loop), `aggregate` (results across runs), `metrics` (metrics
files), `errors` (one-line errors). The names most used from outside are
re-exported here.

Workdir layout::

  config.json             the config of the latest invocation
  checkpoints/<step>/     orbax checkpoints: state/ (TrainState), run/ (JSON)
  metrics.jsonl           one JSON line per train record, skipped step and evaluation
  tensorboard/            the same scalars as TensorBoard events
  eval.json               the final meta-test results
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging

from flpjax import config as config_lib
from flpjax.datasets import DataError
from flpjax.experiment import aggregate, loop
from flpjax.experiment.aggregate import evaluate_params, results_table  # noqa: F401
from flpjax.experiment.checkpoints import (  # noqa: F401
  checkpoint_manager,
  export_params,
  load_params_file,
  load_run,
  restore_params,
)
from flpjax.experiment.workdir import (  # noqa: F401
  RESUMABLE_FIELDS,
  changed_fields,
  prepare_workdir,
  read_config,
)
from flpjax.reporting.errors import NonFiniteError, WorkdirError
from flpjax.reporting.metrics import MetricWriter, read_metrics, write_json

#: Errors caused by the inputs (config, flags, workdir, data): the binaries
#: print their one-line message and exit with status 2.
USER_ERRORS = (config_lib.ConfigError, WorkdirError, DataError)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Meta-trains ``config`` in ``workdir`` (resuming if possible) and evaluates it.

  Checks every input before compiling anything: the config's fields, the
  workdir (created if needed, writable), the checkpoint to resume from (that
  of the same run) and the data files. Non-finite meta-steps are skipped
  (parameters and optimizer state untouched), logged and recorded; a state
  with a non-finite value is never saved.

  Args:
    config: an `ml_collections.ConfigDict` (see `config.base_config`).
    workdir: where checkpoints, metrics and results go.

  Returns:
    The final evaluation results (also written to ``workdir/eval.json``).

  Raises:
    ConfigError, WorkdirError, DataError: bad inputs, before anything is compiled.
    NonFiniteError: ``config.meta.max_nonfinite`` non-finite meta-steps in a row
      (the last good checkpoint stays the latest).
  """
  config_lib.validate(config)
  jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  workdir = prepare_workdir(workdir)
  learner = config_lib.make_learner(config)
  optimizer = config_lib.make_optimizer(config, learner)
  train_task, _ = config_lib.make_tasks(config)  # data errors before any workdir state
  ckpts = os.path.join(workdir, "checkpoints")
  if not (os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts))):
    config_lib.check_source_runs(config)  # a fresh run: the runs it starts from exist
  estimator = config_lib.make_estimator(config, learner, train_task)
  mngr = checkpoint_manager(workdir, config.keep_checkpoints)
  writer, results = None, []
  try:
    state, window, start = loop.open_run(mngr, config, workdir, learner, optimizer, estimator)
    write_json(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    writer = MetricWriter(workdir, resume_step=start)
    start = start or 0
    if config.eval.at_start and start == 0:
      r = evaluate_params(config, state.params)
      writer.write(0, "eval", aggregate.scalars(r))
      results.append(("before meta-training (step 0)", r))
      logging.info("evaluation at step 0: %s", aggregate.headline(r))
    curve = aggregate.make_curve(config) if config.eval.curve_every else None
    state = loop.train(config, workdir, train_task, estimator, optimizer, mngr, writer, state,
                       window, start, curve, config_lib.step_options(config, learner))
    mngr.wait_until_finished()
    step = int(np.max(jax.device_get(state.step)))
    final = evaluate_params(config, state.params)
    writer.write(step, "eval", aggregate.scalars(final))
    if config.sweep.lrs:  # choose on validation lifetimes, never on the meta-test classes
      val = evaluate_params(config, state.params, validation=True)
      metric = "mse" if "mse" in val else "error"
      scores = [r[metric] for r in val.get("runs", [val])]
      best = int(np.nanargmin(np.where(np.isfinite(scores), scores, np.nan))) if np.any(
          np.isfinite(scores)) else -1
      final["sweep"] = {"group": config.sweep.group, "lrs": list(config.sweep.lrs),
                        f"validation_{metric}": scores, "best_run": best,
                        "best_lr": config.sweep.lrs[best] if best >= 0 else None}
      writer.write(step, "sweep", {f"validation_{metric}_run{r}": v for r, v in enumerate(scores)})
  finally:
    mngr.close()
    if writer is not None:
      writer.close()
  final.update({"step": step, "device": jax.devices()[0].device_kind})
  records = read_metrics(workdir)
  curve = aggregate.curve_from_metrics(records)
  if curve:
    final["curve"] = curve
  skipped = ("non-finite meta-steps" if not config_lib.max_loss(config) else
             "skipped meta-steps (non-finite, or loss above config.meta.max_loss)")
  for r in records:  # runs stopped for too many non-finite meta-steps count as diverged
    if r.get("kind") == "stopped":
      run = final["runs"][r["run"]] if "runs" in final else final
      run["stopped"] = (f"meta-training stopped at step {r['step']}: "
                        f"{r['nonfinite_total']} {skipped}")
  write_json(os.path.join(workdir, "eval.json"), final)
  results.append((f"after {step} meta-steps", final))
  logging.info("evaluation at step %d: %s", step, aggregate.headline(final))
  print(results_table(results), flush=True)
  return final
