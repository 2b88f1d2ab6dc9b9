r"""Meta-step speed and memory of the paper's configurations, one JSON line per case.

  python experiments/bench.py                       # every case
  python experiments/bench.py --cases=sine_flp3_iid,sine_grad3_so --steps=5
  python experiments/bench.py --cases=sine_flp3_iid --runs=1,2,4,8,16   # vmapped networks

Each case runs in its own process (so that peak memory is its own): it builds
the config's learner and task, times the first meta-step (compilation + one
step), then ``--steps`` more (after ``--warmup`` uncounted ones). Keys:
``case``, ``device`` (CPU model or GPU name), ``s_per_step_median``,
``s_per_step_min``, ``s_per_step_max``, ``compile_s`` (first call minus the
median step), ``peak_rss_mb`` (host), ``peak_device_mb`` (accelerators only),
``steps``, ``runs`` (independent networks in one vmapped program,
`meta.make_runs_meta_step`) and ``run_steps_per_s`` (meta-steps x runs per
second). Runs unchanged on CPU and on a CUDA GPU.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

from absl import app, flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIGS = os.path.join(_REPO, "experiments", "configs")

# case -> (config string under experiments/configs/, overrides); paper scale
CASES = {
    "sine_flp3_iid": ("sine.py:row=flp3,order=iid", {}),
    "sine_flp9_iid": ("sine.py:row=flp9,order=iid", {}),
    "sine_grad3_fo": ("sine.py:row=grad3,order=iid", {}),
    "sine_grad3_so": ("sine.py:row=grad3,order=iid", {"gradient.second_order": True}),
    "omniglot_flp2": ("fewshot.py:dataset=omniglot,row=flp2", {}),
    "omniglot_grad2": ("fewshot.py:dataset=omniglot,row=grad2", {}),
    "mini_imagenet_flp2": ("fewshot.py:dataset=mini_imagenet,row=flp2", {}),
    "mini_imagenet_grad2": ("fewshot.py:dataset=mini_imagenet,row=grad2", {}),
}

_CASES = flags.DEFINE_list("cases", None, f"Cases to run (default: all of {list(CASES)}).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed meta-steps per case (at least 5 for reports).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed meta-steps after the first call.")
_DATA = flags.DEFINE_enum(
    "data", "real", ["real", "synthetic"],
    "Classification images: the real data set, or random uint8 arrays of the same shape "
    "(speed does not depend on pixel values; for machines without the data or tfds).")
_PRECISION = flags.DEFINE_string("matmul_precision", "highest",
                                  "jax_default_matmul_precision (config.matmul_precision).")
_RUNS = flags.DEFINE_list("runs", ["1"], "Networks per program (config.runs); one line per value.")
_ONE = flags.DEFINE_string("one", None, "Internal: run this single case in this process.")


def _load_config(name: str, overrides: dict):
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_file(os.path.join(_CONFIGS, name))
  for path, value in overrides.items():
    config_lib.set_field(config, path, value)
  return config


def _synthetic_tasks(config):
  """Few-shot tasks over random uint8 images of the real splits' shapes."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flpjax.tasks import fewshot  # pylint: disable=g-import-not-at-top
  f = config.fewshot
  ch = 1 if config.task == "omniglot" else 3
  classes, per_class = {"omniglot": ((963, 20), (660, 20)),
                        "mini_imagenet": ((64, 600), (20, 600))}[config.task]
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, c + (f.image_size, f.image_size, ch), np.uint8)
            for c in (classes, per_class)]
  return (fewshot.make_train_task(images[0], dataset=config.task, ways=f.ways, shots=f.shots,
                                  queries=f.queries_per_class, order=config.order),
          None)


def run_case(case: str, steps: int, warmup: int, data: str = "real",
             precision: str = "highest", runs: int = 1) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import summary  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import timing  # pylint: disable=g-import-not-at-top

  config = _load_config(*CASES[case])
  config.matmul_precision = precision
  config.runs = runs
  config_lib.validate(config)
  task = _synthetic_tasks(config)[0] if data == "synthetic" and config.task != "sine" else None
  timed = timing.time_meta_step(config, steps=steps, warmup=warmup, task=task)
  times = timed["times"]
  out = {
      "case": case,
      "device": summary.device_name(),
      "s_per_step_median": timed["s_per_step"],
      "s_per_step_min": float(np.min(times)),
      "s_per_step_max": float(np.max(times)),
      "compile_s": timed["compile_s"],
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "steps": steps,
      "runs": runs,
      "run_steps_per_s": float(runs / timed["s_per_step"]),
      "loss": timed["loss"],
      "data": data if config.task != "sine" else "generated",
      "matmul_precision": precision,
      "jax": jax.__version__,
  }
  stats = jax.devices()[0].memory_stats() if jax.devices()[0].platform != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
  return out


def main(argv):
  del argv
  if _ONE.value:
    print(json.dumps(run_case(_ONE.value, _STEPS.value, _WARMUP.value, _DATA.value,
                              _PRECISION.value, int(_RUNS.value[0]))), flush=True)
    return
  cases = _CASES.value or list(CASES)
  unknown = [c for c in cases if c not in CASES]
  if unknown:
    sys.exit(f"error: --cases: unknown {unknown}; expected some of {list(CASES)}")
  if _STEPS.value < 1:
    sys.exit(f"error: --steps={_STEPS.value}: expected an integer >= 1")
  try:
    runs = [int(r) for r in _RUNS.value]
  except ValueError:
    runs = [0]
  if any(r < 1 for r in runs):
    sys.exit(f"error: --runs={','.join(_RUNS.value)}: expected positive integers")
  failed = False
  for case, r in [(c, r) for c in cases for r in runs]:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--one={case}", f"--steps={_STEPS.value}",
         f"--warmup={_WARMUP.value}", f"--data={_DATA.value}", f"--runs={r}",
         f"--matmul_precision={_PRECISION.value}"], capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode or not lines:
      failed = True
      err = (proc.stderr.strip().splitlines() or ["?"])[-1]
      print(json.dumps({"case": case, "runs": r, "error": err}), flush=True)
    else:
      print(lines[-1], flush=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main)
