"""experiments/figures.py end to end on two tiny trained runs."""

import json
import math
import os
import subprocess
import sys

import pytest

from flpjax import config as config_lib
from flpjax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCTIONS, STEPS = 3, 3  # per lifetime: 3 functions x 3 batches = 9 steps


def _tiny_config(learner):
  c = config_lib.base_config()
  c.order = "continual"
  c.learner = learner
  c.plastic_layers = 2
  c.net.widths = (16, 16, 16)
  c.sine.n_functions = FUNCTIONS
  c.sine.steps_per_function = STEPS
  c.sine.batch_size = 4
  c.sine.queries_per_function = 4
  c.sine.pool_size = 20
  c.meta.steps = 3
  c.meta.lr.ff = c.meta.lr.fb = c.meta.lr.beta = 1e-3
  c.meta.lr.alpha = 1e-4
  c.eval.lifetimes = 2
  c.eval.batch = 2
  c.checkpoint_every = 3
  c.log_every = 3
  return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  for learner in ("flp", "gradient"):
    train.train_and_evaluate(_tiny_config(learner), str(root / learner))
  return root


def _figures(*args):
  return subprocess.run([sys.executable, "experiments/figures.py", *args], cwd=REPO,
                        capture_output=True, text=True, check=False)


def _shape(x):
  return (len(x),) + _shape(x[0]) if isinstance(x, list) else ()


def _finite(x):
  return all(_finite(v) for v in x) if isinstance(x, list) else (
      x is not None and math.isfinite(x))


def test_figures_from_stored_runs(runs, tmp_path):
  out = tmp_path / "figures"
  proc = _figures(f"--flp_workdirs={runs / 'flp'}", f"--grad_workdirs={runs / 'gradient'}",
                  f"--output_dir={out}", "--lifetimes=3", "--batch=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  for stem in ("figure2", "fig2a_frozen_readout", "fig2b_interference", "fig2c_alignment",
               "fig2d_update_magnitude"):  # the four panels together, and each alone
    data = (out / f"{stem}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 1_000_000, (stem, len(data))
    assert (out / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
  res = json.load(open(out / "figure2.json"))
  assert [r["learner"] for r in res["runs"]] == ["flp", "gradient"]
  assert res["lifetimes"] == 3 and all(r["step"] == 3 for r in res["runs"])
  (a,) = res["fig2a"]
  assert a["plastic_layers"] == 2 and a["metric"] == "mse"
  assert _shape(a["learned"]) == _shape(a["frozen"]) == (3,)
  assert _finite([a["learned"], a["frozen"], a["learned_mean"], a["frozen_mean"]])
  assert [b["learner"] for b in res["fig2b"]] == ["flp", "gradient"]
  for b in res["fig2b"]:
    assert b["functions_encountered"] == [2, 3]
    assert _shape(b["interference"]) == (FUNCTIONS - 1,) and _finite(b["interference"])
    assert all(v > 0 for v in b["interference"])
  (c,) = res["fig2c"]
  assert c["layers"] == [2, 3]
  assert _shape(c["alignment"]) == (FUNCTIONS * STEPS, 2) and _finite(c["alignment"])
  assert all(-1 <= v <= 1 for row in c["alignment"] for v in row)
  for d in res["fig2d"]:
    assert d["layers"] == [2, 3]
    for key in ("update_norm", "relative_update_norm"):
      assert _shape(d[key]) == (FUNCTIONS * STEPS, 2) and _finite(d[key])


def test_figures_rejects_a_run_passed_as_the_wrong_learner(runs, tmp_path):
  proc = _figures(f"--grad_workdirs={runs / 'flp'}", f"--output_dir={tmp_path}")
  assert proc.returncode == 2
  assert "config.learner='flp', but it was passed as a 'gradient' run" in proc.stderr
  proc = _figures(f"--flp_workdirs={tmp_path / 'missing'}", f"--output_dir={tmp_path}")
  assert proc.returncode == 2 and "missing: no such directory" in proc.stderr
  assert not os.listdir(tmp_path)


_TRENDS = r"""
import json, sys
sys.path.insert(0, "experiments")
import numpy as np
import figures

rng = np.random.default_rng(0)
functions, steps = 5, 12
dip = np.r_[np.linspace(0.6, 0.1, steps - 1), -0.4]  # every function ends against the gradient
out = {}
for case, profile in (("periodic", dip), ("flat", np.full(steps, 0.3))):
  fig2c = [{"label": f"FLP (2) flp2_continual net {n}", "layers": [7, 8], "functions": functions,
            "alignment": (np.tile(profile, functions)[:, None]
                          + 0.05 * rng.standard_normal((functions * steps, 2))).tolist()}
           for n in range(6)]
  res = {"fig2a": [], "fig2b": [], "fig2c": fig2c, "fig2d": []}
  out[case] = {t["claim"][:14]: t for t in figures.trends(res) if t["panel"] == "C"}
print(json.dumps(out))
"""


def test_panel_c_claims_negative_alignment_and_periodicity_with_the_functions():
  proc = subprocess.run([sys.executable, "-c", _TRENDS], cwd=REPO, capture_output=True,
                        text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.splitlines()[-1])
  neg, per = "some FLP layer", "FLP's alignmen"
  periodic, flat = out["periodic"], out["flat"]
  assert periodic[neg]["verdict"].startswith("holds (lowest: FLP (2) layer ")
  assert periodic[neg]["lowest"]["step"] % 12 == 0 and periodic[neg]["lowest"]["mean"] < -0.3
  # 2 layers x 60 lifetime steps tested: the 2-standard-error level, Bonferroni-corrected.
  assert periodic[neg]["z"] == pytest.approx(3.55, abs=0.01) and "over 120 row-layer" in (
      periodic[neg]["verdict"])
  assert periodic[per]["verdict"] == "holds" and periodic[per]["periodic"]["mean"] == 1.0
  assert periodic[per]["periodic"]["networks"] == 6 and periodic[per]["chance"]["mean"] == 0.01
  assert flat[neg]["verdict"].startswith("fails") and flat[neg]["lowest"]["mean"] > 0.2
  assert flat[per]["verdict"].startswith("fails") and flat[per]["periodic"]["mean"] < 0.2
