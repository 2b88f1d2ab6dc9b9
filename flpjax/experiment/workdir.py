"""A run's directory: creating, checking and locking it, its config, and what may change on resume."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Any

import ml_collections

from flpjax.config import build, schema
from flpjax.config.checks import ConfigError
from flpjax.reporting.errors import WorkdirError

#: Config fields that may change when a run is resumed: they decide how long
#: it runs, what it records and how it is evaluated, not the meta-parameters
#: its steps compute (``meta.remat`` and ``meta.chunk`` trade memory for time
#: and compute the same maths).
RESUMABLE_FIELDS = ("meta.steps", "meta.max_nonfinite", "meta.remat", "meta.chunk",
                    "log_every", "checkpoint_every", "keep_checkpoints", "eval",
                    "fewshot.data_dir", "oml.eval_rule", "oml.eval_lrs", "oml.lr_searches")

def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that it is writable; returns its absolute path."""
  if not workdir:
    raise WorkdirError("--workdir is empty: expected a directory to write checkpoints and metrics")
  workdir = os.path.abspath(os.path.expanduser(workdir))
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: cannot create it ({e.strerror})") from None
  if not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir}: exists and is not a directory")
  probe = os.path.join(workdir, f".write_test.{os.getpid()}")
  try:
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: not writable ({e.strerror})") from None
  return workdir


#: The lock file of a workdir in use: ``<workdir>/.lock``, holding the owner's pid.
LOCK_FILE = ".lock"


class WorkdirLock:
  """An exclusive lock on a workdir, held by this process until `release` (or its end).

  It is an ``flock`` on ``<workdir>/.lock``: the kernel releases it when the
  process ends, however it ends (a SIGKILLed run leaves a file that locks
  nothing, and the next run takes it over). The file records the holder's pid,
  host, command and start time, which a refused process names. Not reentrant:
  one writer per workdir, also within a process.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f"--workdir={workdir}: cannot create its lock file {LOCK_FILE} "
                         f"({e.strerror})") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = _read_holder(fd)
      os.close(fd)
      raise WorkdirError(
          f"--workdir={workdir} is in use by {holder}; wait for it to end (or stop it), or "
          "use another --workdir") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv)[:300],
            "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    self._fd = fd

  @property
  def held(self) -> bool:
    return self._fd is not None

  def release(self) -> None:
    """Releases the lock (idempotent); the file stays, empty."""
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      os.ftruncate(fd, 0)
    finally:
      os.close(fd)  # closing the last descriptor releases the flock

  def __enter__(self) -> "WorkdirLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _read_holder(fd: int) -> str:
  """``process <pid> (<command>) on <host> since <time>``, from the lock file."""
  try:
    info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
  except (OSError, ValueError):
    info = {}
  if not isinstance(info, dict) or "pid" not in info:
    return "another process (its lock file names none)"
  where = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
  return (f"process {info['pid']}{where} ({info.get('command', '?')}, since "
          f"{info.get('since', '?')})")


def lock_workdir(workdir: str) -> WorkdirLock:
  """Takes the workdir's lock (`WorkdirLock`) at once, or stops.

  Raises:
    WorkdirError: another process holds it; the message names that process.
  """
  return WorkdirLock(workdir)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config of the run in ``workdir`` (its ``config.json``), validated."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(schema.with_defaults(json.load(f)))
  except OSError as e:
    raise WorkdirError(f"{path}: cannot read it ({e.strerror}); is --workdir a training "
                       "run's directory?") from None
  except (json.JSONDecodeError, TypeError, ValueError) as e:
    raise WorkdirError(f"{path}: not a config ({type(e).__name__}: {e})") from None
  try:
    build.validate(config)
  except (ConfigError, KeyError, AttributeError) as e:
    raise WorkdirError(f"{path}: not a valid config ({str(e).strip()})") from None
  return config


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def changed_fields(saved: dict, config) -> list[str]:
  """``'field (saved -> now)'`` for every field outside `RESUMABLE_FIELDS` that differs."""
  before = _flat(schema.with_defaults(saved))
  now = _flat(json.loads(config.to_json_best_effort()))
  missing = "<absent>"
  out = []
  for path in sorted(set(before) | set(now)):
    if any(path == f or path.startswith(f + ".") for f in RESUMABLE_FIELDS):
      continue
    a, b = before.get(path, missing), now.get(path, missing)
    if a != b:
      out.append(f"config.{path} ({a!r} -> {b!r})")
  return out
