r"""Reproduces a cell (or a row) of the paper's Table 1 or 2 from code, resumably.

  python experiments/reproduce.py --table=1 --row=flp3 --scale=reduced --seeds=2
  python experiments/reproduce.py --table=2 --row=flp2 --columns=omniglot --scale=paper --seeds=5
  python experiments/reproduce.py --tables_only      # only regenerate results/RESULTS.md

Every cell of the row (or of ``--columns``) is one config string
(`config_string`): ``experiments/configs/sine.py`` (Table 1) or
``experiments/configs/fewshot.py`` (Table 2) with the row, column and scale as
its argument, e.g. ``experiments/configs/sine.py:row=flp3,order=continual,scale=reduced``.
The scales (``paper``; ``reduced``, small enough for a CPU), the plasticity
sweeps, the validation classes and the runs a network starts from are in
those files; this script only builds the strings and runs them. With a
plasticity sweep (``--sweep``, default on at reduced scale) it first runs the
cell's string with ``sweep=true`` (one network per rate, compared on held-out
functions / validation classes, never the meta-test classes, as the paper did
for every network, B.1); then it meta-trains ``--seeds`` independent networks
as one `vmap`ped program (``runs=``; the paper averaged 2 regression and 5
classification networks) with the chosen rate (``plasticity_lr=``), gradient
rows starting from the FLP cell of their column (``init_ff_from=``, B.2).
Calling it again continues where it stopped (every run resumes from its
workdir). It writes ``results/table<k>/<cell>.json`` (the exact config strings
run, meta-steps done, scale and what was reduced, seeds, device, wall time,
mean and standard error over the networks) and regenerates
``results/RESULTS.md``. Results written before the config strings name a
config file instead (``"config": "sine_flp3_continual"``): the file of the
same name in the git history, patched for the reduced scale as recorded.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

from absl import app, flags, logging

from flpjax import summary
from flpjax.reproduction import paper_claims

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Paper values: (mean, standard error or None). Table 1 MSE, Table 2 % error.
PAPER = {
    "1": {
        "reuse1": {"iid": (0.050, 7e-3), "continual": (0.035, 3e-3)},
        "flp2": {"iid": (0.00093, 3e-5), "continual": (0.0016, 6e-5)},
        "flp3": {"iid": (0.00051, 8e-5), "continual": (0.0068, 2e-3)},
        "grad3": {"iid": (0.00057, 2e-5), "continual": (0.069, 0.02)},
        "oml3": {"iid": (0.072, None), "continual": (0.40, None)},
    },
    "2": {
        "reuse1": {"omniglot": (4.6, 0.1), "omniglot_continual": (5.0, 0.1), "mini_imagenet": (48.2, 0.1)},
        "flp2": {"omniglot": (3.0, 0.1), "omniglot_continual": (2.7, 0.1), "mini_imagenet": (42.5, 0.6)},
        "grad2": {"omniglot": (3.2, 0.1), "omniglot_continual": (3.4, 0.1), "mini_imagenet": (42.5, 0.3)},
        "oml2": {"omniglot": (3.5, None), "omniglot_continual": (7.0, None), "mini_imagenet": (52.0, None)},
    },
}
ROW_NAMES = {
    "reuse1": "Feature Reuse (1)", "flp2": "FLP (2)", "flp3": "FLP (3)",
    "grad3": "Gradient-based (3)", "grad2": "Gradient-based (2)",
    "oml3": "Original OML (3)", "oml2": "Original OML (2)",
    "dfa3": "DFA (3)", "fa3": "FA (3)", "rule3": "Learned rule from Oja (3)",
    "rule3r": "Learned rule from random (3)", "pfb3": "Plastic feedback (3)",
    "pfb3h": "Plastic multi-layer feedback (3)", "rule3m": "Learned MLP rule (3)",
    "dfa2": "DFA (2)", "fa2": "FA (2)", "rule2": "Learned rule from Oja (2)",
    "rule2r": "Learned rule from random (2)", "rule2m": "Learned MLP rule (2)",
    "pfb2": "Plastic feedback (2)",
}
COLUMNS = {"1": ("iid", "continual"), "2": ("omniglot", "omniglot_continual", "mini_imagenet")}
COLUMN_NAMES = {"iid": "i.i.d. learning", "continual": "Continual learning",
                "omniglot": "Omniglot", "omniglot_continual": "Omniglot (continual)",
                "mini_imagenet": "Mini-ImageNet"}


CONFIGS = "experiments/configs"


def _arg_value(value) -> str:
  if value is True:
    return "true"
  text = repr(value) if isinstance(value, float) else str(value)
  if "," in text:
    raise ValueError(f"{text!r}: a config string argument cannot hold ','")
  return text


def config_string(table: str, row: str, column: str, scale: str, **args) -> str:
  """The config string of a cell (relative to the repository), with ``args`` appended.

  ``args`` with value None, False or '' are left out (the configs' defaults).
  """
  if table == "1":
    head = f"{CONFIGS}/sine.py:row={row},order={column}"
  else:
    dataset, order = (("omniglot", "continual") if column == "omniglot_continual"
                      else (column, "iid"))
    head = f"{CONFIGS}/fewshot.py:dataset={dataset},order={order},row={row}"
  return ",".join([head, f"scale={scale}"] + [f"{k}={_arg_value(v)}" for k, v in args.items()
                                              if v is not None and v is not False and v != ""])


def _relative(text: str) -> str:
  """``text`` with this machine's paths around the repository written relative to it
  (``../shared/data/...``): results are committed."""
  parent = os.path.dirname(REPO)
  return text.replace(REPO + os.sep, "").replace(parent + os.sep, ".." + os.sep)


def _path_arg(path: str) -> str:
  """``path`` for a config string: relative to the working directory when inside it."""
  rel = os.path.relpath(path)
  return os.path.abspath(path) if rel.startswith("..") else rel


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
_ROOT = flags.DEFINE_string("workdir_root", os.path.join(REPO, "workdirs", "reproduce"),
                            "Where the runs' workdirs go.")
_RESULTS = flags.DEFINE_string("results_dir", os.path.join(REPO, "results"), "Results directory.")
_TABLES_ONLY = flags.DEFINE_bool("tables_only", False, "Only regenerate RESULTS.md.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Data directory (config.fewshot.data_dir).")
_SECTION71 = flags.DEFINE_bool(
    "section71", False, "Run section 7.1 (FLP (3) continual from the feature-reuse (1) continual "
    "cell's networks, feed-forward frozen) at --scale, after those cells exist.")
_EVAL_BATCH = flags.DEFINE_integer(
    "eval_batch", None, "Lifetimes evaluated together (config.eval.batch; lower it on a CPU "
    "for meta-parameters stored with a GPU-sized batch).", lower_bound=1)
_SET = flags.DEFINE_multi_string(
    "set", [], "path=value: a config field set in every cell this run trains, e.g. "
    "--set=meta.steps=100 (recorded in each cell's JSON as 'overrides').")
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
  """``--set`` as ``{path: value}`` (values as Python literals, else strings)."""
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    return config_lib.parse_set(_SET.value if flags.FLAGS.is_parsed() else [])
  except config_lib.ConfigError as e:
    sys.exit(f"error: {e}")


def load_config(string: str, apply_overrides: bool = True):
  """The config of a config string (`config_string`), with ``--set`` applied."""
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_file(os.path.join(REPO, string))
  if apply_overrides:
    for path, value in overrides().items():
      try:
        config_lib.set_field(config, path, value)
      except (KeyError, AttributeError, TypeError) as e:
        sys.exit(f"error: --set={path}={value!r}: {e}")
  return config


def _flat(config) -> dict:
  out = {}

  def walk(prefix, node):
    for k, v in node.items():
      if isinstance(v, dict):
        walk(f"{prefix}{k}.", v)
      else:
        out[prefix + k] = v

  walk("", json.loads(config.to_json_best_effort()))
  return out


def reduced_changes(table: str, row: str, column: str, scale: str = "reduced") -> dict:
  """The fields in which a cell's config at ``scale`` differs from its paper one."""
  paper = _flat(load_config(config_string(table, row, column, "paper"), False))
  reduced = _flat(load_config(config_string(table, row, column, scale), False))
  return {k: v for k, v in reduced.items() if paper.get(k) != v}


def summarize_result(result: dict, baselines: dict | None = None) -> dict:
  """A cell's numbers from `train.train_and_evaluate`'s result.

  The mean and standard error are over the independently meta-trained networks
  (seeds). A diverged network (`claims.network_values`: stopped for too many
  non-finite meta-steps, any non-finite test lifetime, or above 10x the task's
  no-learning level) is named in ``diverged`` and left out of the mean, which
  is over the others; ``per_seed`` holds NaN for it. ``baselines`` (the
  no-learning levels of `flpjax.baselines`, on the same lifetimes) are stored
  with the cell, and each network is tested against the first of them
  (``learns_per_network``: below it by 2 standard errors of the paired
  per-lifetime difference).
  """
  from flpjax.experiment import claims  # pylint: disable=g-import-not-at-top
  metric = "mse" if "mse" in result else "error"
  runs = result.get("runs", [result])
  level = next(iter(baselines.values())) if baselines else None
  values, diverged = claims.network_values(result, metric,
                                           level["mean"] if level else None)
  stats = claims.over_networks(values)
  out = {"status": "done", "metric": metric, "meta_steps": int(result["step"]),
         "lifetimes": result["lifetimes"], "per_seed": values,
         "diverged_networks": len(diverged), "diverged": diverged,
         "nonfinite_lifetimes": sum(int(r.get("nonfinite_lifetimes", 0) or 0) for r in runs),
         "mean": stats["mean"], "stderr": stats["stderr"], "networks": stats["networks"],
         "stderr_over": "seeds"}
  if baselines:
    out["baselines"] = {k: {"mean": v["mean"], "stderr": v["stderr"]}
                        for k, v in baselines.items()}
    if level.get("per_lifetime") and all(r.get("per_lifetime") for r in runs):
      out["learns_per_network"] = [
          bool(claims.learns_per_network(r["per_lifetime"][metric], level["per_lifetime"]))
          for r in runs]
  if result.get("curve"):
    out["curve"] = result["curve"]
  return out


def _json(path, default=None):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return default


def _data_dir(config, data_dir: str):
  if data_dir:  # where this machine keeps the data: not part of the experiment
    config.fewshot.data_dir = data_dir
  return config


#: Columns a cell can train as one program (``both_orders``, `config.run_orders`): the
#: i.i.d. and continual columns of the same data, written ``iid+continual``.
ORDER_PAIRS = {"1": ("iid", "continual"), "2": ("omniglot", "omniglot_continual")}


def cell_columns(table: str, column: str) -> tuple[str, ...]:
  """The columns a cell fills: ``(column,)``, or the pair of ``'iid+continual'``."""
  columns = tuple(column.split("+"))
  if len(columns) > 1 and columns != ORDER_PAIRS[table]:
    raise ValueError(f"{column!r}: the only pair of table {table} is "
                     + "+".join(ORDER_PAIRS[table]))
  return columns


def run_cell(table: str, row: str, column: str, *, scale: str, seeds: int | None, sweep: bool,
             root: str, data_dir: str = "", export_dir: str = "") -> dict[str, dict]:
  """Trains (or resumes) and evaluates one cell; returns ``{column: result record}``.

  ``column`` a pair (``'iid+continual'``, `ORDER_PAIRS`): both columns' networks train
  as one program (``both_orders=true``), ``seeds`` of each; one record per column.
  ``seeds`` None: the config's own ``runs`` (the mini scale's `MINI_SEEDS`).
  ``export_dir``: also store the first network of each column there
  (``<table>_<row>_<column>_<scale>.npz/.json``, `train.export_params`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import datasets, train  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import aggregate  # pylint: disable=g-import-not-at-top

  columns = cell_columns(table, column)
  paired = len(columns) > 1
  first = columns[0]
  config = load_config(config_string(table, row, first, scale, runs=seeds, both_orders=paired))
  seeds = config.runs // len(columns)
  cell_dir = os.path.join(root, f"table{table}", scale, f"{row}_{column}")
  os.makedirs(cell_dir, exist_ok=True)
  clock = _json(os.path.join(cell_dir, "wall.json"), {"wall_s": 0.0})
  t0 = time.time()
  record = {"table": table, "row": row, "column": column,
            "config": config_string(table, row, first, scale, runs=seeds, both_orders=paired),
            "scale": scale,
            "reduced": reduced_changes(table, row, first, scale) if scale != "paper" else {},
            "seeds": seeds, "workdir": os.path.relpath(cell_dir, REPO)}
  if overrides():
    record["overrides"] = overrides()
  fail = lambda reason: {c: dict(record, column=c, status="not run", reason=reason)
                         for c in columns}
  try:
    chosen = None
    if sweep and config.learner in ("flp",) and config.estimator != "oml":  # rows with a sweep
      if paired:
        return fail("a sweep chooses each column's rate apart: run the columns apart")
      string = config_string(table, row, column, scale, sweep=True)
      sc = _data_dir(load_config(string), data_dir)
      record["sweep_config"] = string
      logging.info("%s: sweeping %s over %s", string, sc.sweep.group, tuple(sc.sweep.lrs))
      swept = train.train_and_evaluate(sc, os.path.join(cell_dir, "sweep"))["sweep"]
      chosen = swept["best_lr"]
      if chosen is None:
        raise RuntimeError(f"every swept rate diverged: {swept}")
      record["sweep"] = swept
    source = None
    if row.startswith("grad"):  # B.2: initialise from the FLP network of the same column
      source = os.path.join(root, f"table{table}", scale,
                            f"{'flp3' if table == '1' else 'flp2'}_{column}", "final")
      if os.path.isdir(os.path.join(source, "checkpoints")):
        source = _path_arg(source)
        record["init_ff_from"] = source
      else:
        source = None
    record["config"] = config_string(table, row, first, scale, runs=seeds, plasticity_lr=chosen,
                                     init_ff_from=source, both_orders=paired)
    config = _data_dir(load_config(record["config"]), data_dir)
    workdir = os.path.join(cell_dir, "final")
    result = train.train_and_evaluate(config, workdir)
  except (datasets.DataError, config_lib.ConfigError, FileNotFoundError) as e:
    return fail(_relative(str(e).splitlines()[0]))
  clock["wall_s"] += time.time() - t0
  summary.write_json(os.path.join(cell_dir, "wall.json"), clock)
  results = {column: result}
  if paired:  # run_orders: ("iid",) * seeds + ("continual",) * seeds
    results = dict(zip(columns, aggregate.split_by_order(result).values()))
  record.update({"device": jax.devices()[0].device_kind, "cpu_or_gpu": summary.device_name(),
                 "matmul_precision": config.matmul_precision,
                 "wall_s": round(clock["wall_s"], 1), "chosen_plasticity_lr": chosen})
  if paired:
    record["wall_s_note"] = "both columns' networks trained together in this time"
  # The no-learning levels on the cell's meta-test lifetimes (the same for both orders:
  # the order changes only the support stream).
  levels = aggregate.no_learning(config)
  out = {}
  for n, (c, r) in enumerate(results.items()):
    out[c] = dict(record, column=c, **summarize_result(dict(r, step=result["step"]), levels))
    if export_dir:
      name = os.path.join(export_dir, f"table{table}_{row}_{c}_{scale}")
      train.export_params(workdir, name, run=n * seeds)
      out[c]["exported"] = {"params": _relative(os.path.abspath(name)), "network": 0}
  if row == "reuse1" and scale != "paper":  # does the control learn within its lifetime?
    plain = no_plasticity(config, workdir)
    plain = dict(zip(columns, aggregate.split_by_order(plain).values())) if paired else {
        column: plain}
    for c in columns:
      out[c]["no_plasticity"] = {k: v for k, v in summarize_result(
          dict(plain[c], step=result["step"])).items() if k != "curve"}
  return out


def store_cells(results_dir: str, records: dict[str, dict]) -> list[dict]:
  """Writes each record of `run_cell` into ``<results_dir>/table<k>/<row>.json`` under its
  scale and column; returns the records."""
  for column, record in records.items():
    path = os.path.join(results_dir, f"table{record['table']}", f"{record['row']}.json")
    data = _json(path, {})
    data.setdefault(record["scale"], {})[column] = record
    summary.write_json(path, data)
  return list(records.values())


def no_plasticity(config, workdir: str) -> dict:
  """The cell's networks evaluated with every plasticity set to 0 (nothing learns within a
  lifetime): the level a plastic readout must get below to show it learns."""
  import jax  # pylint: disable=g-import-not-at-top
  from flpjax import train  # pylint: disable=g-import-not-at-top
  params, step = train.restore_params(workdir, config)
  params = dict(params, alpha=jax.tree.map(lambda a: 0.0 * a, params["alpha"]))
  return dict(train.evaluate_params(config, params), step=step)


def section71_path(results_dir: str, scale: str) -> str:
  """``results/section71.json`` (reduced scale, as before) or ``section71_<scale>.json``."""
  return os.path.join(results_dir, "section71.json" if scale == "reduced"
                      else f"section71_{scale}.json")


def section71(scale: str, root: str, results_dir: str) -> dict:
  """Section 7.1 from the stored feature-reuse continual cell, and its control from a
  frozen random initialisation; writes `section71_path`."""
  from flpjax import train  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import aggregate  # pylint: disable=g-import-not-at-top
  source = os.path.join(root, "table1", scale, "reuse1_continual", "final")
  flp3 = _json(os.path.join(results_dir, "table1", "flp3.json"), {}).get(scale, {}).get("continual")
  reuse = _json(os.path.join(results_dir, "table1", "reuse1.json"), {}).get(scale, {}).get("continual")
  if not (os.path.isdir(source) and flp3 and reuse):
    sys.exit(f"error: run the feature reuse (1) and FLP (3) continual cells at {scale} scale first")
  string = config_string("1", "section71", "continual", scale, runs=len(reuse["per_seed"]),
                         plasticity_lr=flp3.get("chosen_plasticity_lr") or None,
                         extend_from=_path_arg(source))
  config = load_config(string)
  t0 = time.time()
  result = train.train_and_evaluate(config, os.path.join(root, "table1", scale, "section71"))
  # The control: the same procedure from a frozen *random* initialisation (no extend_from).
  control = config_string("1", "section71", "continual", scale, runs=len(reuse["per_seed"]),
                          plasticity_lr=flp3.get("chosen_plasticity_lr") or None)
  random_init = train.train_and_evaluate(load_config(control), os.path.join(
      root, "table1", scale, "section71_random"))
  levels = aggregate.no_learning(config)
  record = {"config": string, "control_config": control, "scale": scale,
            "reduced": (reduced_changes("1", "section71", "continual", scale)
                        if scale != "paper" else {}),
            "meta_steps": int(result["step"]), "seeds": config.runs,
            "plasticity_lr": config.meta.lr.alpha, "device": summary.device_name(),
            "wall_s": round(time.time() - t0, 1),
            "extended": summarize_result(result, levels),
            "random_init": summarize_result(random_init, levels),
            "feature_reuse": reuse, "flp3": flp3}
  summary.write_json(section71_path(results_dir, scale), record)
  return record


def cell_from_params(table: str, row: str, column: str, path: str, scale: str,
                     data_dir: str = "") -> dict:
  """A cell's record from meta-parameters stored by `train.export_params` (no training).

  The stored config (in ``<path>.json``) is the one evaluated; the record's
  ``config`` names the cell's config string, whose meta-steps the stored ones
  are compared with.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from flpjax import train  # pylint: disable=g-import-not-at-top
  config, params, step = train.load_params_file(path)
  _data_dir(config, data_dir)
  if _EVAL_BATCH.value:
    config.eval.batch = _EVAL_BATCH.value
  info = _json(path + ".json", {})
  t0 = time.time()
  result = train.evaluate_params(config, params)
  metric = "mse" if "mse" in result else "error"
  string = config_string(table, row, column, scale)
  target = load_config(string).meta.steps
  note = f"meta-parameters from {os.path.relpath(path, REPO)}"
  if step < target:
    note += f"; partial: {step} of {target} meta-steps"
  return {"table": table, "row": row, "column": column, "config": string,
          "scale": scale, "reduced": {}, "seeds": 1, "status": "done", "metric": metric,
          "meta_steps": step, "device": info.get("device", "see the note"),
          "evaluated_on": jax.devices()[0].device_kind, "cpu_or_gpu": summary.device_name(),
          "eval_wall_s": round(time.time() - t0, 1), "lifetimes": result["lifetimes"],
          "mean": result[metric], "stderr": result[f"{metric}_stderr"],
          "per_seed": [result[metric]], "stderr_over": "lifetimes", "note": note,
          "source": info.get("source")}


# ----------------------------------------------------------------------------- RESULTS.md


def _fmt(value, metric):
  if value is None:
    return "-"
  if metric == "error":
    value *= 100.0
  return f"{value:.3g}"


def _paper(table, row, column):
  mean, se = PAPER[table][row][column]
  return f"{mean:g}" + (f" ({se:g})" if se is not None else "")


def load_results(results_dir: str) -> dict:
  """``{(table, row, column, scale): record}`` of every stored result."""
  out = {}
  for path in sorted(glob.glob(os.path.join(results_dir, "table*", "*.json"))):
    data = _json(path, {})
    for scale, columns in data.items():
      for column, record in columns.items():
        out[(record["table"], record["row"], column, scale)] = record
  return out


#: Config fields that differ between rows by design (not between scales).
_ROW_FIELDS = ("learner", "plastic_layers", "flp.", "gradient.", "alignment.", "learned_rule.",
               "plastic_feedback.", "meta.lr.", "meta.nonnegative", "estimator", "oml.",
               "seed", "runs", "meta.ff_")


def _claim_line(text: str, kind: str, ra: dict, rb: dict, scale: str) -> str:
  """``* text: **holds|fails** (a vs b; reason)`` with the one claim rule (`claims.decide`);
  the control is ``b``, which must learn."""
  from flpjax.experiment import claims  # pylint: disable=g-import-not-at-top
  differ = sorted(k for k in set(ra.get("reduced", {})) & set(rb.get("reduced", {}))
                  if ra["reduced"][k] != rb["reduced"][k] and not k.startswith(_ROW_FIELDS))
  if differ:  # e.g. a cell of an earlier miniature against one of the current miniature
    return (f"* {text}: not compared: the two cells were meta-trained with different "
            f"settings ({', '.join(differ)}); rerun the older one.")
  r = claims.decide("beyond", text, kind, paper_claims.cell_stats(ra),
                    paper_claims.cell_stats(rb), scale=scale,
                    controls=[("b", paper_claims.cell_stats(rb), paper_claims.baseline(rb))])
  m = ra.get("metric", "mse")
  return f"* {text}: **{r['verdict']}** ({_fmt(ra['mean'], m)} vs {_fmt(rb['mean'], m)}; {r['reason']})."


def _show(value):
  return str(tuple(value)) if isinstance(value, list) else str(value)


def _by_rows(table: str, describe) -> dict:
  """``{description: [rows]}``: the table's rows grouped by ``describe(table, row, column)``."""
  groups = {}
  for row in PAPER[table]:
    texts = {describe(table, row, column) for column in COLUMNS[table]}
    for text in texts:
      if text:
        groups.setdefault(text, []).append(row)
  return groups


def _reduced_lines(scale: str = "reduced") -> list[str]:
  lines = []
  for table, name in (("1", "sine.py"), ("2", "fewshot.py")):
    describe = lambda *cell: ", ".join(f"`{k}={_show(v)}`"
                                       for k, v in reduced_changes(*cell, scale).items())
    for text, rows in _by_rows(table, describe).items():
      lines.append(f"* `{name}` rows {', '.join(rows)}: {text}")
  return lines


def _sweep_text() -> str:
  def describe(table, row, column):
    config = load_config(config_string(table, row, column, "reduced"))
    if config.estimator == "oml" or config.learner != "flp":  # no plasticity to sweep
      return ""
    config = load_config(config_string(table, row, column, "reduced", sweep=True))
    return f"`{config.sweep.group}` in {_show(list(config.sweep.lrs))}"

  return "; ".join(f"Table {table} {', '.join(rows)}: {text}" for table in ("1", "2")
                   for text, rows in _by_rows(table, describe).items())


def write_results_md(results_dir: str, draw_figures: bool = False) -> str:
  """Regenerates ``results/claims.json`` and ``results/RESULTS.md`` from the stored results
  (with ``draw_figures``, first redraws every figure, `plots.plot_all`); returns its path.
  Each figure is embedded next to the table or claims it supports."""
  from flpjax import plots  # pylint: disable=g-import-not-at-top
  records = paper_claims.write(results_dir)
  if draw_figures:
    plots.plot_all(results_dir, log=logging.info)
  snippets = plots.figure_snippets(results_dir)
  results = load_results(results_dir)
  out = ["# Tables 1 and 2: the paper's values and this code's", "",
         "Generated by `python experiments/reproduce.py` from `results/table*/*.json` (each",
         "cell's JSON has the seeds, meta-steps, device, wall time and per-seed values).",
         "Ours: mean (standard error over independently meta-trained networks) [scale,",
         "seeds, meta-steps, device]. The paper's values average 2 (regression) or 5",
         "(classification) networks. Mini- and reduced-scale cells are small CPU runs: they",
         "check the qualitative claims, not the paper's numbers (see \"What mini means\",",
         "\"What reduced means\"). The mini scale is the CPU miniature of",
         "`python experiments/reproduce.py --scale=mini` (6 sine / 5 classification networks",
         "per cell); its claims are the ones to read first.", ""]
  titles = {"1": "Table 1: regression, meta-test MSE", "2": "Table 2: classification, % error"}
  for table in ("1", "2"):
    cols = COLUMNS[table]
    out += [f"## {titles[table]}", "",
            "| method | " + " | ".join(f"{COLUMN_NAMES[c]} (paper) | {COLUMN_NAMES[c]} (ours)"
                                       for c in cols) + " |",
            "|---|" + "---|" * (2 * len(cols))]
    for row in PAPER[table]:
      cells = []
      for column in cols:
        ours = []
        for scale in ("paper", "mini", "reduced"):
          r = results.get((table, row, column, scale))
          if not r:
            if scale == "paper":  # the paper-scale cells need a GPU (experiments/gpu_cells.sh)
              ours.append("paper scale: not run: no GPU available")
            continue
          if r.get("status") != "done":
            ours.append(f"not run at {scale} scale: {r.get('reason', '?').split(':')[0]}")
            continue
          m = r["metric"]
          seeds = len(r["per_seed"])
          device = r["cpu_or_gpu"] if r["device"] == "cpu" else r["device"]
          ours.append(f"{_fmt(r['mean'], m)} ({_fmt(r['stderr'], m)}) [{scale}, "
                      f"{seeds} seed{'s' if seeds > 1 else ''}, {r['meta_steps']} steps, "
                      f"{device}{'; se over lifetimes' if seeds == 1 else ''}]"
                      + (f" ({r['note']})" if r.get("note") else "")
                      + (f" ({r['diverged_networks']} of {seeds} networks diverged in "
                         "meta-training; mean over the others)" if r.get("diverged_networks")
                         else "")
                      + (f" ({r['nonfinite_lifetimes']} test lifetimes diverged; left out)"
                         if r.get("nonfinite_lifetimes") else "")
                      + (f" (no plasticity: {_fmt(r['no_plasticity']['mean'], m)})"
                         if r.get("no_plasticity") else ""))
        cells += [_paper(table, row, column), "<br>".join(ours) or "not yet run"]
      out.append(f"| {ROW_NAMES[row]} | " + " | ".join(cells) + " |")
    out.append("")
    out += [v + "\n" for k, v in snippets.items() if k.startswith(f"table{table}")]
  if records:
    out += ["## The paper's qualitative claims, as measured here", "",
            "Generated from `results/claims.json` (`flpjax/reproduction/paper_claims.py`). "
            "*below*: a below b by 2 standard errors over independently meta-trained "
            "networks; *comparable*: the 2-standard-error interval of a - b within 25% of the "
            "better mean; *not below*: a not below b at 2 standard errors. A claim is decided "
            "only when its controls learned (below their no-learning baseline, "
            "`flpjax/baselines.py`, by 2 standard errors); otherwise it reads **fails** with "
            "the reason \"control did not learn\". Diverged networks (non-finite, stopped, or "
            "above 10x the no-learning level) are counted, never averaged in.", ""]
    out += paper_claims.markdown(records)

  def f(d):
    text = (f"{d['mean']:.3g} ({d['stderr']:.2g})" if d.get("mean") is not None
            and d.get("stderr") is not None else str(d.get("mean")))
    if d.get("diverged_networks"):
      text += f", {d['diverged_networks']} of {len(d['per_seed'])} networks diverged"
    return text

  for scale in ("mini", "reduced"):
    s71 = _json(section71_path(results_dir, scale))
    if not s71:
      continue
    verdicts = {r["id"]: r["verdict"] for r in records if r["scale"] == scale}
    out += [f"## Section 7.1 at the {scale} scale: feature-reuse initialisation, then FLP", "",
            f"Continual sine, {s71['seeds']} networks, {s71['meta_steps']} more meta-steps "
            f"(`python experiments/reproduce.py --section71 --scale={scale}`): FLP (3) started "
            "from the feature-reuse networks with their feed-forward initialisation frozen "
            f"reaches MSE {f(s71['extended'])}, against {f(s71['feature_reuse'])} for feature "
            f"reuse (1) and {f(s71['flp3'])} for FLP (3) meta-trained from scratch. The paper's "
            "claim, that this procedure does not improve on feature reuse: **"
            + verdicts.get("section71_reuse_init_not_below_reuse1", "not decided") + "**.", ""]
    if s71.get("random_init"):
      out += [f"Control: the same procedure from a frozen *random* initialisation reaches "
              f"{f(s71['random_init'])}; below feature reuse: **"
              + verdicts.get("section71_random_init_below_reuse1", "not decided") + "**.", ""]
  if "section71" in snippets:
    out += [snippets["section71"], ""]
  for scale in ("mini",):
    figs = [(order, _json(os.path.join(results_dir, f"figures_{scale}", *sub, "figure2.json")))
            for order, sub in (("continual", ()), ("iid", ("iid",)))]
    figs = [(order, fig) for order, fig in figs if fig and fig.get("trends")]
    if not figs:
      continue
    out += [f"## Figure 2 at the {scale} scale", "",
            f"`results/figures_{scale}/` (continual sine cells: panels A-C) and "
            f"`results/figures_{scale}/iid/` (i.i.d. cells: panels A and D, the paper's "
            f"i.i.d. analysis), from `python experiments/reproduce.py --scale={scale}` "
            "(`experiments/figures.py --networks=0`: every network, 10 lifetimes each). Each "
            "claim at 2 standard errors over the networks (one value per network, its mean "
            "over lifetimes):", ""]
    panels = {"continual": ("A", "B", "C"), "iid": ("A", "D")}
    for order, fig in figs:
      for t in fig["trends"]:
        if t["panel"] not in panels[order]:
          continue
        values = {k: v for k, v in t.items() if isinstance(v, dict) and "mean" in v}
        values.update({f"layer {k}": v for k, v in t.get("layers", {}).items()})
        out.append(f"* panel {t['panel']} ({order} cells): {t['claim']}: **{t['verdict']}** ("
                   + "; ".join(f"{k} {v['mean']:.3g} ({v['stderr']:.2g}, {v['networks']} networks)"
                               for k, v in values.items()
                               if v.get("mean") is not None and v.get("stderr") is not None)
                   + ").")
    out.append("")
    out += [v + "\n" for k, v in snippets.items() if k.startswith(f"figure2_figures_{scale}")]
  out += beyond_lines(results_dir)
  out += ["## What reduced means", "",
          "Reduced-scale cells (`scale=reduced` in their config string) change these config",
          "fields (the rest is the paper's row):", ""]
  out += _reduced_lines()
  out += ["", "Plasticity meta-learning rates are chosen per network by a sweep on held-out",
          "functions / validation classes (never the meta-test classes; `sweep=true`): "
          + _sweep_text() + ". The chosen rate is in each cell's JSON.", ""]
  out += ["## What mini means", "",
          "The CPU miniature (`scale=mini`; `python experiments/reproduce.py --scale=mini` runs",
          "every cell, section 7.1 and the claims) changes these fields of the paper's row",
          "(no sweep: one fixed plasticity rate per row; `runs` networks per cell; see",
          "BUILD_NOTES \"The CPU miniature\" and \"Why networks diverge\"):", ""]
  out += _reduced_lines("mini") + [""]
  path = os.path.join(results_dir, "RESULTS.md")
  os.makedirs(results_dir, exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(out))
  return path


# ----------------------------------------------------------------------------- beyond the paper

#: Issue 12's cells at the mini scale: Figure 1's feedback-alignment learners.
#: (The i.i.d. column of these rows is configured in sine.py too, e.g.
#: ``experiments/train.py --config=experiments/configs/sine.py:row=rule3,order=iid,scale=mini``.)
BEYOND_CELLS = ([("1", row, "continual")
                 for row in ("dfa3", "fa3", "rule3", "rule3r", "pfb3", "pfb3h")]
                + [("2", row, "omniglot")
                   for row in ("dfa2", "fa2", "rule2", "rule2r", "rule2m", "pfb2")]
                + [("1", "rule3m", "continual")])  # the costliest last
_RULES = (("rule{n}", "a meta-learned rule started from Oja's coefficients"),
          ("rule{n}r", "a meta-learned rule started from random coefficients"),
          ("rule{n}m", "a meta-learned MLP rule"),
          ("pfb{n}", "plastic feedback"))
BEYOND_CLAIMS = [
    (f"{first} below {name} (3) on {col} sine", "below", ("1", row_a, column), ("1", row, column))
    for row_a, first in (("flp3", "FLP (3)"), ("grad3", "Gradient-based (3)"))
    for row, name in (("dfa3", "DFA"), ("fa3", "FA"))
    for column, col in (("continual", "continual"), ("iid", "i.i.d."))
] + [
    (f"{first} below {name} (2) on Omniglot", "below", ("2", row_a, "omniglot"),
     ("2", row, "omniglot"))
    for row_a, first in (("flp2", "FLP (2)"), ("grad2", "Gradient-based (2)"))
    for row, name in (("dfa2", "DFA"), ("fa2", "FA"))
] + [
    (f"{text} below FLP (3) with Oja's rule and fixed output feedback on continual sine",
     "below", ("1", row.format(n=3), "continual"), ("1", "flp3", "continual"))
    for row, text in _RULES + (("pfb3h", "plastic feedback from the output and the next layer"),)
] + [
    (f"{text} below FLP (2) with Oja's rule and fixed feedback on Omniglot", "below",
     ("2", row.format(n=2), "omniglot"), ("2", "flp2", "omniglot"))
    for row, text in _RULES
]


def learned_coefficients(root: str, scale: str = "mini") -> dict:
  """``{row: {layer: [mean, stderr] per coefficient}}`` of the learned-rule cells'
  networks (the hebbian rule's (c_hebb, c_pre, c_post, c_decay, c_w, c_0))."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flpjax import train  # pylint: disable=g-import-not-at-top
  out = {}
  for table, row, column in (("1", "rule3", "continual"), ("1", "rule3r", "continual"),
                             ("2", "rule2", "omniglot"), ("2", "rule2r", "omniglot")):
    workdir = os.path.join(root, f"table{table}", scale, f"{row}_{column}", "final")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
      continue
    config, params, step = train.load_run(workdir)
    out[row] = {"meta_steps": step, "layers": {}}
    for layer, coef in params["rule"].items():
      c = np.asarray(coef, np.float64).reshape(config.runs, -1)
      out[row]["layers"][layer] = {"mean": c.mean(0).tolist(),
                                   "stderr": (c.std(0, ddof=1) / np.sqrt(len(c))).tolist()}
  return out


def beyond(root: str, results_dir: str, scale: str = "mini") -> None:
  """Runs (or resumes) `BEYOND_CELLS`, then the longer-lifetime evaluation of the continual
  cells; regenerates RESULTS.md."""
  import subprocess  # pylint: disable=g-import-not-at-top
  missing = missing_data(BEYOND_CELLS)
  if missing:
    sys.exit("error: --beyond needs " + "; ".join(missing) + " (see README, Data)")
  for table, row, column in BEYOND_CELLS:
    if _done(results_dir, table, row, column, scale):
      continue
    print(f"[beyond] table {table} {row} {column}", flush=True)
    store_cells(results_dir, run_cell(table, row, column, scale=scale, seeds=None,
                                      sweep=False, root=root))
  dirs = [os.path.join(root, "table1", scale, f"{row}_continual", "final")
          for row in ("flp3", "grad3", "dfa3", "fa3")]
  rel = lambda p: p if os.path.relpath(p, REPO).startswith("..") else os.path.relpath(p, REPO)
  dirs = [rel(os.path.abspath(d)) for d in dirs if os.path.isdir(os.path.join(d, "checkpoints"))]
  out = rel(os.path.abspath(os.path.join(results_dir, "beyond", "longer_lifetimes.json")))
  cmd = [sys.executable, os.path.join("experiments", "longer_lifetimes.py"),
         "--workdirs=" + ",".join(dirs), "--factors=1,2,5,10", f"--output={out}"]
  if subprocess.run(cmd, check=False, cwd=REPO).returncode:
    sys.exit(f"error: {' '.join(cmd)} failed")
  summary.write_json(os.path.join(results_dir, "beyond", "learned_rules.json"),
                     learned_coefficients(root, scale))
  write_results_md(results_dir)


def beyond_lines(results_dir: str, scale: str = "mini") -> list[str]:
  """RESULTS.md's "Beyond the paper" section from the stored cells and experiments."""
  results = load_results(results_dir)
  cells = [(c, results.get(c + (scale,))) for c in BEYOND_CELLS]
  cells = [(c, r) for c, r in cells if r and r.get("status") == "done"]
  longer = _json(os.path.join(results_dir, "beyond", "longer_lifetimes.json"))
  if not cells and not longer:
    return []
  out = ["## Beyond the paper", "",
         f"Each question is a claim decided at 2 standard errors over independently "
         f"meta-trained networks, at the {scale} scale, on the dev CPU. Cells meta-trained "
         "before the miniature was recalibrated (their config differs from the current "
         "mini rows', e.g. in `sine.steps_per_function`) are listed with their numbers but "
         "not compared with the current rows (`python experiments/reproduce.py --scale=mini "
         "--beyond` reruns them).", ""]
  if cells:
    out += ["### Feedback alignment, learned rules, plastic feedback", "",
            "`python experiments/reproduce.py --scale=mini --beyond` (rows of "
            "`experiments/configs/sine.py` and `fewshot.py`: `dfa3`/`dfa2`, `fa3`/`fa2`, "
            "Figure 1's learners, inner SGD along the error sent through fixed random "
            "feedback, directly or layer by layer, at the gradient row's inner rate; "
            "`rule3`/`rule2`, FLP with a generalised Hebbian rule per layer meta-learned from "
            "Oja's coefficients, `rule3r`/`rule2r` from random ones, `rule3m`/`rule2m` a small "
            "MLP rule per layer (2 hidden units at this scale, `MINI_MLP_HIDDEN`); "
            "`pfb3`/`pfb2`, FLP whose feedback weights learn within the lifetime at a "
            "meta-learned rate, `pfb3h` also from the next "
            "plastic layer's activity; all meta-trained from scratch as the other rows of "
            "their table, at the mini scale):", ""]
    for (table, row, column), r in cells:
      m = r["metric"]
      out.append(f"* {ROW_NAMES[row]}, {COLUMN_NAMES[column]}: "
                 f"{'MSE' if m == 'mse' else 'error (%)'} {_fmt(r['mean'], m)} "
                 f"({_fmt(r['stderr'], m)}), {r['seeds']} networks, {r['meta_steps']} steps"
                 + (f", {r['diverged_networks']} diverged" if r.get("diverged_networks") else ""))
    out.append("")
    for text, kind, a, b in BEYOND_CLAIMS:
      ra, rb = results.get(a + (scale,)), results.get(b + (scale,))
      if ra and rb and ra.get("status") == "done" and rb.get("status") == "done":
        out.append(_claim_line(text, kind, ra, rb, scale))
    out.append("")
  rules = _json(os.path.join(results_dir, "beyond", "learned_rules.json"), {})
  if rules:
    out += ["Learned coefficients (the rule `dw = alpha * sum_b (c_hebb post pre + c_pre pre + "
            "c_post post + c_decay post^2 w + c_w w + c_0)`; Oja is (1, 0, 0, -1, 0, 0)), "
            "mean (standard error) over the networks, per plastic layer:", ""]
    for row, rec in rules.items():
      for layer, c in rec["layers"].items():
        out.append(f"* {ROW_NAMES[row]}, layer {layer}: "
                   + ", ".join(f"{m:.3g} ({e:.2g})" for m, e in zip(c["mean"], c["stderr"])))
    out.append("")
  if longer:
    out += ["### Lifetimes longer than trained", "",
            f"`{longer['command']}`: every network of each cell evaluated on lifetimes of "
            f"k x T steps (each function shown k times as many batches), k in "
            f"{longer['factors']}, {longer['lifetimes']} lifetimes each; MSE mean (standard "
            "error over networks):", ""]
    for row in longer["rows"]:
      cells_ = ", ".join(_mse_over_networks(f"{k}T", v) for k, v in row["summary"].items())
      out.append(f"* {row['learner']} ({row['plastic_layers']}), {row['order']}: {cells_}")
    out.append("")
    for c in longer["claims"]:
      out.append(f"* {c['claim']}: **{c['verdict']}**.")
    out.append("")
  return out + long_training_lines(results_dir)


def _mse_over_networks(name: str, stats: dict) -> str:
  """``'10T: 0.67 (0.088), 2 diverged'`` from `aggregate.over_networks`' record."""
  return (f"{name}: {_fmt(stats['mean'], 'mse')} ({_fmt(stats['stderr'], 'mse')})"
          + (f", {stats['diverged']} diverged" if stats["diverged"] else ""))


def long_training_lines(results_dir: str) -> list[str]:
  """RESULTS.md's memory-against-lifetime table and the long-lifetime meta-training claims
  (``experiments/long_lifetimes_training.py``)."""
  data = _json(os.path.join(results_dir, "beyond", "long_lifetimes_training.json"))
  if not data:
    return []
  out = ["### Meta-training on lifetimes longer than full backprop fits", "",
         f"`{data['command']}` ({data['device']}).", ""]
  if data.get("memory"):
    out += ["Memory of one meta-step of FLP (3) (XLA's account of the compiled program: "
            "temporaries, arguments and outputs), MB, against the lifetime k T:", "",
            "| network | T | " + " | ".join(f"{r['factor']}T" for r in
                                             next(iter(data["memory"].values()))) + " |",
            "|---|---|" + "---|" * len(next(iter(data["memory"].values())))]
    for scale, rows in data["memory"].items():
      for estimator in ("full", "truncated"):
        name = ("full backprop" if estimator == "full"
                else "truncated backprop (window T)")
        cells = [f"{r[estimator]['total'] / 2**20:.0f}"
                 + (" (refused by the config check)" if r.get(f"{estimator}_refused") else "")
                 for r in rows]
        out.append(f"| {scale}, {name} | {rows[0]['T']} | " + " | ".join(cells) + " |")
    out.append("")
  train = data.get("train")
  if train:
    k = f"{train['factor']}T"
    out += [f"Networks meta-trained on T-step lifetimes and on {k}-step ones (continual sine, "
            f"mini scale, truncated backprop with a T-step window for 4,000 meta-steps, or full "
            f"backprop for 400, the same number of lifetime steps), each evaluated on "
            f"{train['lifetimes']} lifetimes of T and {k} steps; MSE mean (standard error "
            "over networks):", ""]
    for r in train["rows"]:
      cells = ", ".join(_mse_over_networks(name, r[name]) for name in ("T", k))
      out.append(f"* {ROW_NAMES[r['row']]}, {r['variant']}: {cells}")
    out.append("")
    out += [f"* {c['claim']}: **{c['verdict']}**." for c in train["claims"]] + [""]
  return out


# ----------------------------------------------------------------------------- the miniature


#: Measured cost of one meta-step of one network at mini scale (evaluations and curve
#: included), in seconds, by table: the job's first ETA (refined as it runs). From the
#: cells' wall times on the 2-core Intel Xeon of 2026-12-06 with 2-3 cells running at
#: once: Table 1, 500-900 s per cell of 6 networks x 4,000 steps; Table 2, 770-940 s per
#: cell of 5 x 4,000.
MINI_S_PER_RUN_STEP = {"1": 0.03, "2": 0.045}


def mini_plan() -> list[tuple[str, str, str]]:
  """Every cell of the miniature, in an order that meets each cell's dependencies:
  Table 1 (FLP before the gradient row that starts from it), section 7.1 (after
  feature reuse), Table 2."""
  plan = [("1", row, column) for row in PAPER["1"] for column in COLUMNS["1"]]
  plan.append(("1", "section71", "continual"))
  plan.append(("1", "figure2", "continual"))
  plan += [("2", row, column) for row in PAPER["2"] for column in COLUMNS["2"]
           if column not in MINI_DROPPED]
  return plan


#: Columns left out of the miniature (`paper_claims.DROPPED`, with the reason).
MINI_DROPPED = {column: why for (scale, column), why in paper_claims.DROPPED.items()
                if scale == "mini"}


#: Figure 2 of the miniature: its FLP and gradient-based continual sine cells.
FIGURE2_FLP = ("reuse1", "flp2", "flp3")
FIGURE2_GRAD = ("grad3",)


def figure2(scale: str, root: str, results_dir: str,
            orders: tuple[str, ...] = ("continual", "iid")) -> None:
  """Figure 2 from the scale's sine cells, every network analysed
  (``experiments/figures.py --networks=0``): the continual cells (panels A-C, as the
  paper's continual analyses) into ``results/figures_<scale>/``, the i.i.d. cells
  (panel D is the paper's i.i.d. task) into ``results/figures_<scale>/iid/``."""
  import subprocess  # pylint: disable=g-import-not-at-top

  def cells(rows, order):  # the cells that were run (a --cells subset may lack some)
    dirs = [os.path.join(root, "table1", scale, f"{row}_{order}", "final") for row in rows]
    return ",".join(_path_arg(d) for d in dirs if os.path.isdir(os.path.join(d, "checkpoints")))

  for order in orders:
    out = os.path.join(results_dir, f"figures_{scale}", *(() if order == "continual" else (order,)))
    if not cells(FIGURE2_FLP, order):
      continue
    # Run from the repository with paths relative to it: the command is recorded.
    rel = lambda p: os.path.relpath(os.path.abspath(p), REPO)
    cmd = [sys.executable, os.path.join("experiments", "figures.py"),
           "--flp_workdirs=" + ",".join(map(rel, cells(FIGURE2_FLP, order).split(","))),
           "--grad_workdirs=" + ",".join(rel(d) for d in cells(FIGURE2_GRAD, order).split(",")
                                         if d),
           "--networks=0", "--lifetimes=10", "--batch=5", f"--output_dir={rel(out)}"]
    proc = subprocess.run(cmd, check=False, cwd=REPO)
    if proc.returncode:
      sys.exit(f"error: Figure 2 ({' '.join(cmd)}) exited with {proc.returncode}")
    data = _json(os.path.join(out, "figure2.json"))
    data.update(scale=scale, order=order)
    summary.write_json(os.path.join(out, "figure2.json"), data)
  summary.write_json(os.path.join(results_dir, f"figures_{scale}", "done.json"),
                     {"scale": scale, "orders": list(orders)})


def missing_data(plan, data_dir: str = "") -> list[str]:
  """``'dataset split (folder)'`` for every split the cells of ``plan`` need that is absent."""
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  out = []
  needs = {"omniglot": ("train", "test"), "mini_imagenet": ("train", "test")}
  used = {"mini_imagenet" if column == "mini_imagenet" else "omniglot"
          for table, _, column in plan if table == "2"}
  for dataset, splits in needs.items():
    if dataset not in used:
      continue
    try:
      present = datasets.available_splits(dataset, data_dir or None)
    except datasets.DataError:
      present = []
    out += [f"{dataset} split {split!r} ({datasets.dataset_dir(dataset, data_dir or None)})"
            for split in splits if split not in present]
  return out


def _cell_units(table: str, row: str, column: str) -> float:
  """Estimated seconds of a miniature cell: meta-steps x networks x `MINI_S_PER_RUN_STEP`."""
  config = load_config(config_string(table, row, column, "mini"))
  return config.meta.steps * config.runs * MINI_S_PER_RUN_STEP[table]


def _done(results_dir: str, table: str, row: str, column: str, scale: str):
  if row == "figure2":
    record = _json(os.path.join(results_dir, f"figures_{scale}", "done.json"))
    return record if record and record.get("scale") == scale else None
  if row == "section71":
    record = _json(section71_path(results_dir, scale))
    return record if record and record.get("scale") == scale and "random_init" in record else None
  record = _json(os.path.join(results_dir, f"table{table}", f"{row}.json"), {})
  record = record.get(scale, {}).get(column)
  if not (record and record.get("status") == "done"):
    return None
  # Done with the config the scale has now (a changed scale reruns its cells).
  now = json.loads(json.dumps(reduced_changes(table, row, column, scale)))
  return record if record.get("reduced") == now else None


def mini_job(root: str, results_dir: str, data_dir: str = "") -> list[str]:
  """The whole CPU miniature, resumably: every cell of `mini_plan` not yet in
  ``results_dir``, then RESULTS.md; returns the claims' lines.

  Progress: one line per cell with the job's elapsed time and ETA (from the
  cost estimate of the cells left, scaled by the speed measured so far).
  """
  from flpjax.experiment.progress import _hms  # pylint: disable=g-import-not-at-top
  plan = mini_plan()
  if _CELLS.value:
    chosen = [tuple(c.split(":")) for c in _CELLS.value]
    bad = [":".join(c) for c in chosen if c not in plan]
    if bad:
      sys.exit(f"error: --cells={','.join(bad)}: expected some of "
               + ", ".join(":".join(c) for c in plan))
    plan = [c for c in plan if c in chosen]
  missing = missing_data(plan, data_dir)
  if missing:
    sys.exit(f"error: --data_dir={data_dir or '(default)'}: the miniature needs "
             + "; ".join(missing) + " (see README, Data)")
  units = {cell: _cell_units(*(cell if cell[1] not in ("section71", "figure2")
                                else ("1", "flp3", "continual")))
           for cell in plan}
  left = [cell for cell in plan if not _done(results_dir, cell[0], cell[1], cell[2], "mini")]
  total = sum(units[c] for c in left)
  print(f"[mini] {len(plan) - len(left)} of {len(plan)} cells already done; {len(left)} to "
        f"run, estimated {_hms(total)}", flush=True)
  t0, spent = time.time(), 0.0
  for n, cell in enumerate(left):
    table, row, column = cell
    print(f"[mini] cell {n + 1}/{len(left)}: table {table} {row} {column}", flush=True)
    if row == "section71":
      section71("mini", root, results_dir)
    elif row == "figure2":
      figure2("mini", root, results_dir)
    else:
      record, = store_cells(results_dir, run_cell(table, row, column, scale="mini", seeds=None,
                                                   sweep=False, root=root, data_dir=data_dir))
      if record.get("status") != "done":
        sys.exit(f"error: table {table} {row} {column}: {record.get('reason')}")
    spent += units[cell]
    elapsed = time.time() - t0
    remaining = sum(units[c] for c in left[n + 1:]) * elapsed / spent
    print(f"[mini] {n + 1}/{len(left)} cells done, elapsed {_hms(elapsed)}, "
          f"ETA {_hms(remaining)}", flush=True)
  write_results_md(results_dir, draw_figures=_FIGURES.value)
  return [f"{r['claim']}: {r['verdict']} ({r['reason']})"
          for r in _json(os.path.join(results_dir, "claims.json"), []) if r["scale"] == "mini"]


# ----------------------------------------------------------------------------- GPU allocations

#: The share of the budget the timed estimates may fill (the rest: data loading, saving
#: checkpoints, the evaluation's own compilation, noise).
BUDGET_SHARE = 0.85
#: A meta-test lifetime of one network is costed at this fraction of a meta-step (no
#: backward pass through the lifetime): an assumption of the estimate, not a measurement.
EVAL_STEP_FRACTION = 0.5


def paper_plan(values: list[str]) -> list[tuple[str, str, str]]:
  """``--cells`` at paper scale: ``(table, row, column)`` each; exits on a bad entry."""
  plan = []
  for text in values:
    parts = text.split(":")
    table, row, column = parts if len(parts) == 3 else ("", "", "")
    if table not in PAPER or row not in PAPER[table]:
      sys.exit(f"error: --cells={text}: expected table:row:column with table 1 (rows "
               f"{', '.join(PAPER['1'])}) or 2 (rows {', '.join(PAPER['2'])})")
    allowed = COLUMNS[table] + ("+".join(ORDER_PAIRS[table]),)
    if column not in allowed:
      sys.exit(f"error: --cells={text}: column {column!r}: expected one of {', '.join(allowed)}")
    plan.append((table, row, column))
  return plan


def cell_estimate(table: str, row: str, column: str, seeds: int | None, data_dir: str) -> dict:
  """Seconds one cell will take here: its meta-step timed on this machine (all its networks
  in one program) x meta-steps, plus compilation and the evaluation (estimated)."""
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import timing  # pylint: disable=g-import-not-at-top
  paired = len(cell_columns(table, column)) > 1
  config = _data_dir(load_config(config_string(table, row, cell_columns(table, column)[0],
                                               "paper", runs=seeds, both_orders=paired)),
                     data_dir)
  config_lib.validate(config)
  timed = timing.time_meta_step(config, steps=2, warmup=1)
  train_s = config.meta.steps * timed["s_per_step"]
  eval_s = timed["compile_s"] + EVAL_STEP_FRACTION * config.eval.lifetimes * timed["s_per_step"]
  return {"cell": f"{table}:{row}:{column}", "networks": config.runs,
          "meta_steps": config.meta.steps, "s_per_step": round(timed["s_per_step"], 4),
          "compile_s": round(timed["compile_s"], 1),
          "estimate_s": round(timed["compile_s"] + train_s + eval_s, 1)}


def budget_job(plan, budget_s: float | None, seeds: int | None, root: str, results_dir: str,
               data_dir: str = "", export_dir: str = "") -> list[dict]:
  """Paper-scale cells within ``budget_s`` seconds (one GPU allocation): times each cell,
  refuses the set if it cannot finish, then trains and evaluates them in order, writing each
  cell's record (and, with ``export_dir``, its first network) as soon as it is done, so that
  a job killed at its time limit keeps the cells it finished."""
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import datasets  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  if budget_s is not None and budget_s <= 0:
    sys.exit(f"error: --budget_s={budget_s}: expected a positive number of seconds")
  missing = missing_data(plan, data_dir)
  if missing:
    sys.exit(f"error: --data_dir={data_dir or '(default)'}: the cells need "
             + "; ".join(missing) + " (see README, Data)")
  estimates = []
  for table, row, column in plan:
    try:
      estimates.append(cell_estimate(table, row, column, seeds, data_dir))
    except (config_lib.ConfigError, datasets.DataError, ValueError) as e:
      sys.exit(f"error: --cells={table}:{row}:{column}: {str(e).splitlines()[0]}")
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
      sys.exit(f"error: --budget_s={budget_s:g}: the cells need about {need:.0f} s at the "
               f"measured speed ({each}), {left:.0f} s are left; "
               + (f"these fit: --cells={','.join(fits)}" if fits else "none fits alone"))
  records = []
  for (table, row, column), e in zip(plan, estimates):
    print(f"[budget] training {e['cell']} ({e['networks']} networks, about "
          f"{e['estimate_s']:.0f} s; {time.time() - t0:.0f} s spent)", flush=True)
    done = run_cell(table, row, column, scale="paper", seeds=seeds, sweep=False, root=root,
                    data_dir=data_dir, export_dir=export_dir)
    for record in done.values():
      record["estimate_s"] = e["estimate_s"]
    records += store_cells(results_dir, done)
  return records


def merge_results(source: str, results_dir: str) -> list[str]:
  """Copies every cell record of ``source``'s ``table*/<row>.json`` into ``results_dir``
  (replacing the same scale and column); returns ``'table:row:column (scale)'`` of each."""
  import glob  # pylint: disable=g-import-not-at-top
  merged = []
  for path in sorted(glob.glob(os.path.join(source, "table[12]", "*.json"))):
    for scale, cells in _json(path, {}).items():
      for column, record in cells.items():
        store_cells(results_dir, {column: record})
        merged.append(f"{record['table']}:{record['row']}:{column} ({scale})")
  return merged


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  summary.quiet_libraries()
  if _TABLES_ONLY.value:
    print(write_results_md(_RESULTS.value, draw_figures=_FIGURES.value))
    return
  if _SECTION71.value:
    section71(_SCALE.value, _ROOT.value, _RESULTS.value)
    print(write_results_md(_RESULTS.value, draw_figures=_FIGURES.value))
    return
  if _MERGE.value:
    merged = merge_results(_MERGE.value, _RESULTS.value)
    if not merged:
      sys.exit(f"error: --merge_from={_MERGE.value}: no table1/*.json or table2/*.json there")
    print("merged " + ", ".join(merged))
    print(write_results_md(_RESULTS.value, draw_figures=_FIGURES.value))
    return
  table, row = _TABLE.value, _ROW.value
  if _SCALE.value == "paper" and _CELLS.value:
    if _SEEDS.value is not None and _SEEDS.value < 1:
      sys.exit(f"error: --seeds={_SEEDS.value}: expected an integer >= 1")
    plan = paper_plan(_CELLS.value)
    seeds = _SEEDS.value
    records = budget_job(plan, _BUDGET.value, seeds, _ROOT.value, _RESULTS.value,
                         _DATA_DIR.value, _EXPORT.value)
    for r in records:
      print(f"{r['table']}:{r['row']}:{r['column']}: {r.get('status')} "
            f"{r.get('mean', r.get('reason'))} ({r.get('wall_s')} s)")
    return
  if _BUDGET.value is not None:
    sys.exit("error: --budget_s: expected with --scale=paper and --cells")
  if _SCALE.value == "mini" and _BEYOND.value:
    beyond(_ROOT.value, _RESULTS.value)
    print("\n".join(beyond_lines(_RESULTS.value)))
    return
  if _SCALE.value == "mini" and table is None and row is None:
    lines = mini_job(_ROOT.value, _RESULTS.value, _DATA_DIR.value)
    print("\n".join(["The paper's claims at the mini scale (results/RESULTS.md):"] + lines))
    return
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
  seeds = _SEEDS.value or (None if _SCALE.value == "mini" else 2 if table == "1" else 5)
  if seeds is not None and seeds < 1:
    sys.exit(f"error: --seeds={seeds}: expected an integer >= 1")
  sweep = _SWEEP.value == "on" or (_SWEEP.value == "auto" and _SCALE.value == "reduced")
  path = os.path.join(_RESULTS.value, f"table{table}", f"{row}.json")
  if _PARAMS.value:
    if len(columns) != 1:
      sys.exit("error: --params fills one cell: give exactly one --columns entry")
    record = cell_from_params(table, row, columns[0], _PARAMS.value, _SCALE.value, _DATA_DIR.value)
    data = _json(path, {})
    data.setdefault(_SCALE.value, {})[columns[0]] = record
    summary.write_json(path, data)
    print(write_results_md(_RESULTS.value, draw_figures=_FIGURES.value))
    return
  for column in columns:
    for record in store_cells(_RESULTS.value, run_cell(
        table, row, column, scale=_SCALE.value, seeds=seeds, sweep=sweep, root=_ROOT.value,
        data_dir=_DATA_DIR.value)):
      logging.info("%s %s %s: %s", table, row, record["column"],
                   record.get("mean", record.get("reason")))
  print(write_results_md(_RESULTS.value))


if __name__ == "__main__":
  app.run(main, flags_parser=summary.parse_flags_or_exit)
