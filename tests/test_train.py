"""End-to-end: a short meta-training that must learn; the binaries.

Resume, determinism and non-finite steps: test_resume.py; bad inputs: test_inputs.py.
"""

import json
import os
import subprocess
import sys

import chex
import pytest

from flpjax import config as config_lib
from flpjax import train
from flpjax.reporting import metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(steps=1500):
  """The quick-start config (`experiments/configs/sine.py:row=quick`) on shorter lifetimes.

  3 functions per lifetime instead of 5 (24 steps, not 40) and 1500 meta-steps instead
  of 3000, with 40 test lifetimes: each meta-step costs 0.6 times as much and the
  networks learn within lifetimes sooner. Measured on the 2-core AMD EPYC (seeds
  0-3): meta-test MSE 0.6-1.6% of its start and 1.0-3.2% of the frozen twin's,
  against the test's bounds of 20% and 30%.
  """
  c = config_lib.base_config()
  c.net.widths = (64,) * 8
  c.sine.n_functions = 3
  c.sine.steps_per_function = 8
  c.sine.batch_size = 16
  c.sine.queries_per_function = 32
  c.sine.pool_size = 200
  c.meta.steps = steps
  c.meta.lr.ff = 1e-3
  c.meta.lr.fb = 1e-3
  c.meta.lr.alpha = 1e-6
  c.meta.lr.beta = 1e-3
  c.eval.lifetimes = 40
  c.checkpoint_every = max(steps, 1)  # one checkpoint, at the end: the test reads no other
  c.log_every = 100
  return c


def tiny_config(steps=6, **fields):
  """A tiny sine FLP (3) run, for tests of the training job rather than of learning.

  The network, task and evaluation batch of test_resume.py's ``TINY_CONFIG`` (and,
  with other plastic layers, test_inputs.py's and test_figures.py's), so that the
  session's compilation cache (conftest.py) compiles their programs once for all:
  how fast a test runs is its compilations. Any ``fields`` (``'meta.lr.ff'``) are set.
  """
  c = config_lib.base_config()
  c.net.widths = (16, 16, 16)  # layers 0-2 hidden, 3 the readout; plastic: 1, 2, 3
  c.sine.n_functions = 3
  c.sine.steps_per_function = 3
  c.sine.batch_size = 4
  c.sine.queries_per_function = 4
  c.sine.pool_size = 20
  c.meta.steps = steps
  c.meta.lr.ff = c.meta.lr.fb = c.meta.lr.beta = 1e-3
  c.meta.lr.alpha = 1e-6
  c.eval.lifetimes = 4
  c.eval.batch = 2
  c.checkpoint_every = 3
  c.log_every = 3
  for path, value in fields.items():
    config_lib.set_field(c, path, value)
  return c


@pytest.mark.slow
def test_short_meta_training_learns_within_lifetimes(tmp_path):
  """FLP (3) at reduced size: meta-test MSE far below its start and below a no-plasticity twin.

  The twin has the same meta-training but plasticity, feedback and feedback strength
  frozen at their initial values (alpha = 0): it can only learn a good initialisation,
  so the gap is what the networks learn *within* their lifetimes.
  """
  c = small_config()
  c.eval.at_start = True
  result = train.train_and_evaluate(c, str(tmp_path / "flp"))
  start = [r for r in metrics.read_metrics(str(tmp_path / "flp")) if r["kind"] == "eval"][0]
  frozen = small_config()
  frozen.meta.lr.alpha = frozen.meta.lr.fb = frozen.meta.lr.beta = 0.0
  baseline = train.train_and_evaluate(frozen, str(tmp_path / "frozen"))
  assert result["mse"] < 0.2 * start["mse"], (result["mse"], start["mse"])
  assert result["mse"] < 0.3 * baseline["mse"], (result["mse"], baseline["mse"])
  assert result["mse"] + 3 * result["mse_stderr"] < baseline["mse"] - 3 * baseline["mse_stderr"]
  saved = json.load(open(tmp_path / "flp" / "eval.json"))
  assert saved["mse"] == result["mse"] and saved["lifetimes"] == 40


def test_gradient_baseline_initialised_from_an_flp_run(tmp_path):
  c = tiny_config(steps=2)
  train.train_and_evaluate(c, str(tmp_path / "flp"))
  flp_params, _ = train.restore_params(str(tmp_path / "flp"), c)
  g = tiny_config(steps=0, learner="gradient", init_ff_from=str(tmp_path / "flp"))
  train.train_and_evaluate(g, str(tmp_path / "grad"))
  params, _ = train.restore_params(str(tmp_path / "grad"), g)
  chex.assert_trees_all_equal(params["ff"], flp_params["ff"])


def _run(args, **kw):
  return subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True,
                        check=False, **kw)


def test_quickstart_binary_and_evaluate(tmp_path):
  # 3 functions per lifetime and evaluation batches of 10 lifetimes: the programs that
  # test_short_meta_training_learns_within_lifetimes compiled (conftest.py's cache).
  proc = _run(["experiments/train.py", "--config=experiments/configs/sine.py:row=quick",
               f"--workdir={tmp_path}", "--config.meta.steps=3", "--config.eval.lifetimes=10",
               "--config.sine.n_functions=3"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| after 3 meta-steps |" in proc.stdout
  proc = _run(["experiments/evaluate.py", f"--workdir={tmp_path}", "--lifetimes=20"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.load(open(tmp_path / "eval_3.json"))["lifetimes"] == 20
  stored = tmp_path / "stored" / "quick"
  proc = _run(["experiments/evaluate.py", f"--workdir={tmp_path}", f"--export={stored}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  proc = _run(["experiments/evaluate.py", f"--params={stored}", "--lifetimes=20",
               f"--output={tmp_path / 'stored.json'}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  # The same network and the same evaluation lifetimes: the same numbers.
  assert (json.load(open(tmp_path / "stored.json"))["mse"]
          == json.load(open(tmp_path / "eval_3.json"))["mse"])
  # Its bad inputs (status 2 and one error line): test_inputs.py; here, in this process,
  # exporting from a directory that is not a run.
  with pytest.raises(train.WorkdirError, match="absent: no such directory"):
    train.export_params(str(tmp_path / "absent"), str(tmp_path / "x"))


def test_stored_meta_parameters_evaluate_without_the_workdir(tmp_path):
  c = tiny_config(steps=3)
  train.train_and_evaluate(c, str(tmp_path / "run"))
  path = train.export_params(str(tmp_path / "run"), str(tmp_path / "stored" / "net"))
  config, params, step = train.load_params_file(path)
  want, _ = train.restore_params(str(tmp_path / "run"), c)
  chex.assert_trees_all_equal(params, want)
  assert step == 3 and config.plastic_layers == c.plastic_layers
  proc = _run(["experiments/evaluate.py", f"--params={path}", "--lifetimes=2"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.load(open(path + "_eval_3.json"))["lifetimes"] == 2
  with pytest.raises(train.WorkdirError, match="not stored meta-parameters"):
    train.load_params_file(str(tmp_path / "nothing"))  # evaluate.py --params: status 2
