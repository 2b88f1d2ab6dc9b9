"""Progress lines: ``name i/total ... (rate /s, ETA h:mm:ss)``."""

from __future__ import annotations

import math
import time

from absl import logging


def hms(seconds: float) -> str:
  """``h:mm:ss`` of ``seconds`` (``?`` when not finite)."""
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
  """Logs ``name i/total extra (rate /s, ETA h:mm:ss)`` lines.

  The rate is measured from `mark` (call it after the first iteration, which
  includes compilation) or else from the first `update`.

  Args:
    name: what is counted (``"meta-step"``, ``"lifetime"``).
    start: the count at the start (a resumed run starts above 0).
    total: the count at the end.
    every_s: log at most once per this many seconds (the last item is always logged).
  """

  def __init__(self, name: str, start: int, total: int, every_s: float = 0.0):
    self.name, self.start, self.total, self.every_s = name, start, total, every_s
    self._t0 = None
    self._i0 = start
    self._last_log = -math.inf

  def mark(self, i: int) -> None:
    """Starts the clock at item ``i``."""
    self._t0, self._i0 = time.perf_counter(), i

  def line(self, i: int, extra: str = "") -> str:
    """The progress line at item ``i``, without logging it."""
    now = time.perf_counter()
    if self._t0 is None:
      self._t0, self._i0 = now, i
    rate = (i - self._i0) / (now - self._t0) if now > self._t0 and i > self._i0 else float("nan")
    eta = (self.total - i) / rate if rate > 0 else float("nan")
    text = " ".join(p for p in (f"{self.name} {i}/{self.total}", extra) if p)
    return f"{text} ({rate:.3g} /s, ETA {hms(eta)})"

  def update(self, i: int, extra: str = "") -> str | None:
    """Logs the line at item ``i`` unless one was logged less than ``every_s`` ago."""
    now = time.perf_counter()
    if now - self._last_log < self.every_s and i < self.total:
      return None
    self._last_log = now
    text = self.line(i, extra)
    logging.info("%s", text)
    return text
