"""experiments/long_lifetimes_training.py: the memory of a meta-step against the lifetime."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path):
  with open(path) as f:
    return json.load(f)


TINY = ["--config.net.widths=(8,8,8)", "--config.sine.n_functions=2",
        "--config.sine.steps_per_function=4", "--config.sine.batch_size=4",
        "--config.sine.queries_per_function=4"]


def test_truncated_memory_stays_flat_while_full_backprop_grows(tmp_path):
  out = tmp_path / "long.json"
  proc = subprocess.run(
      [sys.executable, "experiments/long_lifetimes_training.py", "--parts=memory",
       "--memory_factors=1,32", "--memory_scales=mini", f"--output={out}"] + TINY,
      cwd=REPO, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = _load(out)
  for scale in ("mini",):
    rows = result["memory"][scale]
    assert [r["factor"] for r in rows] == [1, 32] and rows[0]["T"] == 8
    full = [r["full"]["temp"] for r in rows]
    truncated = [r["truncated"]["temp"] for r in rows]
    # full backprop keeps every step's fast state: linear in the lifetime
    assert full[1] > 8 * full[0] > 0
    # truncated backprop keeps one T-step window's fast states: only the sampled
    # episode (inputs and targets of the whole lifetime) grows with k
    assert truncated[1] - truncated[0] < 0.1 * (full[1] - full[0])
    assert truncated[1] < full[1] / 4
