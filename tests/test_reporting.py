"""flpjax/reporting: metrics files, results files and progress lines."""

import os
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from flpjax.reporting import errors, metrics, progress


def _steps_kinds(workdir):
  return [(r["step"], r["kind"]) for r in metrics.read_metrics(workdir)]


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
  w = metrics.MetricWriter(str(tmp_path))
  w.write(10, "train", {"loss": np.float32(0.5), "skipped_total": np.array(3, np.int32),
                        "grad_norm": float("nan")})
  w.write(12, "eval", {"mse": 2.25, "lifetimes": 50})
  w.close()
  records = metrics.read_metrics(str(tmp_path))
  assert records == [
      {"step": 10, "kind": "train", "loss": 0.5, "skipped_total": 3, "grad_norm": "nan"},
      {"step": 12, "kind": "eval", "mse": 2.25, "lifetimes": 50}]
  assert _tensorboard_scalars(tmp_path / "tensorboard") == {
      ("train/loss", 10): 0.5, ("train/skipped_total", 10): 3.0, ("eval/mse", 12): 2.25,
      ("eval/lifetimes", 12): 50.0}


def test_resuming_keeps_what_preceded_the_checkpoint(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
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
  metrics.MetricWriter(str(tmp_path), resume_step=10, tensorboard=False).close()
  assert _steps_kinds(str(tmp_path)) == [(0, "eval"), (5, "train"), (10, "train"),
                                         (10, "nonfinite")]
  metrics.MetricWriter(str(tmp_path), resume_step=None, tensorboard=False).close()
  assert _steps_kinds(str(tmp_path)) == []


def test_unreadable_metrics_name_the_file(tmp_path):
  with pytest.raises(errors.WorkdirError, match="metrics.jsonl: cannot read it"):
    metrics.read_metrics(str(tmp_path))
  (tmp_path / "metrics.jsonl").write_text("not json\n")
  with pytest.raises(errors.WorkdirError, match="metrics.jsonl: not a metrics file"):
    metrics.read_metrics(str(tmp_path))


def test_progress_rate_and_eta(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
  p = progress.Progress("meta-step", 0, 100, every_s=5.0)
  p.mark(10)
  now[0] = 110.0
  assert p.update(30, "loss 0.5") == "meta-step 30/100 loss 0.5 (2 /s, ETA 0:00:35)"
  now[0] = 112.0
  assert p.update(34) is None  # within every_s of the last line
  now[0] = 130.0
  assert p.update(100) == "meta-step 100/100 (3 /s, ETA 0:00:00)"
  fresh = progress.Progress("lifetime", 0, 8)
  assert fresh.update(4) == "lifetime 4/8 (nan /s, ETA ?)"


def test_json_files_are_written_atomically_and_read_tolerantly(tmp_path):
  path = str(tmp_path / "sub" / "out.json")
  metrics.write_json(path, {"a": [1, 2]})
  assert metrics.read_json(path) == {"a": [1, 2]}
  assert metrics.read_json(str(tmp_path / "missing.json"), {}) == {}
  (tmp_path / "bad.json").write_text("{not json")
  assert metrics.read_json(str(tmp_path / "bad.json")) is None


def test_hms():
  assert progress.hms(3725.9) == "1:02:05" and progress.hms(float("nan")) == "?"
