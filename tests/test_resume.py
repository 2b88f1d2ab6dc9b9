"""Runs that survive: SIGKILL and resume, extension, determinism, non-finite meta-steps."""

import glob
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import config as config_lib
from flpjax import meta, train
from flpjax.experiment import loop
from flpjax.reporting import metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny sine FLP (3) run with many fast meta-steps, as a config file for the binary.
TINY_CONFIG = '''
from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.net.widths = (16, 16, 16)
  c.sine.n_functions = 3
  c.sine.steps_per_function = 3
  c.sine.batch_size = 4
  c.sine.queries_per_function = 4
  c.sine.pool_size = 20
  c.flp.init_alpha = 1e-3
  c.meta.lr.ff = c.meta.lr.fb = c.meta.lr.beta = 1e-3
  c.meta.lr.alpha = 1e-4
  c.meta.steps = 100
  c.eval.lifetimes = 4
  c.eval.batch = 2
  c.checkpoint_every = 10
  c.keep_checkpoints = 2
  c.log_every = 5
  return c
'''


def tiny_config(**changes):
  """The tiny config, shorter and with one plastic layer (half the compilation time)."""
  namespace = {}
  exec(TINY_CONFIG, namespace)  # pylint: disable=exec-used
  c = namespace["get_config"]()
  c.plastic_layers = 1
  c.meta.steps, c.checkpoint_every, c.log_every = 12, 4, 3
  c.eval.lifetimes = 2
  for path, value in changes.items():
    config_lib.set_field(c, path.replace("__", "."), value)
  return c


def _records(workdir, timing=False):
  """metrics.jsonl without the wall-clock fields (unless ``timing``)."""
  return [{k: v for k, v in r.items() if timing or k != "step_time_s"}
          for r in metrics.read_metrics(str(workdir))]


def _assert_same_params(a, b):
  leaves_a, leaves_b = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
  assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
  for (path, x), (_, y) in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def _steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


# ----------------------------------------------------------------------------- SIGKILL


def _train_binary(config_file, workdir):
  return [sys.executable, "experiments/train.py", f"--config={config_file}",
          f"--workdir={workdir}"]


def test_sigkill_at_a_random_step_then_resume_gives_the_uninterrupted_run(tmp_path):
  config_file = tmp_path / "tiny.py"
  config_file.write_text(TINY_CONFIG)
  seed = int.from_bytes(os.urandom(4), "little")
  rng = random.Random(seed)
  kill_after = rng.choice(range(10, 70, 10))  # a checkpoint step; the run has 100 steps
  extra_delay = rng.uniform(0.0, 0.25)  # then anywhere: mid-step, mid-save, mid-record
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  quiet = dict(cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  uninterrupted = subprocess.Popen(_train_binary(config_file, straight), **quiet)
  # The victim starts once the uninterrupted run has compiled its meta-step (its first
  # checkpoint is written): with the session's compilation cache (conftest.py) it then
  # loads that program instead of compiling it again at the same time.
  deadline = time.monotonic() + 120
  while not _steps(str(straight)):
    if uninterrupted.poll() is not None or time.monotonic() > deadline:
      uninterrupted.kill()
      pytest.fail("the uninterrupted run wrote no checkpoint: "
                  f"{uninterrupted.communicate()[1][-2000:]}")
    time.sleep(0.01)
  victim = subprocess.Popen(_train_binary(config_file, killed), **quiet)
  deadline = time.monotonic() + 120
  while not _steps(str(killed)) or _steps(str(killed))[-1] < kill_after:
    assert victim.poll() is None and time.monotonic() < deadline, "the run ended too early"
    time.sleep(0.005)
  time.sleep(extra_delay)
  victim.send_signal(signal.SIGKILL)
  victim.communicate()
  context = (f"seed {seed}: killed {extra_delay:.3f} s after checkpoint {kill_after}; "
             f"checkpoints/ then held {sorted(os.listdir(killed / 'checkpoints'))}")
  assert victim.returncode == -signal.SIGKILL, context

  resumed = subprocess.run(_train_binary(config_file, killed), capture_output=True, text=True,
                           cwd=REPO, check=False)
  _, err = uninterrupted.communicate()
  assert uninterrupted.returncode == 0, err[-2000:]
  assert resumed.returncode == 0, f"{context}\n{resumed.stderr[-2000:]}"
  assert "resumed from step" in resumed.stderr, context
  assert sorted(os.listdir(killed / "checkpoints")) == ["100", "90"], context  # no tmp dirs
  config = tiny_config(meta__steps=100, plastic_layers=3)
  for step in (90, 100):
    a, _ = train.restore_params(str(straight), config, step)
    b, _ = train.restore_params(str(killed), config, step)
    _assert_same_params(a, b)
  assert _records(killed) == _records(straight), context
  assert metrics.read_metrics(str(killed))[-1]["kind"] == "eval"


# ----------------------------------------------------------------------------- in-process runs


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  """12 meta-steps of the tiny config, uninterrupted."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  train.train_and_evaluate(tiny_config(), workdir)
  return workdir


def test_resume_extends_a_finished_run_exactly(straight_run, tmp_path):
  """8 steps (checkpoints at 4, 8; windows of 3 cut at 8), then the same run to 12."""
  workdir = str(tmp_path / "resumed")
  train.train_and_evaluate(tiny_config(meta__steps=8), workdir)
  assert _records(workdir)[-1]["kind"] == "eval"
  # A save of step 12 killed before its rename: orbax's temporary directory is left.
  leftover = os.path.join(workdir, "checkpoints", "12.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(workdir, "checkpoints", "8"), leftover)
  train.train_and_evaluate(tiny_config(keep_checkpoints=5), workdir)
  assert not os.path.exists(leftover)
  assert _steps(workdir) == [4, 8, 12]
  a, _ = train.restore_params(straight_run, tiny_config())
  b, _ = train.restore_params(workdir, tiny_config())
  _assert_same_params(a, b)
  records = _records(workdir)
  assert [r["step"] for r in records if r["kind"] == "train"] == [3, 6, 8, 9, 12]
  end_of_first_run = records.pop(2)  # the only extra: the 8-step run's last record
  assert end_of_first_run["step"] == 8
  assert records == _records(straight_run)


def _corrupt_state(workdir, step):
  """Truncates the array files of checkpoint ``step``'s state (a damaged disk or copy)."""
  data = glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"),
                   recursive=True)
  assert data
  for path in data:
    with open(path, "r+b") as f:
      f.truncate(7)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # tensorstore
def test_a_corrupted_latest_checkpoint_is_set_aside_and_the_run_resumes(straight_run, tmp_path,
                                                                        caplog):
  """The latest checkpoint (12) unreadable: moved aside with a warning, and the run opens at
  8, the newest good one (from which a resumed run recomputes the uninterrupted steps)."""
  workdir = str(tmp_path / "damaged")
  shutil.copytree(straight_run, workdir)
  _corrupt_state(workdir, 12)
  config = tiny_config()
  learner = config_lib.make_learner(config)
  optimizer = config_lib.make_optimizer(config, learner)
  estimator = config_lib.make_estimator(config, learner, config_lib.make_tasks(config)[0])
  mngr = train.checkpoint_manager(workdir, config.keep_checkpoints)
  try:
    with caplog.at_level(logging.WARNING):
      state, _, start = loop.open_run(mngr, config, workdir, learner, optimizer, estimator)
    assert start == 8 and mngr.latest_step() == 8
  finally:
    mngr.close()
  assert "checkpoint 12 cannot be restored (" in caplog.text
  assert "resuming from checkpoint 8" in caplog.text
  assert os.listdir(os.path.join(workdir, "checkpoints_unreadable")) == ["12"]
  assert _steps(workdir) == [8]
  _assert_same_params(train.restore_params(straight_run, config, 8)[0], state.params)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # tensorstore
def test_no_restorable_checkpoint_stops_with_the_latest_ones_error(straight_run, tmp_path):
  workdir = str(tmp_path / "damaged")
  shutil.copytree(straight_run, workdir)
  for step in (8, 12):
    _corrupt_state(workdir, step)
  with pytest.raises(train.WorkdirError, match=r"checkpoints/12: cannot restore this checkpoint"):
    train.train_and_evaluate(tiny_config(), workdir)
  assert _steps(workdir) == [8, 12]  # nothing moved
  assert not os.path.exists(os.path.join(workdir, "checkpoints_unreadable"))


def test_same_seed_same_run_other_seed_other_run(straight_run, tmp_path):
  again = str(tmp_path / "again")
  train.train_and_evaluate(tiny_config(), again)
  _assert_same_params(train.restore_params(straight_run, tiny_config())[0],
                      train.restore_params(again, tiny_config())[0])
  assert _records(again) == _records(straight_run)
  other = str(tmp_path / "other")
  train.train_and_evaluate(tiny_config(seed=1), other)
  a = train.restore_params(straight_run, tiny_config())[0]
  b = train.restore_params(other, tiny_config(seed=1))[0]
  for x, y in zip(jax.tree.leaves(a["ff"]), jax.tree.leaves(b["ff"])):
    assert not np.array_equal(x, y)
  assert [r["loss"] for r in _records(other) if r["kind"] == "train"] != [
      r["loss"] for r in _records(straight_run) if r["kind"] == "train"]


# ----------------------------------------------------------------------------- non-finite


def _poison(monkeypatch, steps, calls, corrupt_params=False):
  """Makes meta-steps ``steps`` (1-based) non-finite by feeding them NaN sine functions.

  Each poisoned call is recorded in ``calls`` as (step, state before, state after).
  With ``corrupt_params`` the step instead returns NaN parameters while reporting
  itself finite (what a bug past the guard would do).
  """
  make = meta.make_meta_step

  def make_poisoned(*args, **kwargs):
    meta_step = make(*args, **kwargs)

    def poisoned(state, key, data):
      done = int(state.step) + 1
      if done not in steps:
        return meta_step(state, key, data)
      before = jax.device_get(state)  # a copy: ``state`` is donated
      if corrupt_params:
        state, metrics = meta_step(state, key, data)
        state = state._replace(params=jax.tree.map(lambda p: p * jnp.nan, state.params))
      else:
        nan_data = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), data)
        state, metrics = meta_step(state, key, nan_data)
      calls.append((done, before, jax.device_get(state)))
      return state, metrics

    return poisoned

  monkeypatch.setattr(meta, "make_meta_step", make_poisoned)


def test_nonfinite_meta_steps_are_skipped_counted_and_logged(monkeypatch, caplog, tmp_path):
  calls = []
  _poison(monkeypatch, {5, 6}, calls)
  workdir = str(tmp_path / "run")
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(tiny_config(meta__max_nonfinite=3), workdir)
  assert [c[0] for c in calls] == [5, 6]
  for _, before, after in calls:  # parameters and Adam state untouched
    _assert_same_params(before.params, after.params)
    _assert_same_params(before.opt_state.inner_state, after.opt_state.inner_state)
    assert int(after.step) == int(before.step) + 1
  records = _records(workdir)
  assert [(r["step"], r["in_row"], r["total"]) for r in records if r["kind"] == "nonfinite"] == [
      (5, 1, 1), (6, 2, 2)]
  assert all(r["loss"] == "nan" for r in records if r["kind"] == "nonfinite")
  train_records = [r for r in records if r["kind"] == "train"]
  assert [(r["step"], r["skipped_total"]) for r in train_records] == [
      (3, 0), (6, 2), (9, 2), (12, 2)]
  assert train_records[1]["loss"] != "nan"  # the mean of the window's finite steps
  assert "meta-step 5: non-finite meta-loss or gradient" in caplog.text
  assert "(2 in a row, 2 in all)" in caplog.text
  params, _ = train.restore_params(workdir, tiny_config())
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_too_many_nonfinite_steps_stop_the_run_with_the_last_good_checkpoint(
    monkeypatch, tmp_path):
  calls = []
  _poison(monkeypatch, {9, 10, 11}, calls)
  workdir = str(tmp_path / "run")
  with pytest.raises(train.NonFiniteError) as e:
    train.train_and_evaluate(tiny_config(meta__max_nonfinite=3), workdir)
  assert str(e.value) == (
      "3 meta-steps in a row (up to step 11) had a non-finite loss or gradient "
      "(config.meta.max_nonfinite=3); stopped. The last good checkpoint (step 8) is intact "
      f"in {workdir}.")
  assert _steps(workdir) == [4, 8]
  params, _ = train.restore_params(workdir, tiny_config())
  _assert_same_params(params, calls[0][1].params)  # the state step 9 started from
  assert [r["step"] for r in _records(workdir)][-3:] == [9, 10, 11]


def test_a_nonfinite_state_is_never_saved(monkeypatch, tmp_path):
  _poison(monkeypatch, {6}, [], corrupt_params=True)
  workdir = str(tmp_path / "run")
  with pytest.raises(train.NonFiniteError, match=(
      r"non-finite at step 8; not saved\. The last good checkpoint \(step 4\) is intact")):
    train.train_and_evaluate(tiny_config(), workdir)
  assert _steps(workdir) == [4]


def test_a_diverging_run_exits_with_status_3(tmp_path):
  config_file = tmp_path / "tiny.py"
  config_file.write_text(TINY_CONFIG)
  proc = subprocess.run(
      _train_binary(config_file, tmp_path / "run") + [
          "--config.flp.init_alpha=10.0", "--config.meta.max_nonfinite=2",
          "--config.plastic_layers=1"],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert proc.returncode == 3, proc.stderr[-2000:]
  assert proc.stderr.splitlines()[-1] == (
      "error: 2 meta-steps in a row (up to step 2) had a non-finite loss or gradient "
      "(config.meta.max_nonfinite=2); stopped. No checkpoint had been written yet.")
  assert "meta-step 1: non-finite meta-loss or gradient" in proc.stderr
