"""Section 7.1: FLP (3) from the feature-reuse (1) networks, feed-forward frozen, and its controls.

`run` meta-trains, in this process (`flpjax.train.train_and_evaluate`), three parts and
writes `section71_path`:

* ``extended``: FLP (3) on continual sine started from the stored feature-reuse (1)
  continual cell's networks (``extend_from``), their feed-forward initialisation frozen;
* ``reuse_equal_steps``: the claim's control, the same feature-reuse networks meta-trained
  on, as feature reuse, for as many more meta-steps as the extension had (their workdir
  copied and resumed with ``meta.steps`` raised), so "does not improve beyond feature
  reuse" is decided at an equal number of meta-steps;
* ``random_init``: the extension's procedure from a frozen *random* initialisation
  (the control that the procedure itself can learn).

All three need the feature-reuse (1) and FLP (3) continual cells first (the FLP cell gives
the plasticity rate). A part already in the stored record with the same config string and
overrides is kept, so a job stopped between parts resumes at the next one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

from flpjax.reporting.metrics import device_name, read_json, write_json
from flpjax.reproduction import cells

# The record's parts and the field holding each one's config string.
PARTS = (("extended", "config"), ("reuse_equal_steps", "equal_steps_config"),
         ("random_init", "control_config"))


def section71_path(results_dir: str, scale: str) -> str:
  """``results/section71.json`` (reduced scale, as before) or ``section71_<scale>.json``."""
  return os.path.join(results_dir, "section71.json" if scale == "reduced"
                      else f"section71_{scale}.json")


def done(results_dir: str, scale: str) -> dict | None:
  """The stored record of the scale if it is complete (every part), else None."""
  record = read_json(section71_path(results_dir, scale))
  complete = record and record.get("scale") == scale and all(k in record for k, _ in PARTS)
  return record if complete else None


def _resumed_copy(source: str, workdir: str) -> str:
  """``workdir`` as a copy of the finished run in ``source`` (once: a copy that already
  holds a checkpoint is resumed as it is)."""
  if not cells.trained(workdir):
    if os.path.isdir(workdir):
      shutil.rmtree(workdir)
    shutil.copytree(source, workdir)
  return workdir


def run(scale: str, root: str, results_dir: str,
        overrides: Mapping[str, Any] | None = None) -> dict:
  """Section 7.1 from the stored feature-reuse continual cell, with its equal-steps
  feature-reuse control and its frozen-random-initialisation control; writes
  `section71_path` and returns its record.

  Raises:
    cells.ReproductionError: the feature-reuse (1) or FLP (3) continual cell is missing.
  """
  from flpjax import train  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import aggregate  # pylint: disable=g-import-not-at-top
  source = cells.final_workdir(root, "1", scale, "reuse1", "continual")
  flp3 = read_json(cells.results_path(results_dir, "1", "flp3"), {}).get(scale, {}).get(
      "continual")
  reuse = read_json(cells.results_path(results_dir, "1", "reuse1"), {}).get(scale, {}).get(
      "continual")
  if not (cells.trained(source) and flp3 and reuse):
    raise cells.ReproductionError(
        f"run the feature reuse (1) and FLP (3) continual cells at {scale} scale first")
  overrides = dict(overrides or {})
  previous = read_json(section71_path(results_dir, scale)) or {}
  if (previous.get("scale") != scale
      or previous.get("overrides", {}) != json.loads(json.dumps(overrides))):
    previous = {}
  runs = len(reuse["per_seed"])
  rate = flp3.get("chosen_plasticity_lr") or None
  strings = {"extended": cells.config_string("1", "section71", "continual", scale, runs=runs,
                                             plasticity_lr=rate,
                                             extend_from=cells.path_arg(source)),
             "random_init": cells.config_string("1", "section71", "continual", scale,
                                                runs=runs, plasticity_lr=rate)}
  workdirs = {"extended": cells.cell_workdir(root, "1", scale, "section71"),
              "random_init": cells.cell_workdir(root, "1", scale, "section71_random"),
              "reuse_equal_steps": cells.cell_workdir(root, "1", scale,
                                                      "section71_reuse_equal_steps")}
  record = {"config": strings["extended"], "control_config": strings["random_init"],
            "scale": scale,
            "reduced": (cells.reduced_changes("1", "section71", "continual", scale)
                        if scale != "paper" else {}),
            "seeds": runs, "device": device_name(), "feature_reuse": reuse, "flp3": flp3,
            "wall_s": previous.get("wall_s", 0.0)}
  if overrides:
    record["overrides"] = overrides
  config = cells.load_config(strings["extended"], overrides)
  levels = aggregate.no_learning(config)

  def part(key: str, string: str, load: tuple[str, Mapping[str, Any]]) -> dict:
    """Trains part ``key`` (config string ``string``, loaded as ``load``) unless kept."""
    field = dict(PARTS)[key]
    if key in previous and previous.get(field) == string:
      record[key] = previous[key]
    else:
      t0 = time.time()
      result = train.train_and_evaluate(cells.load_config(*load), workdirs[key])
      record[key] = cells.summarize_result(result, levels)
      record["wall_s"] = round(record["wall_s"] + time.time() - t0, 1)
    record[field] = string
    write_json(section71_path(results_dir, scale), record)  # each part kept as it ends
    return record[key]

  extended = part("extended", strings["extended"], (strings["extended"], overrides))
  record.update(meta_steps=int(extended["meta_steps"]), plasticity_lr=config.meta.lr.alpha)
  # The claim's control: the feature-reuse networks meta-trained on for as many meta-steps.
  steps = int(reuse["meta_steps"]) + record["meta_steps"]
  _resumed_copy(source, workdirs["reuse_equal_steps"])
  part("reuse_equal_steps", f"{reuse['config']} --config.meta.steps={steps}",
       (reuse["config"], dict(overrides, **{"meta.steps": steps})))
  part("random_init", strings["random_init"], (strings["random_init"], overrides))
  return record
