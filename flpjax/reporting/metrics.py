"""Metrics files: what a run records, and the results files it writes.

`MetricWriter` appends one JSON line per record to ``<workdir>/metrics.jsonl``
and the same scalars to TensorBoard event files; `read_metrics` reads them
back. Records are ``{"step": s, "kind": k, ...}`` with kind ``"train"``
(meta-loss and meta-gradient norm averaged since the previous record, step
time, skipped steps so far), ``"nonfinite"`` (a skipped meta-step) or
``"eval"`` (meta-test results). `write_json` writes a results file atomically
and `read_json` reads one back (a default when it is missing or unreadable);
`device_name` names the machine for results and benchmarks.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np

from flpjax.reporting.errors import WorkdirError

METRICS_FILE = "metrics.jsonl"


def _plain(value: Any) -> Any:
  """A JSON value: integers stay integers, non-finite floats become strings ("nan")."""
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  kind = np.asarray(value).dtype.kind if np.ndim(value) == 0 else None
  if kind == "b":
    return bool(value)
  if kind in ("i", "u"):
    return int(value)
  if kind == "f":
    v = float(value)
    return v if math.isfinite(v) else str(v)
  return value


def _parse_lines(text: str) -> list[dict]:
  """Records of a metrics file; a last line cut short by a killed process is dropped."""
  lines = text.split("\n")
  if lines and lines[-1]:  # no final newline: the write was interrupted
    lines = lines[:-1]
  return [json.loads(l) for l in lines if l.strip()]


def read_metrics(workdir: str) -> list[dict]:
  """All records of ``<workdir>/metrics.jsonl``, in the order they were written.

  Raises:
    WorkdirError: the file is missing or unreadable.
  """
  path = os.path.join(workdir, METRICS_FILE)
  try:
    with open(path) as f:
      return _parse_lines(f.read())
  except OSError as e:
    raise WorkdirError(f"{path}: cannot read it ({e.strerror})") from None
  except json.JSONDecodeError as e:
    raise WorkdirError(f"{path}: not a metrics file (line {e.lineno}: {e.msg})") from None


class MetricWriter:
  """Appends records to ``<workdir>/metrics.jsonl`` and to TensorBoard.

  A fresh run (``resume_step=None``) starts both from scratch. A run resumed
  from the checkpoint of step ``resume_step`` keeps what had been written
  when that checkpoint was saved (records of earlier steps, and the train and
  non-finite records of that step, which precede its checkpoint) and drops
  the rest, so the file ends up as an uninterrupted run writes it.
  TensorBoard drops the later events itself (``purge_step``).

  Args:
    workdir: the run's directory.
    resume_step: the step of the restored checkpoint, or None.
    tensorboard: also write TensorBoard events (tensorboardX, no TensorFlow).
  """

  def __init__(self, workdir: str, resume_step: int | None = None, tensorboard: bool = True):
    self.path = os.path.join(workdir, METRICS_FILE)
    kept = []
    if resume_step is not None and os.path.exists(self.path):
      kept = [r for r in read_metrics(workdir)
              if r["step"] < resume_step or (r["step"] == resume_step and r["kind"] != "eval")]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, self.path)
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      purge = 0 if resume_step is None else resume_step + 1
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=purge,
                               flush_secs=30)

  def write(self, step: int, kind: str, values: Mapping[str, Any]) -> None:
    """Appends ``{"step": step, "kind": kind, **values}`` (non-finite floats as strings)."""
    record = {"step": int(step), "kind": kind}
    record.update({k: _plain(v) for k, v in values.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in record.items():
        if k not in ("step", "kind") and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(f"{kind}/{k}", v, int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


# ----------------------------------------------------------------------------- results files


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` (JSON-able, or a JSON string) to ``path`` atomically.

  Creates the parent directory; a killed process leaves the old file.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(value if isinstance(value, str) else json.dumps(value, indent=1))
  os.replace(tmp, path)


def read_json(path: str, default: Any = None) -> Any:
  """The JSON value in ``path``, or ``default`` when the file is missing or not JSON.

  For results files that may not exist yet (a cell not run) or were cut short.
  """
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return default


def device_name() -> str:
  """The accelerator's name, or the CPU's model and core count on a CPU."""
  import jax  # pylint: disable=g-import-not-at-top
  d = jax.devices()[0]
  if d.platform != "cpu":
    return d.device_kind
  try:
    with open("/proc/cpuinfo") as f:
      model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    model = platform.processor() or "cpu"
  return f"{model} ({os.cpu_count()} cores)"
