r"""Meta-trains ``config.runs`` networks split over several hosts (`jax.distributed`).

Start the same command on every host, ``i`` = 0 .. N-1 (``host0`` reachable by all):

  python experiments/distributed_runs.py --coordinator=host0:1234 --num_processes=N \
      --process_id=i --config=experiments/configs/sine.py:row=flp3,runs=8 \
      --output=results/params/sine_flp3_8runs

On Slurm, Open MPI or Cloud TPU the three process flags may be left out (JAX
finds them); ``--num_processes=1`` runs alone, on this host's devices. ``config.runs`` must be a multiple of the number of devices of all
hosts together; each host meta-trains its slice of the runs (run ``r`` is the
one ``experiments/train.py`` trains with seed ``config.seed + r``) and no data
crosses hosts but the metrics and the final meta-parameters, gathered at the
end (and the losses every ``config.log_every`` steps). Host 0 writes
``<output>.npz`` + ``<output>.json``, the format of ``train.export_params``:
``python experiments/evaluate.py --params=<output>`` evaluates every run. No
checkpoints: for long runs use ``experiments/train.py`` per host with its own
seeds. Exit status 2 on bad input, with one ``error:`` line.
"""

import json
import os

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from flpjax import config as config_lib
from flpjax import meta, parallel, train
from flpjax.experiment.checkpoints import run_keys
from flpjax.experiment.warmstart import initial_state
from flpjax.reporting import errors
from flpjax.reporting.metrics import write_json

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Results path (host 0 writes .npz and .json).")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "output"])


def main(argv):
  del argv
  errors.quiet_libraries()
  if _NUM_PROCESSES.value != 1:
    parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config = _CONFIG.value
  try:
    config_lib.validate(config)
    if config.runs < 2 or config.runs % jax.device_count():
      raise config_lib.ConfigError(
          f"config.runs={config.runs}: must be a multiple of the {jax.device_count()} devices "
          f"of the {jax.process_count()} processes (and at least 2)")
    jax.config.update("jax_default_matmul_precision", config.matmul_precision)
    learner = config_lib.make_learner(config)
    optimizer = config_lib.make_optimizer(config, learner)
    task, _ = config_lib.make_tasks(config)
    estimator = config_lib.make_estimator(config, learner, task)
    state = initial_state(config, learner, optimizer, estimator)  # sharded over all hosts
  except train.USER_ERRORS as e:
    errors.exit_with_error(e, 2)
  logging.info("process %d of %d holds runs %s of %d", jax.process_index(),
               jax.process_count(), parallel.local_runs(config.runs), config.runs)
  keys = parallel.shard_runs(run_keys(config))
  step = meta.make_runs_meta_step(estimator, optimizer)
  records = []
  for s in range(config.meta.steps):
    step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, s)
    state, metrics = step(state, step_keys, task.data)
    if (s + 1) % config.log_every == 0 or s + 1 == config.meta.steps:
      m = parallel.gather_runs({k: metrics[k] for k in ("loss", "grad_norm", "finite")})
      records.append({"step": s + 1, **{k: v.tolist() for k, v in m.items()}})
      logging.info("meta-step %d: loss %.4g (mean over runs)", s + 1, np.nanmean(m["loss"]))
  params = parallel.gather_runs(state.params)  # every host takes part
  if jax.process_index() == 0:
    path = _OUTPUT.value
    flat = {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(params)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path + ".npz", **flat)
    write_json(path + ".json", {"step": config.meta.steps, "source": "distributed_runs.py",
                                "processes": jax.process_count(), "train": records,
                                "config": json.loads(config.to_json_best_effort())})
    print(f"wrote {path}.npz and {path}.json ({config.runs} runs, {jax.process_count()} "
          "processes)", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
