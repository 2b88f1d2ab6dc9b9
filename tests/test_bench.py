"""experiments/bench.py: the miniature's cases, the meta-step's FLOP count, the matmul rate.

Run in a subprocess, as bench runs its cases (its absl flags stay out of this process).
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CODE = r"""
import json, sys
sys.path.insert(0, "experiments")
import jax
import bench
from flpjax import config as config_lib
from flpjax.config import build

out = {"runs": {c: bench._load_config(*v).runs for c, v in bench.CASES.items()
                if "scale=mini" in v[0]}}
scan = jax.lax.scan
tiny = {"net.widths": (8, 8, 8), "sine.n_functions": 2, "sine.batch_size": 4,
        "sine.queries_per_function": 4}
out["flops"], out["compiled"] = [], []
for steps in (2, 4):
  config = bench._load_config("sine.py:row=flp3,scale=reduced",
                              {**tiny, "sine.steps_per_function": steps})
  config.runs = 2
  config_lib.validate(config)
  task = build.make_tasks(config)[0]
  out["flops"].append(bench.step_cost(config, task)["gflop_per_step"])
  if steps == 2:
    out["compiled"].append(bench.step_cost(config, task, compiled=True)["gflop_per_step"])
out["scan_restored"] = jax.lax.scan is scan
out["rate"] = bench.matmul_rate(size=64, runs=2, rows=4, width=8, chain=10, repeats=3)
print(json.dumps(out))
"""


def test_mini_cases_flops_per_lifetime_step_and_matmul_rate():
  proc = subprocess.run([sys.executable, "-c", _CODE], cwd=REPO, capture_output=True,
                        text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # each mini case has its config's own networks: MINI_SEEDS of sine.py / fewshot.py
  assert len(out["runs"]) >= 5 and all(r == (6 if c.startswith("mini_sine") else 5)
                             for c, r in out["runs"].items()), out["runs"]
  # every step of the lifetime is counted (XLA alone counts a scan's body once): twice
  # the steps, nearly twice the FLOPs (the query loss and the update are counted once)
  short, long = out["flops"]
  assert short > 0 and 1.5 < long / short < 2.1, out["flops"]
  # the optimised HLO counts as much or more (XLA's CPU fusions; 7% more on the mini
  # cells, more on this tiny network, whose elementwise work weighs more)
  assert 0.9 < out["compiled"][0] / short < 2.0, (out["compiled"], short)
  assert out["scan_restored"]
  rate = out["rate"]
  assert rate["kind"] == "matmul_rate"
  assert all(rate[k] > 0 for k in ("square_gflops", "mini_call_gflops", "mini_loop_gflops"))
