"""A run's directory: creating and checking it, its config, and what may change on resume."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from flpjax import config as config_lib
from flpjax.experiment.errors import WorkdirError

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
  probe = os.path.join(workdir, ".write_test")
  try:
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: not writable ({e.strerror})") from None
  return workdir


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config of the run in ``workdir`` (its ``config.json``), validated."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(config_lib.with_defaults(json.load(f)))
  except OSError as e:
    raise WorkdirError(f"{path}: cannot read it ({e.strerror}); is --workdir a training "
                       "run's directory?") from None
  except (json.JSONDecodeError, TypeError, ValueError) as e:
    raise WorkdirError(f"{path}: not a config ({type(e).__name__}: {e})") from None
  try:
    config_lib.validate(config)
  except (config_lib.ConfigError, KeyError, AttributeError) as e:
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
  before = _flat(config_lib.with_defaults(saved))
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
