"""Metrics files, progress lines and learning-curve plots."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from flpjax import summary
from flpjax.experiment import progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _steps_kinds(workdir):
  return [(r["step"], r["kind"]) for r in summary.read_metrics(workdir)]


def _tensorboard_scalars(logdir):
  """{(tag, step): value} of the event files under ``logdir`` (TFRecord framing)."""
  out = {}
  for name in sorted(os.listdir(logdir)):
    data = (logdir / name).read_bytes()
    while data:
      (length,) = struct.unpack("<Q", data[:8])
      event = event_pb2.Event.FromString(data[12:12 + length])
      data = data[12 + length + 4:]
      for v in event.summary.value:
        out[(v.tag, event.step)] = v.simple_value
  return out


def test_records_are_json_lines_and_tensorboard_scalars(tmp_path):
  w = summary.MetricWriter(str(tmp_path))
  w.write(10, "train", {"loss": np.float32(0.5), "skipped_total": np.array(3, np.int32),
                        "grad_norm": float("nan")})
  w.write(12, "eval", {"mse": 2.25, "lifetimes": 50})
  w.close()
  records = summary.read_metrics(str(tmp_path))
  assert records == [
      {"step": 10, "kind": "train", "loss": 0.5, "skipped_total": 3, "grad_norm": "nan"},
      {"step": 12, "kind": "eval", "mse": 2.25, "lifetimes": 50}]
  assert _tensorboard_scalars(tmp_path / "tensorboard") == {
      ("train/loss", 10): 0.5, ("train/skipped_total", 10): 3.0, ("eval/mse", 12): 2.25,
      ("eval/lifetimes", 12): 50.0}


def test_resuming_keeps_what_preceded_the_checkpoint(tmp_path):
  w = summary.MetricWriter(str(tmp_path))
  w.write(0, "eval", {"mse": 5.0})
  for s in (5, 10):
    w.write(s, "train", {"loss": 1.0 / s})
  w.write(10, "nonfinite", {"loss": "nan"})
  w.write(10, "eval", {"mse": 1.0})  # written after the checkpoint of step 10
  w.write(15, "train", {"loss": 0.1})
  w.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 16, "kind": "tr')  # a line cut short by SIGKILL
  assert _steps_kinds(str(tmp_path))[-1] == (15, "train")
  summary.MetricWriter(str(tmp_path), resume_step=10, tensorboard=False).close()
  assert _steps_kinds(str(tmp_path)) == [(0, "eval"), (5, "train"), (10, "train"),
                                         (10, "nonfinite")]
  summary.MetricWriter(str(tmp_path), resume_step=None, tensorboard=False).close()
  assert _steps_kinds(str(tmp_path)) == []


def test_unreadable_metrics_name_the_file(tmp_path):
  with pytest.raises(summary.WorkdirError, match="metrics.jsonl: cannot read it"):
    summary.read_metrics(str(tmp_path))
  (tmp_path / "metrics.jsonl").write_text("not json\n")
  with pytest.raises(summary.WorkdirError, match="metrics.jsonl: not a metrics file"):
    summary.read_metrics(str(tmp_path))


def test_progress_rate_and_eta(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
  p = summary.Progress("meta-step", 0, 100, every_s=5.0)
  p.mark(10)
  now[0] = 110.0
  assert p.update(30, "loss 0.5") == "meta-step 30/100 loss 0.5 (2 /s, ETA 0:00:35)"
  now[0] = 112.0
  assert p.update(34) is None  # within every_s of the last line
  now[0] = 130.0
  assert p.update(100) == "meta-step 100/100 (3 /s, ETA 0:00:00)"
  fresh = summary.Progress("lifetime", 0, 8)
  assert fresh.update(4) == "lifetime 4/8 (nan /s, ETA ?)"


def test_smoothing():
  assert summary.smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
  assert summary.smooth([1.0, 3.0], 0.0) == [1.0, 3.0]
  out = summary.smooth([float("nan"), 1.0, float("nan"), 3.0], 0.5)
  assert np.isnan(out[0]) and out[1:3] == [1.0, 1.0] and 1.0 < out[3] < 3.0


def _fake_run(workdir, scale, evals=True):
  workdir.mkdir()
  w = summary.MetricWriter(str(workdir), tensorboard=False)
  for s in range(10, 210, 10):
    w.write(s, "train", {"loss": scale * 100.0 / s, "grad_norm": 1.0, "skipped_total": 0})
  w.write(55, "nonfinite", {"loss": "nan", "in_row": 1, "total": 1})
  if evals:
    w.write(0, "eval", {"mse": 5.0, "mse_stderr": 0.3, "lifetimes": 50})
    w.write(200, "eval", {"mse": scale, "mse_stderr": 0.1, "lifetimes": 50})
  w.close()


def test_plot_curves_of_two_runs(tmp_path):
  _fake_run(tmp_path / "a", 1.0)
  _fake_run(tmp_path / "b", 2.0, evals=False)
  out = tmp_path / "curves.png"
  summary.plot_curves([str(tmp_path / "a"), str(tmp_path / "b")], str(out))
  data = out.read_bytes()
  assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
  with pytest.raises(summary.WorkdirError, match=r"--metric=lr: no train record .* "
                     r"\(available: grad_norm, loss, skipped_total\)"):
    summary.plot_curves([str(tmp_path / "a")], str(out), metric="lr")


def test_plot_binary_writes_a_png(tmp_path):
  _fake_run(tmp_path / "a", 1.0)
  out = tmp_path / "c.png"
  proc = subprocess.run([sys.executable, "experiments/plot.py", f"--workdirs={tmp_path / 'a'}",
                         f"--output={out}", "--metric=grad_norm"],
                        cwd=REPO, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert out.read_bytes().startswith(PNG_SIGNATURE)
