"""Jobs of many cells: the CPU miniature, a GPU allocation's budget, merging results.

* `mini_job`: every cell of `mini_plan` (both tables at ``scale=mini``, section 7.1,
  Figure 2) not yet done, in dependency order, with an ETA, then RESULTS.md;
* `budget_job`: paper-scale cells (`paper_plan`) within the seconds of one GPU
  allocation: each cell's meta-step is timed first (`cell_estimate`) and cells
  that cannot finish are refused before any training;
* `merge_results`: the cell records of another results directory (a GPU job's)
  copied into this one.

Cells train in this process (`cells.run_cell`); only Figure 2 runs a binary
(`flpjax.reproduction.figure2`). Bad requests raise `cells.ReproductionError`
before anything trains.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flpjax.reporting.metrics import read_json
from flpjax.reporting.progress import hms
from flpjax.reproduction import cells, figure2, paper_claims, results_md, section71
from flpjax.reproduction.cells import COLUMNS, ORDER_PAIRS, PAPER, ReproductionError

Cell = tuple[str, str, str]

# ----------------------------------------------------------------------------- the miniature

#: Measured cost of one meta-step of one network at mini scale (evaluations and curve
#: included), in seconds, by table: the job's first ETA (refined as it runs). From the
#: cells' wall times on the 2-core Intel Xeon of 2026-12-06 with 2-3 cells running at
#: once: Table 1, 500-900 s per cell of 6 networks x 4,000 steps; Table 2, 770-940 s per
#: cell of 5 x 4,000.
MINI_S_PER_RUN_STEP = {"1": 0.03, "2": 0.045}

#: Columns left out of the miniature (`paper_claims.DROPPED`, with the reason).
MINI_DROPPED = {column: why for (scale, column), why in paper_claims.DROPPED.items()
                if scale == "mini"}


def mini_plan() -> list[Cell]:
  """Every cell of the miniature, in an order that meets each cell's dependencies:
  Table 1 (FLP before the gradient row that starts from it, `cells.init_ff_from`),
  section 7.1 (after feature reuse), Figure 2, Table 2."""
  plan = [("1", row, column) for row in PAPER["1"] for column in COLUMNS["1"]]
  plan.append(("1", "section71", "continual"))
  plan.append(("1", "figure2", "continual"))
  plan += [("2", row, column) for row in PAPER["2"] for column in COLUMNS["2"]
           if column not in MINI_DROPPED]
  return plan


def choose_cells(plan: Sequence[Cell], chosen: Sequence[str] | None) -> list[Cell]:
  """The cells of ``plan`` named in ``chosen`` (``table:row:column`` each; None: all).

  Raises:
    ReproductionError: a name that is not in the plan.
  """
  if not chosen:
    return list(plan)
  wanted = [tuple(c.split(":")) for c in chosen]
  bad = [":".join(c) for c in wanted if c not in plan]
  if bad:
    raise ReproductionError(f"--cells={','.join(bad)}: expected some of "
                            + ", ".join(":".join(c) for c in plan))
  return [c for c in plan if c in wanted]


def cell_units(table: str, row: str, column: str,
               overrides: Mapping[str, Any] | None = None) -> float:
  """Estimated seconds of a miniature cell: meta-steps x networks x `MINI_S_PER_RUN_STEP`."""
  if row == "section71":  # two FLP (3) runs (extension, random init), one feature reuse
    return (2 * cell_units("1", "flp3", "continual", overrides)
            + cell_units("1", "reuse1", "continual", overrides))
  if row == "figure2":  # costed as the cell it follows
    table, row, column = "1", "flp3", "continual"
  config = cells.load_config(cells.config_string(table, row, column, "mini"), overrides)
  return config.meta.steps * config.runs * MINI_S_PER_RUN_STEP[table]


def done(results_dir: str, table: str, row: str, column: str, scale: str):
  """The stored record of a plan's entry (a cell, section 7.1 or Figure 2) if done."""
  if row == "figure2":
    return figure2.done(results_dir, scale)
  if row == "section71":
    return section71.done(results_dir, scale)
  return cells.cell_done(results_dir, table, row, column, scale)


def mini_job(root: str, results_dir: str, data_dir: str = "",
             chosen: Sequence[str] | None = None, draw_figures: bool = True,
             overrides: Mapping[str, Any] | None = None) -> list[str]:
  """The whole CPU miniature, resumably: every cell of `mini_plan` (or of ``chosen``) not
  yet in ``results_dir``, then RESULTS.md; returns the claims' lines.

  Progress: one line per cell with the job's elapsed time and ETA (from the
  cost estimate of the cells left, scaled by the speed measured so far).

  Raises:
    ReproductionError: an unknown cell, missing data, or a cell that did not run.
  """
  plan = choose_cells(mini_plan(), chosen)
  missing = cells.missing_data(plan, data_dir)
  if missing:
    raise ReproductionError(f"--data_dir={data_dir or '(default)'}: the miniature needs "
                            + "; ".join(missing) + " (see README, Data)")
  units = {cell: cell_units(*cell, overrides=overrides) for cell in plan}
  left = [cell for cell in plan if not done(results_dir, *cell, "mini")]
  total = sum(units[c] for c in left)
  print(f"[mini] {len(plan) - len(left)} of {len(plan)} cells already done; {len(left)} to "
        f"run, estimated {hms(total)}", flush=True)
  t0, spent = time.time(), 0.0
  for n, cell in enumerate(left):
    table, row, column = cell
    print(f"[mini] cell {n + 1}/{len(left)}: table {table} {row} {column}", flush=True)
    if row == "section71":
      section71.run("mini", root, results_dir, overrides)
    elif row == "figure2":
      figure2.run("mini", root, results_dir)
    else:
      record, = cells.store_cells(results_dir, cells.run_cell(
          table, row, column, scale="mini", seeds=None, sweep=False, root=root,
          data_dir=data_dir, overrides=overrides))
      if record.get("status") != "done":
        raise ReproductionError(f"table {table} {row} {column}: {record.get('reason')}")
    spent += units[cell]
    elapsed = time.time() - t0
    remaining = sum(units[c] for c in left[n + 1:]) * elapsed / spent
    print(f"[mini] {n + 1}/{len(left)} cells done, elapsed {hms(elapsed)}, "
          f"ETA {hms(remaining)}", flush=True)
  results_md.write_results_md(results_dir, draw_figures=draw_figures)
  return [f"{r['claim']}: {r['verdict']} ({r['reason']})"
          for r in read_json(os.path.join(results_dir, "claims.json"), [])
          if r["scale"] == "mini"]


# ----------------------------------------------------------------------------- GPU allocations

#: The share of the budget the timed estimates may fill (the rest: data loading, saving
#: checkpoints, the evaluation's own compilation, noise).
BUDGET_SHARE = 0.85
#: A meta-test lifetime of one network is costed at this fraction of a meta-step (no
#: backward pass through the lifetime): an assumption of the estimate, not a measurement.
EVAL_STEP_FRACTION = 0.5


def paper_plan(values: Sequence[str]) -> list[Cell]:
  """``--cells`` at paper scale: ``(table, row, column)`` each.

  Raises:
    ReproductionError: an entry that is not ``table:row:column`` of the paper's
      tables (a column may be a pair, `cells.ORDER_PAIRS`).
  """
  plan = []
  for text in values:
    parts = text.split(":")
    table, row, column = parts if len(parts) == 3 else ("", "", "")
    if table not in PAPER or row not in PAPER[table]:
      raise ReproductionError(
          f"--cells={text}: expected table:row:column with table 1 (rows "
          f"{', '.join(PAPER['1'])}) or 2 (rows {', '.join(PAPER['2'])})")
    allowed = COLUMNS[table] + ("+".join(ORDER_PAIRS[table]),)
    if column not in allowed:
      raise ReproductionError(
          f"--cells={text}: column {column!r}: expected one of {', '.join(allowed)}")
    plan.append((table, row, column))
  return plan


def cell_estimate(table: str, row: str, column: str, seeds: int | None, data_dir: str,
                  overrides: Mapping[str, Any] | None = None) -> dict:
  """Seconds one cell will take here: its meta-step timed on this machine (all its networks
  in one program) x meta-steps, plus compilation and the evaluation (estimated)."""
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import timing  # pylint: disable=g-import-not-at-top
  columns = cells.cell_columns(table, column)
  string = cells.config_string(table, row, columns[0], "paper", runs=seeds,
                               both_orders=len(columns) > 1)
  config = cells.set_data_dir(cells.load_config(string, overrides), data_dir)
  config_lib.validate(config)
  timed = timing.time_meta_step(config, steps=2, warmup=1)
  train_s = config.meta.steps * timed["s_per_step"]
  eval_s = timed["compile_s"] + EVAL_STEP_FRACTION * config.eval.lifetimes * timed["s_per_step"]
  return {"cell": f"{table}:{row}:{column}", "networks": config.runs,
          "meta_steps": config.meta.steps, "s_per_step": round(timed["s_per_step"], 4),
          "compile_s": round(timed["compile_s"], 1),
          "estimate_s": round(timed["compile_s"] + train_s + eval_s, 1)}


def budget_job(plan: Sequence[Cell], budget_s: float | None, seeds: int | None, root: str,
               results_dir: str, data_dir: str = "", export_dir: str = "",
               overrides: Mapping[str, Any] | None = None) -> list[dict]:
  """Paper-scale cells within ``budget_s`` seconds (one GPU allocation): times each cell,
  refuses the set if it cannot finish, then trains and evaluates them in order, writing each
  cell's record (and, with ``export_dir``, its first network) as soon as it is done, so that
  a job killed at its time limit keeps the cells it finished.

  Raises:
    ReproductionError: a bad budget, missing data, a cell that cannot be timed, or cells
      that do not fit the budget (the message names those that do).
  """
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  if budget_s is not None and budget_s <= 0:
    raise ReproductionError(f"--budget_s={budget_s}: expected a positive number of seconds")
  missing = cells.missing_data(plan, data_dir)
  if missing:
    raise ReproductionError(f"--data_dir={data_dir or '(default)'}: the cells need "
                            + "; ".join(missing) + " (see README, Data)")
  estimates = []
  for table, row, column in plan:
    try:
      estimates.append(cell_estimate(table, row, column, seeds, data_dir, overrides))
    except (config_lib.ConfigError, datasets.DataError, ValueError) as e:
      raise ReproductionError(
          f"--cells={table}:{row}:{column}: {str(e).splitlines()[0]}") from None
    print("[budget] " + json.dumps(estimates[-1]), flush=True)
  if budget_s is not None:
    left = budget_s - (time.time() - t0)
    need = sum(e["estimate_s"] for e in estimates)
    if need > BUDGET_SHARE * left:
      fits, total = [], 0.0
      for e in estimates:
        if total + e["estimate_s"] <= BUDGET_SHARE * left:
          fits.append(e["cell"])
          total += e["estimate_s"]
      each = ", ".join(f"{e['cell']}: {e['estimate_s']:.0f} s" for e in estimates)
      raise ReproductionError(
          f"--budget_s={budget_s:g}: the cells need about {need:.0f} s at the "
          f"measured speed ({each}), {left:.0f} s are left; "
          + (f"these fit: --cells={','.join(fits)}" if fits else "none fits alone"))
  records = []
  for (table, row, column), e in zip(plan, estimates):
    print(f"[budget] training {e['cell']} ({e['networks']} networks, about "
          f"{e['estimate_s']:.0f} s; {time.time() - t0:.0f} s spent)", flush=True)
    trained = cells.run_cell(table, row, column, scale="paper", seeds=seeds, sweep=False,
                             root=root, data_dir=data_dir, export_dir=export_dir,
                             overrides=overrides)
    for record in trained.values():
      record["estimate_s"] = e["estimate_s"]
    records += cells.store_cells(results_dir, trained)
  return records


def merge_results(source: str, results_dir: str) -> list[str]:
  """Copies every cell record of ``source``'s ``table*/<row>.json`` into ``results_dir``
  (replacing the same scale and column); returns ``'table:row:column (scale)'`` of each."""
  merged = []
  for path in sorted(glob.glob(os.path.join(source, "table[12]", "*.json"))):
    for scale, by_column in read_json(path, {}).items():
      for column, record in by_column.items():
        cells.store_cells(results_dir, {column: record})
        merged.append(f"{record['table']}:{record['row']}:{column} ({scale})")
  return merged
