r"""Reproduces a cell (or a row) of the paper's Table 1 or 2 from code, resumably.

  python experiments/reproduce.py --table=1 --row=flp3 --scale=reduced --seeds=2
  python experiments/reproduce.py --table=2 --row=flp2 --columns=omniglot --scale=paper --seeds=5
  python experiments/reproduce.py --tables_only      # only regenerate results/RESULTS.md
  python experiments/reproduce.py --scale=mini --config.meta.steps=100   # a field, every cell

Every cell of the row (or of ``--columns``) is one config string
(`flpjax.reproduction.cells.config_string`): ``experiments/configs/sine.py``
(Table 1) or ``experiments/configs/fewshot.py`` (Table 2) with the row, column and
scale as its argument, e.g.
``experiments/configs/sine.py:row=flp3,order=continual,scale=reduced``. The scales
(``paper``; ``reduced``, small enough for a CPU; ``mini``, the CPU miniature), the
plasticity sweeps, the validation classes and the runs a network starts from are in
those files; the protocol (sweeps, gradient rows starting from the FLP cell of their
column, B.2) is in `flpjax.reproduction.cells`, the jobs in
`flpjax.reproduction.jobs`, RESULTS.md in `flpjax.reproduction.results_md`. This
binary only reads flags and dispatches.

With a plasticity sweep (``--sweep``, default on at reduced scale) a cell first
runs its string with ``sweep=true`` (one network per rate, compared on held-out
functions / validation classes, never the meta-test classes, as the paper did for
every network, B.1); then it meta-trains ``--seeds`` independent networks as one
`vmap`ped program (the paper averaged 2 regression and 5 classification networks)
with the chosen rate. ``--config.<field>=<value>`` (ml_collections' override syntax,
on the fields of `flpjax.config.base_config`) sets a field in every config this run
trains, recorded in each cell's JSON as ``overrides``. Calling it again continues
where it stopped (every run resumes from its workdir). It writes
``results/table<k>/<cell>.json`` (the exact config strings run, meta-steps done,
scale and what was reduced, seeds, device, wall time, mean and standard error over
the networks) and regenerates ``results/RESULTS.md``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from flpjax import config as config_lib
from flpjax.reporting import errors
from flpjax.reproduction import beyond, cells, jobs, results_md, section71
from flpjax.reproduction.cells import COLUMNS, ORDER_PAIRS, PAPER, ROW_NAMES

_TABLE = flags.DEFINE_enum("table", None, ["1", "2"], "Which table.")
_ROW = flags.DEFINE_string("row", None, "Row: " + ", ".join(ROW_NAMES))
_COLUMNS = flags.DEFINE_list("columns", None, "Columns of the row (default: all).")
_SCALE = flags.DEFINE_enum("scale", "reduced", ["paper", "reduced", "mini"],
                           "Scale. 'mini' without --table/--row: the whole CPU miniature "
                           "(both tables, section 7.1, the claims).")
_SEEDS = flags.DEFINE_integer("seeds", None, "Independent networks (default: 2 / 5 as the "
                              "paper; at mini scale the config's, MINI_SEEDS).")
_SWEEP = flags.DEFINE_enum("sweep", "auto", ["auto", "on", "off"],
                           "Plasticity meta-LR sweep before the final runs (auto: on at reduced scale).")
_ROOT = flags.DEFINE_string("workdir_root", os.path.join(cells.REPO, "workdirs", "reproduce"),
                            "Where the runs' workdirs go.")
_RESULTS = flags.DEFINE_string("results_dir", os.path.join(cells.REPO, "results"),
                               "Results directory.")
_TABLES_ONLY = flags.DEFINE_bool("tables_only", False, "Only regenerate RESULTS.md.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Data directory (config.fewshot.data_dir).")
_SECTION71 = flags.DEFINE_bool(
    "section71", False, "Run section 7.1 (FLP (3) continual from the feature-reuse (1) continual "
    "cell's networks, feed-forward frozen; with its controls: those networks meta-trained on "
    "as feature reuse for as many meta-steps, and the procedure from a frozen random "
    "initialisation) at --scale, after those cells exist.")
_EVAL_BATCH = flags.DEFINE_integer(
    "eval_batch", None, "Lifetimes evaluated together (config.eval.batch; lower it on a CPU "
    "for meta-parameters stored with a GPU-sized batch).", lower_bound=1)
_CONFIG = errors.define_config_overrides(
    "config", config_lib.base_config(), "Only its fields: --config.<field>=<value> sets the "
    "field in every cell this run trains, e.g. --config.meta.steps=100 (recorded in each "
    "cell's JSON as 'overrides'); each cell's config is otherwise its config string's.")
_CELLS = flags.DEFINE_list(
    "cells", None, "With --scale=mini: only these cells of the miniature, each "
    "table:row:column (e.g. 1:flp3:continual, 1:section71:continual). With --scale=paper: "
    "the cells to train (as with --budget_s), each table:row:column or table:row:"
    "iid+continual / omniglot+omniglot_continual (both columns as one program).")
_BUDGET = flags.DEFINE_float(
    "budget_s", None, "With --scale=paper --cells: seconds this job may take (one GPU "
    "allocation). Each cell's meta-step is timed first; cells that cannot finish within the "
    "budget are refused before any training.")
_EXPORT = flags.DEFINE_string(
    "export_dir", "", "Store the first network of each trained cell there "
    "(train.export_params; default: not stored).")
_MERGE = flags.DEFINE_string(
    "merge_from", None, "Merge the cell records of another results directory (e.g. the "
    "output of experiments/gpu_cells.sh) into --results_dir, then regenerate RESULTS.md.")
_FIGURES = flags.DEFINE_bool("figures", True, "Redraw every figure (experiments/plot.py) "
                              "before writing RESULTS.md.")
_BEYOND = flags.DEFINE_bool(
    "beyond", False, "With --scale=mini: experiments (DFA and FA rows, lifetimes "
    "longer than trained) after the miniature's Table 1 cells they compare with.")
_PARAMS = flags.DEFINE_string(
    "params", None, "Fill the cell (one --columns entry) from stored meta-parameters "
    "(train.export_params, e.g. trained on a GPU) instead of training.")


def overrides() -> dict:
  """The ``--config.<field>`` values given, ``{'meta.steps': 100, ...}``."""
  return dict(config_flags.get_override_values(flags.FLAGS[_CONFIG.name]))


def write_results_md(draw_figures: bool | None = None) -> None:
  """Regenerates RESULTS.md (redrawing the figures as ``--figures`` says) and prints its path."""
  draw = _FIGURES.value if draw_figures is None else draw_figures
  print(results_md.write_results_md(_RESULTS.value, draw_figures=draw))


def row_job(table: str | None, row: str | None) -> None:
  """``--table --row [--columns]``: trains (or fills from ``--params``) the row's cells."""
  if table is None or row is None:
    sys.exit("error: --table and --row are required (or --tables_only)")
  if row not in PAPER[table]:
    sys.exit(f"error: --row={row}: expected one of {', '.join(PAPER[table])} for table {table}")
  columns = _COLUMNS.value or list(COLUMNS[table])
  pair = "+".join(ORDER_PAIRS[table])
  bad = [c for c in columns if c not in COLUMNS[table] + (pair,)]
  if bad:
    sys.exit(f"error: --columns={','.join(bad)}: expected some of {', '.join(COLUMNS[table])}"
             f" (or {pair}: both columns' networks as one program)")
  scale = _SCALE.value
  seeds = _SEEDS.value or (None if scale == "mini" else 2 if table == "1" else 5)
  if seeds is not None and seeds < 1:
    sys.exit(f"error: --seeds={seeds}: expected an integer >= 1")
  sweep = _SWEEP.value == "on" or (_SWEEP.value == "auto" and scale == "reduced")
  if _PARAMS.value:
    if len(columns) != 1:
      sys.exit("error: --params fills one cell: give exactly one --columns entry")
    record = cells.cell_from_params(table, row, columns[0], _PARAMS.value, scale,
                                    _DATA_DIR.value, _EVAL_BATCH.value, overrides())
    cells.store_cells(_RESULTS.value, {columns[0]: record})
    write_results_md()
    return
  for column in columns:
    for record in cells.store_cells(_RESULTS.value, cells.run_cell(
        table, row, column, scale=scale, seeds=seeds, sweep=sweep, root=_ROOT.value,
        data_dir=_DATA_DIR.value, overrides=overrides())):
      logging.info("%s %s %s: %s", table, row, record["column"],
                   record.get("mean", record.get("reason")))
  write_results_md(draw_figures=False)


def dispatch() -> None:
  """Runs what the flags ask for."""
  root, results = _ROOT.value, _RESULTS.value
  if _TABLES_ONLY.value:
    write_results_md()
  elif _SECTION71.value:
    section71.run(_SCALE.value, root, results, overrides())
    write_results_md()
  elif _MERGE.value:
    merged = jobs.merge_results(_MERGE.value, results)
    if not merged:
      sys.exit(f"error: --merge_from={_MERGE.value}: no table1/*.json or table2/*.json there")
    print("merged " + ", ".join(merged))
    write_results_md()
  elif _SCALE.value == "paper" and _CELLS.value:
    if _SEEDS.value is not None and _SEEDS.value < 1:
      sys.exit(f"error: --seeds={_SEEDS.value}: expected an integer >= 1")
    records = jobs.budget_job(jobs.paper_plan(_CELLS.value), _BUDGET.value, _SEEDS.value, root,
                              results, _DATA_DIR.value, _EXPORT.value, overrides())
    for r in records:
      print(f"{r['table']}:{r['row']}:{r['column']}: {r.get('status')} "
            f"{r.get('mean', r.get('reason'))} ({r.get('wall_s')} s)")
  elif _BUDGET.value is not None:
    sys.exit("error: --budget_s: expected with --scale=paper and --cells")
  elif _SCALE.value == "mini" and _BEYOND.value:
    beyond.run(root, results, overrides=overrides())
    results_md.write_results_md(results)
    print("\n".join(beyond.markdown(results)))
  elif _SCALE.value == "mini" and _TABLE.value is None and _ROW.value is None:
    lines = jobs.mini_job(root, results, _DATA_DIR.value, _CELLS.value, _FIGURES.value,
                          overrides())
    print("\n".join(["The paper's claims at the mini scale (results/RESULTS.md):"] + lines))
  else:
    row_job(_TABLE.value, _ROW.value)


def main(argv):
  del argv  # errors.parse_flags_or_exit refuses positional arguments
  errors.quiet_libraries()
  try:
    dispatch()
  except cells.ReproductionError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
