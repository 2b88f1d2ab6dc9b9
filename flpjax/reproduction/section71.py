"""Section 7.1: FLP (3) from the feature-reuse (1) networks, feed-forward frozen, and its control.

`run` meta-trains, in this process (`flpjax.train.train_and_evaluate`), FLP (3)
on continual sine started from the stored feature-reuse (1) continual cell's
networks (``extend_from``), and the same procedure from a frozen *random*
initialisation (the control: the procedure itself can learn); it writes
`section71_path`. Both need the cell's feature-reuse (1) and FLP (3) continual
cells first (the FLP cell gives the plasticity rate).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from flpjax.reporting.metrics import device_name, read_json, write_json
from flpjax.reproduction import cells


def section71_path(results_dir: str, scale: str) -> str:
  """``results/section71.json`` (reduced scale, as before) or ``section71_<scale>.json``."""
  return os.path.join(results_dir, "section71.json" if scale == "reduced"
                      else f"section71_{scale}.json")


def done(results_dir: str, scale: str) -> dict | None:
  """The stored record of the scale if it is complete (with its control), else None."""
  record = read_json(section71_path(results_dir, scale))
  return record if record and record.get("scale") == scale and "random_init" in record else None


def run(scale: str, root: str, results_dir: str,
        overrides: Mapping[str, Any] | None = None) -> dict:
  """Section 7.1 from the stored feature-reuse continual cell, and its control from a
  frozen random initialisation; writes `section71_path` and returns its record.

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
  if not (os.path.isdir(source) and flp3 and reuse):
    raise cells.ReproductionError(
        f"run the feature reuse (1) and FLP (3) continual cells at {scale} scale first")
  string = cells.config_string("1", "section71", "continual", scale, runs=len(reuse["per_seed"]),
                               plasticity_lr=flp3.get("chosen_plasticity_lr") or None,
                               extend_from=cells.path_arg(source))
  config = cells.load_config(string, overrides)
  t0 = time.time()
  result = train.train_and_evaluate(config, cells.cell_workdir(root, "1", scale, "section71"))
  # The control: the same procedure from a frozen *random* initialisation (no extend_from).
  control = cells.config_string("1", "section71", "continual", scale,
                                runs=len(reuse["per_seed"]),
                                plasticity_lr=flp3.get("chosen_plasticity_lr") or None)
  random_init = train.train_and_evaluate(cells.load_config(control, overrides),
                                         cells.cell_workdir(root, "1", scale, "section71_random"))
  levels = aggregate.no_learning(config)
  record = {"config": string, "control_config": control, "scale": scale,
            "reduced": (cells.reduced_changes("1", "section71", "continual", scale)
                        if scale != "paper" else {}),
            "meta_steps": int(result["step"]), "seeds": config.runs,
            "plasticity_lr": config.meta.lr.alpha, "device": device_name(),
            "wall_s": round(time.time() - t0, 1),
            "extended": cells.summarize_result(result, levels),
            "random_init": cells.summarize_result(random_init, levels),
            "feature_reuse": reuse, "flp3": flp3}
  write_json(section71_path(results_dir, scale), record)
  return record
