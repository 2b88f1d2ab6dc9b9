"""One cell of the paper's Table 1 or 2: its config string, its workdir, its training, its record.

A cell is ``(table, row, column)``, e.g. ``('1', 'flp3', 'continual')``. Its
config is a config string (`config_string`): ``experiments/configs/sine.py``
(Table 1) or ``experiments/configs/fewshot.py`` (Table 2) with the row, column
and scale as its argument. `run_cell` trains (or resumes) a cell in its
workdir (`cell_workdir`, the one place that names it) through
`flpjax.train.train_and_evaluate`, in this process, and returns its record
(`summarize_result`); `store_cells` writes records into
``results/table<k>/<row>.json`` as ``{scale: {column: record}}``.

The protocol's policy lives here, each rule in one named place:

* `init_ff_from`: gradient-based rows start from the feed-forward weights of
  the FLP cell of their column (Appendix B.2);
* `sweeps_plasticity`: which rows get a plasticity meta-learning-rate sweep;
* `ORDER_PAIRS`: the columns a cell may train as one program.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from absl import logging

from flpjax.reporting import statistics
from flpjax.reporting.metrics import device_name, read_json, write_json

#: The repository: config strings are relative to it, and so are the paths results record.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = "experiments/configs"

#: Paper values: (mean, standard error or None). Table 1 MSE, Table 2 % error.
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

#: Columns a cell can train as one program (``both_orders``, `config.run_orders`): the
#: i.i.d. and continual columns of the same data, written ``iid+continual``.
ORDER_PAIRS = {"1": ("iid", "continual"), "2": ("omniglot", "omniglot_continual")}

#: Appendix B.2: the FLP row whose feed-forward weights a table's gradient rows start from.
FF_SOURCE_ROWS = {"1": "flp3", "2": "flp2"}


class ReproductionError(ValueError):
  """A cell or job cannot run as asked (bad cell, missing data or prerequisite cells)."""


# ----------------------------------------------------------------------------- config strings


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

  >>> config_string("1", "flp3", "iid", "mini", runs=2)
  'experiments/configs/sine.py:row=flp3,order=iid,scale=mini,runs=2'
  """
  if table == "1":
    head = f"{CONFIGS}/sine.py:row={row},order={column}"
  else:
    dataset, order = (("omniglot", "continual") if column == "omniglot_continual"
                      else (column, "iid"))
    head = f"{CONFIGS}/fewshot.py:dataset={dataset},order={order},row={row}"
  return ",".join([head, f"scale={scale}"] + [f"{k}={_arg_value(v)}" for k, v in args.items()
                                              if v is not None and v is not False and v != ""])


def load_config(string: str, overrides: Mapping[str, Any] | None = None):
  """The config of a config string (`config_string`), with ``overrides`` applied.

  Args:
    string: a config string, relative to the repository.
    overrides: ``{'meta.steps': 100, ...}``: fields set in the config (a binary's
      ``--config.meta.steps=100``, `ml_collections.config_flags.get_override_values`).

  Raises:
    ReproductionError: an override does not fit the config.
  """
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_file(os.path.join(REPO, string))
  for path, value in (overrides or {}).items():
    try:
      config.update_from_flattened_dict({path: value})
    except (KeyError, AttributeError, TypeError) as e:
      raise ReproductionError(f"--config.{path}={value!r}: {e}") from None
  return config


def set_data_dir(config, data_dir: str):
  """``config`` with ``fewshot.data_dir`` set to ``data_dir`` if given (where this machine
  keeps the data: not part of the experiment)."""
  if data_dir:
    config.fewshot.data_dir = data_dir
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
  paper = _flat(load_config(config_string(table, row, column, "paper")))
  reduced = _flat(load_config(config_string(table, row, column, scale)))
  return {k: v for k, v in reduced.items() if paper.get(k) != v}


def cell_columns(table: str, column: str) -> tuple[str, ...]:
  """The columns a cell fills: ``(column,)``, or the pair of ``'iid+continual'``."""
  columns = tuple(column.split("+"))
  if len(columns) > 1 and columns != ORDER_PAIRS[table]:
    raise ValueError(f"{column!r}: the only pair of table {table} is "
                     + "+".join(ORDER_PAIRS[table]))
  return columns


# ----------------------------------------------------------------------------- paths


def cell_workdir(root: str, table: str, scale: str, row: str, column: str = "") -> str:
  """Where a cell's runs go: ``<root>/table<k>/<scale>/<row>_<column>`` (``<row>`` alone
  for a cell without columns, e.g. section 7.1's). Its ``final/`` holds the meta-trained
  networks, ``sweep/`` the plasticity sweep, ``wall.json`` the wall time spent."""
  return os.path.join(root, f"table{table}", scale, f"{row}_{column}" if column else row)


def final_workdir(root: str, table: str, scale: str, row: str, column: str = "") -> str:
  """The workdir of a cell's meta-trained networks (``<cell_workdir>/final``)."""
  return os.path.join(cell_workdir(root, table, scale, row, column), "final")


def trained(workdir: str) -> bool:
  """Whether ``workdir`` holds a checkpoint."""
  return os.path.isdir(os.path.join(workdir, "checkpoints"))


def path_arg(path: str) -> str:
  """``path`` for a config string: relative to the working directory when inside it."""
  rel = os.path.relpath(path)
  return os.path.abspath(path) if rel.startswith("..") else rel


def _relative(text: str) -> str:
  """``text`` with this machine's paths around the repository written relative to it
  (``../shared/data/...``): results are committed."""
  parent = os.path.dirname(REPO)
  return text.replace(REPO + os.sep, "").replace(parent + os.sep, ".." + os.sep)


# ----------------------------------------------------------------------------- protocol


def init_ff_from(root: str, table: str, scale: str, row: str, column: str) -> str | None:
  """The workdir whose feed-forward weights a cell starts from, or None (from scratch).

  Appendix B.2: a gradient-based row (``grad*``) starts from the meta-learned
  feed-forward weights of the FLP cell of its column and scale (`FF_SOURCE_ROWS`:
  FLP (3) in Table 1, FLP (2) in Table 2), once that cell has a checkpoint; so the
  plan runs FLP before the gradient rows. Every other row starts from scratch.
  """
  if not row.startswith("grad"):
    return None
  source = final_workdir(root, table, scale, FF_SOURCE_ROWS[table], column)
  return path_arg(source) if trained(source) else None


def sweeps_plasticity(config) -> bool:
  """Whether a cell's plasticity meta-learning rate is chosen by a sweep: FLP rows
  (not the original OML procedure, not learners without plasticity)."""
  return config.learner == "flp" and config.estimator != "oml"


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


# ----------------------------------------------------------------------------- records


def summarize_result(result: dict, baselines: dict | None = None) -> dict:
  """A cell's numbers from `train.train_and_evaluate`'s result.

  The mean and standard error are over the independently meta-trained networks
  (seeds). A diverged network (`statistics.network_values`: stopped for too many
  non-finite meta-steps, any non-finite test lifetime, or above 10x the task's
  no-learning level) is named in ``diverged`` and left out of the mean, which
  is over the others; ``per_seed`` holds NaN for it. ``baselines`` (the
  no-learning levels of `flpjax.baselines`, on the same lifetimes) are stored
  with the cell, and each network is tested against the first of them
  (``learns_per_network``: below it by 2 standard errors of the paired
  per-lifetime difference).
  """
  metric = "mse" if "mse" in result else "error"
  runs = result.get("runs", [result])
  level = next(iter(baselines.values())) if baselines else None
  values, diverged = statistics.network_values(result, metric,
                                               level["mean"] if level else None)
  stats = statistics.over_networks(values)
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
          bool(statistics.learns_per_network(r["per_lifetime"][metric], level["per_lifetime"]))
          for r in runs]
  if result.get("curve"):
    out["curve"] = result["curve"]
  return out


def results_path(results_dir: str, table: str, row: str) -> str:
  """``<results_dir>/table<k>/<row>.json``: a row's records, ``{scale: {column: record}}``."""
  return os.path.join(results_dir, f"table{table}", f"{row}.json")


def store_cells(results_dir: str, records: dict[str, dict]) -> list[dict]:
  """Writes each record of `run_cell` into `results_path` under its scale and column;
  returns the records."""
  for column, record in records.items():
    path = results_path(results_dir, record["table"], record["row"])
    data = read_json(path, {})
    data.setdefault(record["scale"], {})[column] = record
    write_json(path, data)
  return list(records.values())


def load_results(results_dir: str) -> dict:
  """``{(table, row, column, scale): record}`` of every stored result."""
  import glob  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(glob.glob(os.path.join(results_dir, "table*", "*.json"))):
    data = read_json(path, {})
    for scale, columns in data.items():
      for column, record in columns.items():
        out[(record["table"], record["row"], column, scale)] = record
  return out


def cell_done(results_dir: str, table: str, row: str, column: str, scale: str) -> dict | None:
  """The stored record of a cell if it is done with the config its scale has now (a
  changed scale reruns its cells), else None."""
  record = read_json(results_path(results_dir, table, row), {})
  record = record.get(scale, {}).get(column)
  if not (record and record.get("status") == "done"):
    return None
  now = json.loads(json.dumps(reduced_changes(table, row, column, scale)))
  return record if record.get("reduced") == now else None


def format_value(value, metric: str) -> str:
  """A cell's value as RESULTS.md shows it (an error in percent), ``-`` for None."""
  if value is None:
    return "-"
  if metric == "error":
    value *= 100.0
  return f"{value:.3g}"


# ----------------------------------------------------------------------------- training


def run_cell(table: str, row: str, column: str, *, scale: str, seeds: int | None, sweep: bool,
             root: str, data_dir: str = "", export_dir: str = "",
             overrides: Mapping[str, Any] | None = None) -> dict[str, dict]:
  """Trains (or resumes) and evaluates one cell; returns ``{column: result record}``.

  With ``sweep`` (and `sweeps_plasticity`), first a sweep of the plasticity
  meta-learning rate on held-out functions / validation classes chooses the rate.
  ``column`` a pair (``'iid+continual'``, `ORDER_PAIRS`): both columns' networks train
  as one program (``both_orders=true``), ``seeds`` of each; one record per column.
  ``seeds`` None: the config's own ``runs`` (the mini scale's `MINI_SEEDS`).
  ``export_dir``: also store the first network of each column there
  (``<table>_<row>_<column>_<scale>.npz/.json``, `train.export_params`).
  ``overrides``: config fields set in every config the cell trains (`load_config`),
  recorded as ``'overrides'``. A cell that cannot run (missing data, a bad config)
  gets a ``'not run'`` record with the reason.
  """
  import jax  # pylint: disable=g-import-not-at-top

  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import datasets, train  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import aggregate  # pylint: disable=g-import-not-at-top

  columns = cell_columns(table, column)
  paired = len(columns) > 1
  first = columns[0]
  config = load_config(config_string(table, row, first, scale, runs=seeds, both_orders=paired),
                       overrides)
  seeds = config.runs // len(columns)
  cell_dir = cell_workdir(root, table, scale, row, column)
  os.makedirs(cell_dir, exist_ok=True)
  clock = read_json(os.path.join(cell_dir, "wall.json"), {"wall_s": 0.0})
  t0 = time.time()
  record = {"table": table, "row": row, "column": column,
            "config": config_string(table, row, first, scale, runs=seeds, both_orders=paired),
            "scale": scale,
            "reduced": reduced_changes(table, row, first, scale) if scale != "paper" else {},
            "seeds": seeds, "workdir": os.path.relpath(cell_dir, REPO)}
  if overrides:
    record["overrides"] = dict(overrides)
  fail = lambda reason: {c: dict(record, column=c, status="not run", reason=reason)
                         for c in columns}
  try:
    chosen = None
    if sweep and sweeps_plasticity(config):
      if paired:
        return fail("a sweep chooses each column's rate apart: run the columns apart")
      string = config_string(table, row, column, scale, sweep=True)
      sc = set_data_dir(load_config(string, overrides), data_dir)
      record["sweep_config"] = string
      logging.info("%s: sweeping %s over %s", string, sc.sweep.group, tuple(sc.sweep.lrs))
      swept = train.train_and_evaluate(sc, os.path.join(cell_dir, "sweep"))["sweep"]
      chosen = swept["best_lr"]
      if chosen is None:
        raise RuntimeError(f"every swept rate diverged: {swept}")
      record["sweep"] = swept
    source = init_ff_from(root, table, scale, row, column)
    if source:
      record["init_ff_from"] = source
    record["config"] = config_string(table, row, first, scale, runs=seeds, plasticity_lr=chosen,
                                     init_ff_from=source, both_orders=paired)
    config = set_data_dir(load_config(record["config"], overrides), data_dir)
    workdir = final_workdir(root, table, scale, row, column)
    result = train.train_and_evaluate(config, workdir)
  except (datasets.DataError, config_lib.ConfigError, FileNotFoundError) as e:
    return fail(_relative(str(e).splitlines()[0]))
  clock["wall_s"] += time.time() - t0
  write_json(os.path.join(cell_dir, "wall.json"), clock)
  results = {column: result}
  if paired:  # run_orders: ("iid",) * seeds + ("continual",) * seeds
    results = dict(zip(columns, aggregate.split_by_order(result).values()))
  record.update({"device": jax.devices()[0].device_kind, "cpu_or_gpu": device_name(),
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


def no_plasticity(config, workdir: str) -> dict:
  """The cell's networks evaluated with every plasticity set to 0 (nothing learns within a
  lifetime): the level a plastic readout must get below to show it learns."""
  import jax  # pylint: disable=g-import-not-at-top

  from flpjax import train  # pylint: disable=g-import-not-at-top
  params, step = train.restore_params(workdir, config)
  params = dict(params, alpha=jax.tree.map(lambda a: 0.0 * a, params["alpha"]))
  return dict(train.evaluate_params(config, params), step=step)


def cell_from_params(table: str, row: str, column: str, path: str, scale: str,
                     data_dir: str = "", eval_batch: int | None = None,
                     overrides: Mapping[str, Any] | None = None) -> dict:
  """A cell's record from meta-parameters stored by `train.export_params` (no training).

  The stored config (in ``<path>.json``) is the one evaluated, ``eval_batch``
  lifetimes at once if given (``config.eval.batch``); the record's ``config``
  names the cell's config string, whose meta-steps (with ``overrides``) the
  stored ones are compared with.
  """
  import jax  # pylint: disable=g-import-not-at-top

  from flpjax import train  # pylint: disable=g-import-not-at-top
  config, params, step = train.load_params_file(path)
  set_data_dir(config, data_dir)
  if eval_batch:
    config.eval.batch = eval_batch
  info = read_json(path + ".json", {})
  t0 = time.time()
  result = train.evaluate_params(config, params)
  metric = "mse" if "mse" in result else "error"
  string = config_string(table, row, column, scale)
  target = load_config(string, overrides).meta.steps
  note = f"meta-parameters from {os.path.relpath(path, REPO)}"
  if step < target:
    note += f"; partial: {step} of {target} meta-steps"
  return {"table": table, "row": row, "column": column, "config": string,
          "scale": scale, "reduced": {}, "seeds": 1, "status": "done", "metric": metric,
          "meta_steps": step, "device": info.get("device", "see the note"),
          "evaluated_on": jax.devices()[0].device_kind, "cpu_or_gpu": device_name(),
          "eval_wall_s": round(time.time() - t0, 1), "lifetimes": result["lifetimes"],
          "mean": result[metric], "stderr": result[f"{metric}_stderr"],
          "per_seed": [result[metric]], "stderr_over": "lifetimes", "note": note,
          "source": info.get("source")}
