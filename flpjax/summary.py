"""Metrics to disk (JSON lines + TensorBoard) and progress lines with rate and ETA."""

from __future__ import annotations

import json
import logging as logging_std
import math
import os
import time
from typing import Any, Mapping

from absl import logging


def _plain(value: Any) -> Any:
  try:
    v = float(value)
  except (TypeError, ValueError):
    return value
  return v if math.isfinite(v) else str(v)


class MetricWriter:
  """Appends ``{"step": s, "kind": k, ...}`` lines to ``<workdir>/metrics.jsonl``.

  Scalars also go to TensorBoard event files under ``<workdir>/tensorboard``
  (tensorboardX; no TensorFlow needed). On resume, `truncate_after` drops the
  lines written after the restored checkpoint so that the file is what an
  uninterrupted run writes.
  """

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def truncate_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = [l for l in f if l.strip() and json.loads(l)["step"] <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(lines)
    os.replace(tmp, self.path)

  def write(self, step: int, kind: str, values: Mapping[str, Any]) -> None:
    record = {"step": int(step), "kind": kind}
    record.update({k: _plain(v) for k, v in values.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in values.items():
        v = _plain(v)
        if isinstance(v, float):
          self._tb.add_scalar(f"{kind}/{k}", v, int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class _DropLibraryChatter(logging_std.Filter):
  """Keeps orbax's per-save INFO lines out of the console (warnings still pass)."""

  def filter(self, record):
    return record.levelno >= logging_std.WARNING or "orbax" not in record.pathname


def quiet_libraries() -> None:
  """Installs `_DropLibraryChatter` on absl's handler (idempotent)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropLibraryChatter) for f in handler.filters):
    handler.addFilter(_DropLibraryChatter())


def read_metrics(workdir: str) -> list[dict]:
  """All records of ``<workdir>/metrics.jsonl``."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
  """Rate and ETA of a loop of ``total`` items, measured since the first `update`."""

  def __init__(self, name: str, start: int, total: int):
    self.name, self.start, self.total = name, start, total
    self._t0 = None
    self._i0 = start

  def mark(self, i: int) -> None:
    """Starts the clock at item ``i`` (call after the first, compiling, iteration)."""
    self._t0, self._i0 = time.perf_counter(), i

  def update(self, i: int, extra: str = "") -> str:
    now = time.perf_counter()
    if self._t0 is None:  # first call: after compilation
      self._t0, self._i0 = now, i
      rate = float("nan")
    else:
      rate = (i - self._i0) / max(now - self._t0, 1e-9)
    eta = (self.total - i) / rate if rate > 0 else float("nan")
    line = (f"{self.name} {i}/{self.total} {extra} "
            f"({rate:.3g} /s, ETA {_hms(eta)})").replace("  ", " ")
    logging.info(line)
    return line
