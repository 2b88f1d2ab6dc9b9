"""What a run shows: metrics files, progress lines, one-line errors, learning curves.

* `MetricWriter` appends one JSON line per record to ``<workdir>/metrics.jsonl``
  and the same scalars to TensorBoard event files; `read_metrics` reads them
  back. Records are ``{"step": s, "kind": k, ...}`` with kind ``"train"``
  (meta-loss and meta-gradient norm averaged since the previous record, step
  time, skipped steps so far), ``"nonfinite"`` (a skipped meta-step) or
  ``"eval"`` (meta-test results).
* `Progress` logs ``name i/total ... (rate /s, ETA h:mm:ss)`` lines.
* `parse_flags_or_exit` and `exit_with_error` turn bad command lines and bad
  inputs into one ``error: ...`` line on stderr and exit status 2.
* `plot_curves` draws the learning curves of one or more workdirs to a PNG.
* `write_json` writes a results file atomically; `device_name` names the
  machine for results and benchmarks.
"""

from __future__ import annotations

import json
import logging as logging_std
import math
import os
import platform
import sys
import time
from typing import Any, Mapping, NoReturn, Sequence

from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

METRICS_FILE = "metrics.jsonl"


class WorkdirError(ValueError):
  """A workdir cannot be created, written or read, or does not hold what is needed."""


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


# ----------------------------------------------------------------------------- console


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` (JSON-able, or a JSON string) to ``path`` atomically.

  Creates the parent directory; a killed process leaves the old file.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(value if isinstance(value, str) else json.dumps(value, indent=1))
  os.replace(tmp, path)


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


class _DropLibraryChatter(logging_std.Filter):
  """Keeps orbax's INFO lines and its read-only notices out of the console."""

  def filter(self, record):
    if "orbax" not in record.pathname:
      return True
    return record.levelno >= logging_std.WARNING and "read only" not in record.getMessage()


def _drop_closed_loop_callbacks(unraisable, default=sys.unraisablehook) -> None:
  """Drops the "Event loop is closed" errors of tensorstore reads still in flight.

  When one array of a checkpoint fails to restore, orbax closes its event
  loop while tensorstore still reads the others; their completions then call
  into the closed loop and Python prints each error (an unraisable exception)
  around the binary's one-line message.
  """
  if (isinstance(unraisable.exc_value, RuntimeError) and unraisable.object is None
      and str(unraisable.exc_value) == "Event loop is closed"):
    return
  default(unraisable)


def quiet_libraries() -> None:
  """Keeps library noise out of a binary's console (idempotent).

  Installs `_DropLibraryChatter` on absl's handler and
  `_drop_closed_loop_callbacks` as `sys.unraisablehook`.
  """
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropLibraryChatter) for f in handler.filters):
    handler.addFilter(_DropLibraryChatter())
  sys.unraisablehook = _drop_closed_loop_callbacks


def _hms(seconds: float) -> str:
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
    return f"{text} ({rate:.3g} /s, ETA {_hms(eta)})"

  def update(self, i: int, extra: str = "") -> str | None:
    """Logs the line at item ``i`` unless one was logged less than ``every_s`` ago."""
    now = time.perf_counter()
    if now - self._last_log < self.every_s and i < self.total:
      return None
    self._last_log = now
    text = self.line(i, extra)
    logging.info("%s", text)
    return text


def _one_line(text: str) -> str:
  lines = [l.strip() for l in str(text).replace("\\n", "\n").splitlines() if l.strip()]
  if len(lines) <= 1:
    return lines[0] if lines else ""
  return f"{lines[0]} ... {lines[-1]}"


def exit_with_error(message: Any, code: int = 2) -> NoReturn:
  """Writes ``error: <message>`` (one line) to stderr and exits with ``code``."""
  sys.stderr.write(f"error: {_one_line(str(message))}\n")  # one write: no interleaving
  sys.stderr.flush()
  sys.exit(code)


def _failing_flag(exc: BaseException, argv: Sequence[str]) -> str:
  """``flag --name=value`` of the flag (or config field) whose parsing raised ``exc``."""
  name = None
  tb = exc.__traceback__
  while tb is not None:  # the innermost flag (or config override) being parsed
    local = tb.tb_frame.f_locals
    if isinstance(local.get("self"), flags.Flag):
      name = local["self"].name
      if isinstance(local.get("field_path"), str):
        name = f"{name}.{local['field_path']}"
    tb = tb.tb_next
  if name is None:
    return "flags"
  given = [a for a in argv if a.startswith(f"--{name}=")]
  return given[-1].replace("--", "flag --", 1) if given else f"flag --{name}"


def parse_flags_or_exit(argv: Sequence[str]) -> list[str]:
  """An absl ``flags_parser``: bad flags give one ``error:`` line and exit status 2.

  Covers unknown flags (typos), missing required flags, values of the wrong
  type, unknown config fields (``--config.meta.stpes``), config files that
  are missing or fail to load, and stray positional arguments.
  """
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    exit_with_error(e)
  except Exception as e:  # pylint: disable=broad-except  # raised by a config flag's parser
    where = _failing_flag(e, argv)
    if isinstance(e, (KeyError, AttributeError)):
      hint = [l for l in str(e).replace("\\n", "\n").splitlines() if "Did you mean" in l]
      exit_with_error(f"{where}: no such config field"
                      + (f" ({hint[0].strip().rstrip(chr(39))})" if hint else ""))
    exit_with_error(f"{where}: {type(e).__name__}: {_one_line(e)}")
  for name in list(flags.FLAGS):
    flag = flags.FLAGS[name]
    if not flag.present:
      continue
    try:
      filename = config_flags.get_config_filename(flag)
    except TypeError:  # not a config flag
      continue
    try:
      if flag.value is not None:
        flag.value.keys()  # a config file that failed to load raises here
    except OSError as e:
      exit_with_error(f"flag --{name}={filename}: cannot load the config file "
                      f"({_one_line(e.__cause__ or e)})")
  if len(rest) > 1:
    exit_with_error(f"unexpected arguments {rest[1:]}: every option is a --flag=value")
  return rest


# ----------------------------------------------------------------------------- curves


def smooth(values: Sequence[float], weight: float) -> list[float]:
  """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped."""
  out, acc, norm = [], 0.0, 0.0
  for v in values:
    if math.isfinite(v):
      acc, norm = weight * acc + (1 - weight) * v, weight * norm + (1 - weight)
    out.append(acc / norm if norm > 0 else float("nan"))
  return out


def _float(v: Any) -> float:
  try:
    return float(v)
  except (TypeError, ValueError):
    return float("nan")


def plot_curves(workdirs: Sequence[str], output: str, metric: str = "loss",
                smoothing: float = 0.6) -> None:
  """Draws the learning curves of ``workdirs`` to the PNG file ``output``.

  Left: the train records' ``metric`` (the meta-loss by default) against the
  meta-step, raw (faint) and smoothed, on a log scale when it spans more than
  a decade, with skipped (non-finite) meta-steps marked. Right: the evaluation
  results (MSE or error, with standard errors) against the meta-step.

  Args:
    workdirs: run directories holding ``metrics.jsonl``.
    output: the PNG file to write.
    metric: a field of the train records.
    smoothing: weight of the moving average in [0, 1) (0: no smoothing).

  Raises:
    WorkdirError: a workdir has no metrics, or none has ``metric``; ``output``
      cannot be written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  if not 0 <= smoothing < 1:
    raise ValueError(f"smoothing={smoothing}: expected a number in [0, 1)")
  runs = [(os.path.basename(os.path.normpath(w)) or w, read_metrics(w)) for w in workdirs]
  if not any(r.get(metric) is not None for _, records in runs for r in records
             if r["kind"] == "train"):
    fields = sorted({k for _, records in runs for r in records if r["kind"] == "train"
                     for k in r} - {"step", "kind"})
    raise WorkdirError(f"--metric={metric}: no train record of {', '.join(workdirs)} has it"
                       f" (available: {', '.join(fields) or 'none yet'})")

  fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
  positive, spans = True, []
  for i, (label, records) in enumerate(runs):
    color = f"C{i % 10}"
    train = [(r["step"], _float(r.get(metric))) for r in records if r["kind"] == "train"]
    if train:
      steps, values = zip(*train)
      ax_train.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
      ax_train.plot(steps, smooth(values, smoothing), color=color, label=label)
      finite = [v for v in values if math.isfinite(v)]
      positive &= all(v > 0 for v in finite)
      spans += finite
    skipped = [r["step"] for r in records if r["kind"] == "nonfinite"]
    if skipped:
      ax_train.plot(skipped, [0] * len(skipped), "x", color=color,
                    transform=ax_train.get_xaxis_transform(), clip_on=False,
                    label=f"{label}: skipped steps")
    evals = [r for r in records if r["kind"] == "eval"]
    if evals:
      name = "mse" if "mse" in evals[0] else "error"
      ax_eval.errorbar([r["step"] for r in evals], [_float(r.get(name)) for r in evals],
                       yerr=[_float(r.get(f"{name}_stderr")) for r in evals], color=color,
                       marker="o", capsize=3, label=f"{label} ({name})")
  if positive and spans and max(spans) > 10 * min(spans):
    ax_train.set_yscale("log")
  ax_train.set(xlabel="meta-step", ylabel=metric, title=f"train: {metric}"
               + (f" (smoothed {smoothing})" if smoothing else ""))
  ax_train.legend(fontsize="small")
  ax_eval.set(xlabel="meta-step", ylabel="meta-test", title="evaluation (mean +- s.e.)")
  if ax_eval.has_data():
    ax_eval.legend(fontsize="small")
  else:
    ax_eval.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                 transform=ax_eval.transAxes)
  fig.tight_layout()
  try:
    fig.savefig(output, dpi=120)
  except OSError as e:
    raise WorkdirError(f"--output={output}: cannot write it ({e.strerror})") from None
  finally:
    plt.close(fig)
