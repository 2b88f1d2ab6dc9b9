r"""Reproduces a cell (or a row) of the paper's Table 1 or 2 from code, resumably.

  python experiments/reproduce.py --table=1 --row=flp3 --scale=reduced --seeds=2
  python experiments/reproduce.py --table=2 --row=flp2 --columns=omniglot --scale=paper --seeds=5
  python experiments/reproduce.py --tables_only      # only regenerate results/RESULTS.md

For every cell of the row (or of ``--columns``) it takes the row's experiment
config (``experiments/configs/``), applies the scale (``paper``: as is;
``reduced``: `REDUCED`, small enough for a CPU), and meta-trains ``--seeds``
independent networks as one `vmap`ped program (``config.runs``; the paper
averaged 2 regression and 5 classification networks). With a plasticity
sweep (``--sweep``, default on at reduced scale), the plasticity meta-learning
rate of each network is first chosen among `SWEEPS` on held-out functions /
validation classes (never the meta-test classes), as the paper did for every
network (B.1). Calling it again continues where it stopped (every run resumes
from its workdir). It writes ``results/table<k>/<cell>.json`` (meta-steps done,
scale and what was reduced, seeds, device, wall time, mean and standard error
over the networks) and regenerates ``results/RESULTS.md``.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

from absl import app, flags, logging

from flpjax import summary

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
}
COLUMNS = {"1": ("iid", "continual"), "2": ("omniglot", "omniglot_continual", "mini_imagenet")}
COLUMN_NAMES = {"iid": "i.i.d. learning", "continual": "Continual learning",
                "omniglot": "Omniglot", "omniglot_continual": "Omniglot (continual)",
                "mini_imagenet": "Mini-ImageNet"}


def config_name(table: str, row: str, column: str) -> str:
  """The experiment config file (without .py) of a cell."""
  if table == "1":
    return f"oml_sine_{column}" if row == "oml3" else f"sine_{row}_{column}"
  if row == "oml2":
    return f"oml_{column}"
  return f"{column}_{row}"


# Reduced scale: what changes (field -> value), per task family. Recorded in the results.
REDUCED = {
    "sine": {
        "net.widths": (64,) * 8, "sine.n_functions": 5, "sine.steps_per_function": 8,
        "sine.batch_size": 16, "sine.queries_per_function": 32, "sine.pool_size": 200,
        "meta.steps": 4000, "meta.lr.ff": 1e-3, "meta.lr.fb": 1e-3, "meta.lr.beta": 1e-3,
        "eval.lifetimes": 50, "checkpoint_every": 500, "log_every": 250,
    },
    "sine_gradient": {"meta.lr.ff": 1e-4},
    "fewshot": {
        "fewshot.image_size": 28, "net.strides": (2, 2, 2), "net.channels": 32, "net.hidden": 64,
        "meta.steps": 1500, "meta.lr.ff": 1e-3, "meta.lr.fb": 1e-3,
        "eval.lifetimes": 200, "eval.batch": 50, "checkpoint_every": 500, "log_every": 250,
    },
    "fewshot_flp": {"meta.lr.alpha_readout": 1e-2},
    "oml_fewshot": {"net.channels": 32, "net.hidden": 64},
}
# Plasticity meta-learning rates swept per network (B.1: orders of magnitude).
SWEEPS = {
    ("sine", "flp", "paper"): (1e-6, 1e-7, 1e-8, 1e-9),        # Table 3
    ("sine", "flp", "reduced"): (1e-6, 3e-7, 1e-7),
    ("sine", "gradient", "paper"): (1e-5, 1e-6, 1e-7),
    ("sine", "gradient", "reduced"): (1e-5, 1e-6, 1e-7),
    ("fewshot", "flp", "paper"): (1e-2, 1e-3, 1e-4, 1e-5),      # Table 4 (penultimate)
    ("fewshot", "flp", "reduced"): (1e-2, 1e-3),
    ("fewshot", "gradient", "paper"): (1e-3, 1e-4, 1e-5),
    ("fewshot", "gradient", "reduced"): (1e-3, 1e-4),
}

_TABLE = flags.DEFINE_enum("table", None, ["1", "2"], "Which table.")
_ROW = flags.DEFINE_string("row", None, "Row: " + ", ".join(ROW_NAMES))
_COLUMNS = flags.DEFINE_list("columns", None, "Columns of the row (default: all).")
_SCALE = flags.DEFINE_enum("scale", "reduced", ["paper", "reduced"], "Scale.")
_SEEDS = flags.DEFINE_integer("seeds", None, "Independent networks (default 2 / 5 as the paper).")
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
_PARAMS = flags.DEFINE_string(
    "params", None, "Fill the cell (one --columns entry) from stored meta-parameters "
    "(train.export_params, e.g. trained on a GPU) instead of training.")


def load_config(name: str):
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_file(os.path.join(REPO, "experiments", "configs", name + ".py"))


def family(config) -> str:
  return "sine" if config.task == "sine" else "fewshot"


def scaled(config, scale: str) -> tuple[object, dict]:
  """The config at ``scale`` and the dict of what was changed."""
  changes = {}
  if scale == "reduced":
    changes.update(REDUCED[family(config)])
    if config.task == "sine" and config.learner == "gradient":
      changes.update(REDUCED["sine_gradient"])
    if config.task != "sine" and config.learner == "flp":
      changes.update(REDUCED["fewshot_flp"])
    if config.task != "sine" and config.estimator == "oml":
      changes.update(REDUCED["oml_fewshot"])
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  for path, value in changes.items():
    config_lib.set_field(config, path, value)
  return config, changes


def summarize_result(result: dict) -> dict:
  """A cell's numbers from `train.train_and_evaluate`'s result.

  The mean and standard error are over the independently meta-trained
  networks (seeds). A network none of whose test lifetimes stays finite (its
  meta-training diverged) is counted in ``diverged_networks`` and left out of
  the mean, which is then over the others (with one network left, the standard
  error is over its lifetimes). A network with only some diverged test
  lifetimes enters with its mean over the finite ones; ``nonfinite_lifetimes``
  counts those lifetimes.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  metric = "mse" if "mse" in result else "error"
  runs = result.get("runs", [result])
  values, diverged, bad = [], 0, 0
  for r in runs:
    n_bad = r.get("nonfinite_lifetimes", 0)
    if n_bad >= r["lifetimes"] or not np.isfinite(r.get(f"{metric}_finite_mean", r[metric])):
      diverged += 1
      values.append(float("nan"))
    else:
      bad += n_bad
      values.append(float(r.get(f"{metric}_finite_mean", r[metric]) if n_bad else r[metric]))
  values = np.asarray(values, np.float64)
  ok = np.isfinite(values)
  out = {"status": "done", "metric": metric, "meta_steps": int(result["step"]),
         "lifetimes": result["lifetimes"], "per_seed": values.tolist(),
         "diverged_networks": diverged, "nonfinite_lifetimes": bad}
  if ok.sum() >= 2:
    out.update(mean=float(values[ok].mean()),
               stderr=float(values[ok].std(ddof=1) / np.sqrt(ok.sum())), stderr_over="seeds")
  elif ok.sum() == 1:
    r = runs[int(np.flatnonzero(ok)[0])]
    out.update(mean=float(values[ok][0]), stderr=r.get(f"{metric}_stderr"),
               stderr_over="lifetimes")
  else:
    out.update(mean=float("nan"), stderr=None, stderr_over="seeds")
  return out


def sweep_group(config) -> str:
  """The plasticity group swept: the readout's alone when only the readout is plastic."""
  if config.plastic_layers == 1 and config.meta.lr.alpha_readout is not None:
    return "alpha_readout"
  return "alpha"


def _json(path, default=None):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return default


def run_cell(table: str, row: str, column: str, *, scale: str, seeds: int, sweep: bool,
             root: str, data_dir: str = "") -> dict:
  """Trains (or resumes) and evaluates one cell; returns its result record."""
  import jax  # pylint: disable=g-import-not-at-top
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from flpjax import datasets, train  # pylint: disable=g-import-not-at-top

  name = config_name(table, row, column)
  config, changes = scaled(load_config(name), scale)
  if data_dir:
    config.fewshot.data_dir = data_dir
  cell_dir = os.path.join(root, f"table{table}", scale, f"{row}_{column}")
  os.makedirs(cell_dir, exist_ok=True)
  clock = _json(os.path.join(cell_dir, "wall.json"), {"wall_s": 0.0})
  t0 = time.time()
  record = {"table": table, "row": row, "column": column, "config": name, "scale": scale,
            "reduced": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
            "seeds": seeds, "workdir": os.path.relpath(cell_dir, REPO)}
  try:
    chosen = None
    if sweep and config.estimator != "oml":
      group = sweep_group(config)
      lrs = SWEEPS[(family(config), config.learner, scale)]
      sc = config.copy_and_resolve_references()
      sc.runs, sc.sweep.group, sc.sweep.lrs = len(lrs), group, tuple(lrs)
      if config.task == "omniglot":
        sc.fewshot.validation_classes = 100  # held out of the sweep's meta-training
      logging.info("%s: sweeping %s over %s", name, group, lrs)
      swept = train.train_and_evaluate(sc, os.path.join(cell_dir, "sweep"))["sweep"]
      chosen = swept["best_lr"]
      if chosen is None:
        raise RuntimeError(f"every swept rate diverged: {swept}")
      config.meta.lr[group] = chosen
      record["sweep"] = swept
    config.runs = seeds
    if row.startswith("grad"):  # B.2: initialise from the FLP network of the same column
      source = os.path.join(root, f"table{table}", scale,
                            f"{'flp3' if table == '1' else 'flp2'}_{column}", "final")
      if os.path.isdir(os.path.join(source, "checkpoints")):
        config.init_ff_from = source
        record["init_ff_from"] = os.path.relpath(source, REPO)
    result = train.train_and_evaluate(config, os.path.join(cell_dir, "final"))
  except (datasets.DataError, config_lib.ConfigError, FileNotFoundError) as e:
    record.update({"status": "not run", "reason": str(e).splitlines()[0]})
    return record
  clock["wall_s"] += time.time() - t0
  summary.write_json(os.path.join(cell_dir, "wall.json"), clock)
  record.update(summarize_result(result))
  record.update({"device": jax.devices()[0].device_kind, "cpu_or_gpu": summary.device_name(),
                 "wall_s": round(clock["wall_s"], 1), "chosen_plasticity_lr": chosen})
  return record


def section71(scale: str, root: str, results_dir: str) -> dict:
  """Section 7.1 from the stored feature-reuse continual cell; writes results/section71.json."""
  from flpjax import train  # pylint: disable=g-import-not-at-top
  source = os.path.join(root, "table1", scale, "reuse1_continual", "final")
  flp3 = _json(os.path.join(results_dir, "table1", "flp3.json"), {}).get(scale, {}).get("continual")
  reuse = _json(os.path.join(results_dir, "table1", "reuse1.json"), {}).get(scale, {}).get("continual")
  if not (os.path.isdir(source) and flp3 and reuse):
    sys.exit(f"error: run the feature reuse (1) and FLP (3) continual cells at {scale} scale first")
  config, changes = scaled(load_config("sine_section71_continual"), scale)
  config.meta.lr.ff = 0.0
  config.extend_from = source
  config.runs = len(reuse["per_seed"])
  if flp3.get("chosen_plasticity_lr"):
    config.meta.lr.alpha = flp3["chosen_plasticity_lr"]
  t0 = time.time()
  result = train.train_and_evaluate(config, os.path.join(root, "table1", scale, "section71"))
  record = {"scale": scale, "reduced": {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in changes.items() if k != "meta.lr.ff"},
            "meta_steps": int(result["step"]), "seeds": config.runs,
            "plasticity_lr": config.meta.lr.alpha, "device": summary.device_name(),
            "wall_s": round(time.time() - t0, 1),
            "extended": summarize_result(result),
            "feature_reuse": reuse, "flp3": flp3}
  summary.write_json(os.path.join(results_dir, "section71.json"), record)
  return record


def cell_from_params(table: str, row: str, column: str, path: str, scale: str,
                     data_dir: str = "") -> dict:
  """A cell's record from meta-parameters stored by `train.export_params` (no training)."""
  import jax  # pylint: disable=g-import-not-at-top
  from flpjax import train  # pylint: disable=g-import-not-at-top
  config, params, step = train.load_params_file(path)
  if data_dir:
    config.fewshot.data_dir = data_dir
  if _EVAL_BATCH.value:
    config.eval.batch = _EVAL_BATCH.value
  info = _json(path + ".json", {})
  t0 = time.time()
  result = train.evaluate_params(config, params)
  metric = "mse" if "mse" in result else "error"
  target = load_config(config_name(table, row, column)).meta.steps
  note = f"meta-parameters from {os.path.relpath(path, REPO)}"
  if step < target:
    note += f"; partial: {step} of {target} meta-steps"
  return {"table": table, "row": row, "column": column, "config": config_name(table, row, column),
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


def _compare(ra: dict, rb: dict) -> tuple[str, float, float]:
  """Whether ``ra``'s mean is below ``rb``'s by at least 2 standard errors.

  Returns the verdict, the gap ``rb - ra`` and the standard error of the gap.
  """
  gap = rb["mean"] - ra["mean"]
  se = ((ra.get("stderr") or 0) ** 2 + (rb.get("stderr") or 0) ** 2) ** 0.5
  if se > 0 and abs(gap) < 2 * se:
    return "not resolved: the two are within 2 standard errors", gap, se
  return ("holds" if gap > 0 else "does not hold"), gap, se


def _claims(results) -> list[str]:
  lines = []
  checks = [
      ("FLP (3) below feature reuse (1) on continual sine", ("1", "flp3", "continual"),
       ("1", "reuse1", "continual")),
      ("FLP (3) below gradient-based (3) on continual sine", ("1", "flp3", "continual"),
       ("1", "grad3", "continual")),
      ("FLP (2) below gradient-based (3) on continual sine", ("1", "flp2", "continual"),
       ("1", "grad3", "continual")),
      ("FLP (2) below feature reuse (1) on Omniglot", ("2", "flp2", "omniglot"),
       ("2", "reuse1", "omniglot")),
  ]
  for scale in ("reduced", "paper"):
    for text, a, b in checks:
      ra, rb = results.get(a + (scale,)), results.get(b + (scale,))
      if not (ra and rb and ra.get("status") == "done" and rb.get("status") == "done"):
        continue
      verdict, gap, se = _compare(ra, rb)
      m = ra["metric"]
      lines.append(
          f"* {scale} scale: {text}: **{verdict}** ({_fmt(ra['mean'], m)} vs {_fmt(rb['mean'], m)}"
          + (f"; difference {gap / se:.1f} standard errors" if se > 0 else "") + ").")
  return lines


def write_results_md(results_dir: str) -> str:
  """Regenerates ``results/RESULTS.md`` from the stored results; returns its path."""
  results = load_results(results_dir)
  out = ["# Tables 1 and 2: the paper's values and this code's", "",
         "Generated by `python experiments/reproduce.py` from `results/table*/*.json` (each",
         "cell's JSON has the seeds, meta-steps, device, wall time and per-seed values).",
         "Ours: mean (standard error over independently meta-trained networks) [scale,",
         "seeds, meta-steps, device]. The paper's values average 2 (regression) or 5",
         "(classification) networks. Reduced-scale cells are small CPU runs: they check the",
         "qualitative claims, not the paper's numbers (see \"What reduced means\").", ""]
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
        for scale in ("paper", "reduced"):
          r = results.get((table, row, column, scale))
          if not r:
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
                         if r.get("nonfinite_lifetimes") else ""))
        cells += [_paper(table, row, column), "<br>".join(ours) or "not yet run"]
      out.append(f"| {ROW_NAMES[row]} | " + " | ".join(cells) + " |")
    out.append("")
  s71 = _json(os.path.join(results_dir, "section71.json"))
  claims = _claims(results)
  if claims:
    out += ["## The paper's qualitative claims, as measured here", ""] + claims + [""]
  if s71:
    def f(d):
      text = f"{d['mean']:.3g} ({d['stderr']:.2g})"
      if d.get("diverged_networks"):
        text += f", {d['diverged_networks']} of {len(d['per_seed'])} networks diverged"
      return text

    out += ["## Section 7.1: feature-reuse initialisation, then FLP", "",
            f"Continual sine, {s71['scale']} scale, {s71['seeds']} networks, "
            f"{s71['meta_steps']} more meta-steps (`python experiments/reproduce.py --section71`): "
            f"FLP (3) started from the feature-reuse networks with their feed-forward "
            f"initialisation frozen reaches MSE {f(s71['extended'])}, against {f(s71['feature_reuse'])} "
            f"for feature reuse (1) and {f(s71['flp3'])} for FLP (3) meta-trained from scratch. "
            "The paper reports that this procedure does not improve on feature reuse. Here, "
            "below feature reuse: **" + _compare(s71["extended"], s71["feature_reuse"])[0]
            + "**; FLP (3) from scratch below it: **"
            + _compare(s71["flp3"], s71["extended"])[0] + "**.", ""]
  out += ["## What reduced means", "",
          "Reduced-scale cells change these config fields (the rest is the paper's row):", ""]
  for fam, changes in REDUCED.items():
    out.append(f"* `{fam}`: " + ", ".join(f"`{k}={v}`" for k, v in changes.items()))
  out += ["", "Plasticity meta-learning rates are chosen per network by a sweep on held-out",
          "functions / validation classes (never the meta-test classes): "
          + "; ".join(f"{f} {l} {s}: {v}" for (f, l, s), v in SWEEPS.items() if s == "reduced")
          + ". The chosen rate is in each cell's JSON.", ""]
  path = os.path.join(results_dir, "RESULTS.md")
  os.makedirs(results_dir, exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(out))
  return path


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  summary.quiet_libraries()
  if _TABLES_ONLY.value:
    print(write_results_md(_RESULTS.value))
    return
  if _SECTION71.value:
    section71(_SCALE.value, _ROOT.value, _RESULTS.value)
    print(write_results_md(_RESULTS.value))
    return
  table, row = _TABLE.value, _ROW.value
  if table is None or row is None:
    sys.exit("error: --table and --row are required (or --tables_only)")
  if row not in PAPER[table]:
    sys.exit(f"error: --row={row}: expected one of {', '.join(PAPER[table])} for table {table}")
  columns = _COLUMNS.value or list(COLUMNS[table])
  bad = [c for c in columns if c not in COLUMNS[table]]
  if bad:
    sys.exit(f"error: --columns={','.join(bad)}: expected some of {', '.join(COLUMNS[table])}")
  seeds = _SEEDS.value or (2 if table == "1" else 5)
  if seeds < 1:
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
    print(write_results_md(_RESULTS.value))
    return
  for column in columns:
    record = run_cell(table, row, column, scale=_SCALE.value, seeds=seeds, sweep=sweep,
                      root=_ROOT.value, data_dir=_DATA_DIR.value)
    data = _json(path, {})
    data.setdefault(_SCALE.value, {})[column] = record
    summary.write_json(path, data)
    logging.info("%s %s %s: %s", table, row, column, record.get("mean", record.get("reason")))
  print(write_results_md(_RESULTS.value))


if __name__ == "__main__":
  app.run(main)
