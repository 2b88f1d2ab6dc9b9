r"""Meta-step speed and memory of the paper's configurations, one JSON line per case.

  python experiments/bench.py                       # every case
  python experiments/bench.py --cases=sine_flp3_iid,sine_grad3_so --steps=5
  python experiments/bench.py --cases=sine_flp3_iid --runs=1,2,4,8,16   # vmapped networks
  python experiments/bench.py --cases=sine_flp3_iid,omniglot_flp2 --trunks=builtin,flax
  FLPJAX_DATA_DIR=... python experiments/bench.py --cases=mini_sine_flp3_continual,mini_omniglot_flp2 \
      --steps=20                                    # the CPU miniature's cells

Each case runs in its own process (so that peak memory is its own): it builds
the config's learner and task, times the first meta-step (compilation + one
step), then ``--steps`` more (after ``--warmup`` uncounted ones). Keys:
``case``, ``device`` (CPU model or GPU name), ``s_per_step_median``,
``s_per_step_min``, ``s_per_step_max``, ``compile_s`` (first call minus the
median step), ``peak_rss_mb`` (host), ``peak_device_mb`` (accelerators only),
``steps``, ``runs`` (independent networks in one vmapped program,
`meta.make_runs_meta_step`), ``run_steps_per_s`` (meta-steps x runs per
second) and ``trunk`` (``config.net.trunk``: ``''`` the built-in frozen layers;
``--trunks=flax`` times the same layers as a flax module, `flpjax.trunks`'
``'mlp'`` or ``'conv'``). Runs unchanged on CPU and on a CUDA GPU.

The ``mini_*`` cases are cells of the CPU miniature (``scale=mini``), each with
its config's own vmapped networks (``config.runs``: 6 for sine, 5 for Omniglot)
unless ``--runs`` is given.

Work per step (``--flops``): ``gflop_per_step`` is XLA's cost analysis
(``'flops'``) of the meta-step, built as `timing.time_meta_step` builds it. XLA
counts a while loop's body once, so the lifetime's ``jax.lax.scan`` is unrolled
for this count only (the timed step keeps its loop). ``--flops=lowered``
(default) analyses the HLO as lowered, in seconds; ``--flops=compiled`` the
optimised HLO XLA compiles (7% more on the miniature's cells, but compiling the
unrolled program takes minutes). ``flops_of`` says which, ``flops_s`` how long
it took; ``gflops`` is ``gflop_per_step / s_per_step_median``.

``--matmul_rate`` (on by default): first a ``{"kind": "matmul_rate", ...}``
line, the float32 matmul rate XLA reaches on this device
(`matmul_rate`): a square ``1024 x 1024`` product, and the miniature's
typical product, ``(R, 16, 64) x (R, 64, 64)`` for R vmapped networks, once per
call (what dispatch allows) and chained in a compiled loop (what the scanned
lifetime allows). Each case line then gets ``fraction_of_matmul_rate``
(``gflops`` over the square rate).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time

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
    # the CPU miniature's cells (reproduce.py --scale=mini), config.runs networks each
    "mini_sine_flp3_continual": ("sine.py:row=flp3,order=continual,scale=mini", {}),
    "mini_sine_flp3_iid": ("sine.py:row=flp3,order=iid,scale=mini", {}),
    "mini_sine_reuse1_iid": ("sine.py:row=reuse1,order=iid,scale=mini", {}),
    "mini_sine_grad3_continual": ("sine.py:row=grad3,order=continual,scale=mini", {}),
    "mini_omniglot_flp2": ("fewshot.py:dataset=omniglot,row=flp2,scale=mini", {}),
    "mini_omniglot_grad2": ("fewshot.py:dataset=omniglot,row=grad2,scale=mini", {}),
    "mini_omniglot_reuse1": ("fewshot.py:dataset=omniglot,row=reuse1,scale=mini", {}),
    # the same learners with only the episode's readout rows in the fast state (exact)
    "mini_omniglot_flp2_rows": ("fewshot.py:dataset=omniglot,row=flp2,scale=mini",
                                {"flp.readout_rows": 5}),
    "mini_omniglot_reuse1_rows": ("fewshot.py:dataset=omniglot,row=reuse1,scale=mini",
                                  {"flp.readout_rows": 5}),
    "omniglot_flp2_rows": ("fewshot.py:dataset=omniglot,row=flp2", {"flp.readout_rows": 5}),
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
_RUNS = flags.DEFINE_list(
    "runs", [], "Networks per program (config.runs); one line per value (default: the "
    "config's own, 1 at paper scale).")
_FLOPS = flags.DEFINE_enum(
    "flops", "lowered", ["lowered", "compiled", "none"],
    "gflop_per_step and gflops from XLA's cost analysis of the meta-step, its scans "
    "unrolled: of its HLO as lowered (seconds), or as compiled (XLA's optimised HLO; "
    "minutes for a 100-step lifetime), or none.")
_MATMUL = flags.DEFINE_bool(
    "matmul_rate", True, "First measure the float32 matmul rate (a 'matmul_rate' line) and "
    "give each case its fraction_of_matmul_rate.")
_TRUNKS = flags.DEFINE_list(
    "trunks", ["builtin"],
    "Frozen trunks to time each case with, one line each: 'builtin' (the network's own "
    "layers, config.net.trunk=''), 'flax' (the same layers as a flax module: 'mlp' for sine, "
    "'conv' for few-shot), or any config.net.trunk value ('package.module:attr').")
_ONE = flags.DEFINE_string("one", None, "Internal: run this single case in this process.")
_MATMUL_CASE = "matmul_rate"  # --one=matmul_rate: the matmul_rate line


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


def _set_trunk(config, trunk: str) -> str:
  """Sets ``config.net.trunk`` from a ``--trunks`` value (``builtin``: '', ``flax``: the
  flax module of the same layers); returns what it set."""
  value = {"builtin": "", "flax": "mlp" if config.task == "sine" else "conv"}.get(trunk, trunk)
  config.net.trunk = value
  return value


_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@contextlib.contextmanager
def _unrolled_scans():
  """Within: every ``jax.lax.scan`` traced is fully unrolled (``unroll=True``)."""
  import jax  # pylint: disable=g-import-not-at-top
  scan = jax.lax.scan
  jax.lax.scan = lambda *args, **kwargs: scan(*args, **{**kwargs, "unroll": True})
  try:
    yield
  finally:
    jax.lax.scan = scan


def step_cost(config, task, compiled: bool = False) -> dict:
  """XLA's cost analysis of ``config``'s meta-step as `timing.time_meta_step` builds it
  (``config.runs`` networks vmapped), its scans unrolled so that every step of a
  lifetime is counted: ``{'gflop_per_step', 'flops_of', 'flops_s'}``.

  ``compiled``: of the optimised HLO XLA compiles (its CPU fusions count some
  operations more: on the miniature's sine and Omniglot cells 7% more than the
  lowered HLO), at the price of compiling the unrolled program (about 5 minutes for
  a 100-step sine lifetime of 6 networks on a 2-core CPU); else of the HLO as
  lowered (a few seconds)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from flpjax import meta  # pylint: disable=g-import-not-at-top
  from flpjax.config import build  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  learner = build.make_learner(config)
  optimizer = build.make_optimizer(config, learner)
  estimator = build.make_estimator(config, learner, task)
  if config.runs == 1:
    state = meta.init_state(learner, optimizer, jax.random.key(0), estimator=estimator)
    step = meta.make_meta_step(estimator, optimizer)
    key = jax.random.key(100)
  else:
    keys = jax.vmap(jax.random.key)(np.arange(config.runs))
    state = meta.init_states(learner, optimizer, keys, estimator=estimator)
    step = meta.make_runs_meta_step(estimator, optimizer, task.data_axes)
    key = jax.vmap(jax.random.fold_in, (0, None))(keys, 100)
  t = time.perf_counter()
  with _unrolled_scans():
    lowered = step.lower(state, key, task.data)
  # LLVM's optimisation level changes neither XLA's HLO nor its cost analysis
  cost = (lowered.compile(compiler_options=_FAST_COMPILE) if compiled else lowered
          ).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: one per device
  return {"gflop_per_step": float(cost["flops"]) / 1e9,
          "flops_of": "compiled" if compiled else "lowered",
          "flops_s": time.perf_counter() - t}


def _median_s(fn, *args, repeats: int) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def matmul_rate(size: int = 1024, runs: int = 6, rows: int = 16, width: int = 64,
                chain: int = 1000, repeats: int = 9) -> dict:
  """The float32 matmul rate (GFLOP/s) XLA reaches on the default device, medians of
  ``repeats`` timings: ``square_gflops`` (``size x size`` by ``size x size``);
  ``mini_call_gflops``, one ``(runs, rows, width) x (runs, width, width)`` product per
  call (bound by dispatch); ``mini_loop_gflops``, ``chain`` of them in a compiled
  `jax.lax.fori_loop` (bound by the loop's per-iteration cost, as a scanned lifetime)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from flpjax.reporting import metrics  # pylint: disable=g-import-not-at-top

  hi = jax.lax.Precision.HIGHEST
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.random.normal(k1, (size, size), jnp.float32)
  b = jax.random.normal(k2, (size, size), jnp.float32)
  square = _median_s(jax.jit(lambda a, b: jnp.matmul(a, b, precision=hi)), a, b,
                     repeats=repeats)
  x = jax.random.normal(k1, (runs, rows, width), jnp.float32)
  w = jnp.broadcast_to(jnp.eye(width, dtype=jnp.float32), (runs, width, width))  # no drift
  one = jax.jit(lambda x, w: jnp.matmul(x, w, precision=hi))
  call = _median_s(one, x, w, repeats=max(repeats, 101))
  loop = jax.jit(lambda x, w: jax.lax.fori_loop(
      0, chain, lambda _, x: jnp.matmul(x, w, precision=hi), x))
  looped = _median_s(loop, x, w, repeats=repeats)
  mini_flop = 2 * runs * rows * width * width
  return {"kind": "matmul_rate", "device": metrics.device_name(), "dtype": "float32",
          "square": [size, size, size], "square_gflops": 2 * size**3 / square / 1e9,
          "mini": [runs, rows, width, width],
          "mini_call_gflops": mini_flop / call / 1e9, "mini_call_s": call,
          "mini_loop_gflops": chain * mini_flop / looped / 1e9,
          "mini_loop_s_per_matmul": looped / chain, "repeats": repeats,
          "jax": jax.__version__}


def run_case(case: str, steps: int, warmup: int, data: str = "real",
             precision: str = "highest", runs: int | None = None, trunk: str = "builtin",
             flops: str = "lowered") -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax.config import build  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import timing  # pylint: disable=g-import-not-at-top
  from flpjax.reporting import metrics  # pylint: disable=g-import-not-at-top

  config = _load_config(*CASES[case])
  config.matmul_precision = precision
  if runs is not None:
    config.runs = runs
  runs = int(config.runs)
  trunk = _set_trunk(config, trunk)
  config_lib.validate(config)
  if data == "synthetic" and config.task != "sine":
    task = _synthetic_tasks(config)[0]
  else:
    task = build.make_tasks(config)[0]
  timed = timing.time_meta_step(config, steps=steps, warmup=warmup, task=task)
  times = timed["times"]
  out = {
      "case": case,
      "trunk": trunk,
      "device": metrics.device_name(),
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
  if flops != "none":
    out.update(step_cost(config, task, compiled=flops == "compiled"))
    out["gflops"] = out["gflop_per_step"] / timed["s_per_step"]
  stats = jax.devices()[0].memory_stats() if jax.devices()[0].platform != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
  return out


def main(argv):
  del argv
  if _ONE.value == _MATMUL_CASE:
    print(json.dumps(matmul_rate()), flush=True)
    return
  if _ONE.value:
    print(json.dumps(run_case(_ONE.value, _STEPS.value, _WARMUP.value, _DATA.value,
                              _PRECISION.value, int(_RUNS.value[0]) if _RUNS.value else None,
                              _TRUNKS.value[0], _FLOPS.value)),
          flush=True)
    return
  cases = _CASES.value or list(CASES)
  unknown = [c for c in cases if c not in CASES]
  if unknown:
    sys.exit(f"error: --cases: unknown {unknown}; expected some of {list(CASES)}")
  if _STEPS.value < 1:
    sys.exit(f"error: --steps={_STEPS.value}: expected an integer >= 1")
  try:
    runs = [int(r) for r in _RUNS.value] or [None]  # None: the config's own
  except ValueError:
    runs = [0]
  if any(r is not None and r < 1 for r in runs):
    sys.exit(f"error: --runs={','.join(_RUNS.value)}: expected positive integers")
  failed = False
  if not _TRUNKS.value:
    sys.exit("error: --trunks: expected builtin, flax or config.net.trunk values")
  rate = None
  if _MATMUL.value:
    rate = _child([f"--one={_MATMUL_CASE}"])
    failed = "error" in rate
    print(json.dumps(rate), flush=True)
  for case, trunk, r in [(c, t, r) for c in cases for t in _TRUNKS.value for r in runs]:
    line = _child([f"--one={case}", f"--steps={_STEPS.value}", f"--warmup={_WARMUP.value}",
                   f"--data={_DATA.value}", f"--matmul_precision={_PRECISION.value}",
                   f"--trunks={trunk}", f"--flops={_FLOPS.value}"]
                  + ([f"--runs={r}"] if r is not None else []))
    if "error" in line:
      failed = True
      line = {"case": case, "trunk": trunk, "runs": r, **line}
    elif rate and "gflops" in line and "square_gflops" in rate:
      line["fraction_of_matmul_rate"] = line["gflops"] / rate["square_gflops"]
    print(json.dumps(line), flush=True)
  sys.exit(1 if failed else 0)


def _child(args: list[str]) -> dict:
  """This script's last JSON line in a new process with ``args``, or ``{'error': ...}``."""
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + args,
                        capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode or not lines:
    return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
  return json.loads(lines[-1])


if __name__ == "__main__":
  app.run(main)
