"""experiments/precision_check.py: meta-gradients and curves at other matmul precisions."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path):
  with open(path) as f:
    return json.load(f)


TINY = ["--config.net.widths=(8,8,8)", "--config.sine.n_functions=2",
        "--config.sine.steps_per_function=3", "--config.sine.batch_size=4",
        "--config.sine.queries_per_function=4"]


def _run(args, tmp_path):
  return subprocess.run([sys.executable, "experiments/precision_check.py",
                         f"--output={tmp_path / 'p.json'}"] + args,
                        cwd=REPO, capture_output=True, text=True, check=False)


def test_every_group_is_compared_and_the_curves_are_paired(tmp_path):
  proc = _run(["--config=experiments/configs/sine.py:row=flp3", "--precisions=float32,default",
               "--curve_steps=3", "--runs=2"] + TINY, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = _load(tmp_path / "p.json")
  errors = out["gradient_relative_error"]
  assert set(errors["float32"]) >= {"ff", "fb", "alpha", "beta"}
  assert all(e == 0.0 for e in errors["float32"].values())  # float32 against itself
  assert all(0.0 <= e < 0.1 for e in errors["default"].values())
  assert len(out["final_loss"]["float32"]) == 2 and len(out["final_loss"]["default"]) == 2
  assert out["verdicts"]["float32"]["agrees_with_float32"] is True


def test_unknown_precision_is_one_line(tmp_path):
  proc = _run(["--config=experiments/configs/sine.py:row=flp3", "--precisions=float8"], tmp_path)
  assert proc.returncode != 0
  assert "--precisions=float8: expected some of" in proc.stderr
