"""Beyond the paper: feedback alignment, learned rules, plastic feedback, longer lifetimes.

`run` trains (or resumes), in this process, the mini-scale cells of `BEYOND_CELLS`
(rows of ``experiments/configs/sine.py`` and ``fewshot.py``), then evaluates the
continual sine cells on lifetimes longer than trained through
``experiments/longer_lifetimes.py`` in a subprocess (its evaluation lives in that
binary, which the library does not import, and its JSON records the command), and
stores the learned rules' coefficients. `markdown` is RESULTS.md's "Beyond the paper"
section, with the long-lifetime meta-training of
``experiments/long_lifetimes_training.py`` (`long_training_lines`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from flpjax.reporting import statistics
from flpjax.reporting.metrics import read_json, write_json
from flpjax.reproduction import cells, paper_claims

#: The beyond-the-paper cells at the mini scale: Figure 1's feedback-alignment learners.
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
#: The sine cells evaluated on lifetimes longer than trained.
LONGER_LIFETIME_ROWS = ("flp3", "grad3", "dfa3", "fa3")


def beyond_dir(results_dir: str) -> str:
  """``<results_dir>/beyond``: the experiments' JSONs."""
  return os.path.join(results_dir, "beyond")


def learned_coefficients(root: str, scale: str = "mini") -> dict:
  """``{row: {layer: [mean, stderr] per coefficient}}`` of the learned-rule cells'
  networks (the hebbian rule's (c_hebb, c_pre, c_post, c_decay, c_w, c_0))."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from flpjax import train  # pylint: disable=g-import-not-at-top
  out = {}
  for table, row, column in (("1", "rule3", "continual"), ("1", "rule3r", "continual"),
                             ("2", "rule2", "omniglot"), ("2", "rule2r", "omniglot")):
    workdir = cells.final_workdir(root, table, scale, row, column)
    if not cells.trained(workdir):
      continue
    config, params, step = train.load_run(workdir)
    out[row] = {"meta_steps": step, "layers": {}}
    for layer, coef in params["rule"].items():
      c = np.asarray(coef, np.float64).reshape(config.runs, -1)
      out[row]["layers"][layer] = {"mean": c.mean(0).tolist(),
                                   "stderr": (c.std(0, ddof=1) / np.sqrt(len(c))).tolist()}
  return out


def run(root: str, results_dir: str, scale: str = "mini",
        overrides: Mapping[str, Any] | None = None) -> None:
  """Runs (or resumes) `BEYOND_CELLS`, then the longer-lifetime evaluation of the continual
  cells, and stores the learned rules' coefficients (RESULTS.md is the caller's).

  Raises:
    cells.ReproductionError: data missing, or the longer-lifetime evaluation failed.
  """
  missing = cells.missing_data(BEYOND_CELLS)
  if missing:
    raise cells.ReproductionError("--beyond needs " + "; ".join(missing) + " (see README, Data)")
  for table, row, column in BEYOND_CELLS:
    if cells.cell_done(results_dir, table, row, column, scale):
      continue
    print(f"[beyond] table {table} {row} {column}", flush=True)
    cells.store_cells(results_dir, cells.run_cell(table, row, column, scale=scale, seeds=None,
                                                  sweep=False, root=root, overrides=overrides))
  dirs = [cells.final_workdir(root, "1", scale, row, "continual") for row in LONGER_LIFETIME_ROWS]
  rel = lambda p: (p if os.path.relpath(p, cells.REPO).startswith("..")
                   else os.path.relpath(p, cells.REPO))
  dirs = [rel(os.path.abspath(d)) for d in dirs if cells.trained(d)]
  out = rel(os.path.abspath(os.path.join(beyond_dir(results_dir), "longer_lifetimes.json")))
  cmd = [sys.executable, os.path.join("experiments", "longer_lifetimes.py"),
         "--workdirs=" + ",".join(dirs), "--factors=1,2,5,10", f"--output={out}"]
  if subprocess.run(cmd, check=False, cwd=cells.REPO).returncode:
    raise cells.ReproductionError(f"{' '.join(cmd)} failed")
  write_json(os.path.join(beyond_dir(results_dir), "learned_rules.json"),
             learned_coefficients(root, scale))


#: Config fields that differ between rows by design (not between scales).
_ROW_FIELDS = ("learner", "plastic_layers", "flp.", "gradient.", "alignment.", "learned_rule.",
               "plastic_feedback.", "meta.lr.", "meta.nonnegative", "estimator", "oml.",
               "seed", "runs", "meta.ff_")


def recounted(record: dict, results: Mapping, scale: str) -> dict:
  """``record`` under the diverged-network rule (`statistics.network_values`).

  A record stored before the rule existed (no ``baselines``) is re-counted from its
  ``per_seed`` with the no-learning level of its column's current feature-reuse cell
  (the level depends only on the column's meta-test lifetimes, not on the row): its
  diverged networks named and left out of the mean, ``level_from`` saying so. A record
  with ``baselines``, or a column without a current cell, is returned as it is.
  """
  if record.get("baselines") or not record.get("per_seed"):
    return record
  ref = results.get((record.get("table"), "reuse1", record.get("column"), scale)) or {}
  if not ref.get("baselines"):
    return record
  name, level = next(iter(ref["baselines"].items()))
  metric = record.get("metric", "mse")
  runs = [{metric: None if v is None else float(v)} for v in record["per_seed"]]
  values, diverged = statistics.network_values({"runs": runs}, metric, level["mean"])
  stats = statistics.over_networks(values)
  return dict(record, per_seed=values, diverged=diverged, diverged_networks=len(diverged),
              mean=stats["mean"], stderr=stats["stderr"], networks=stats["networks"],
              baselines=ref["baselines"],
              level_from=f"the no-learning level ({name}) of the current feature-reuse cell")


def claim_line(text: str, kind: str, ra: dict, rb: dict, scale: str) -> str:
  """``* text: **holds|fails** (a vs b; reason)`` with the one claim rule
  (`statistics.decide`); the control is ``b``, which must learn."""
  differ = sorted(k for k in set(ra.get("reduced", {})) & set(rb.get("reduced", {}))
                  if ra["reduced"][k] != rb["reduced"][k] and not k.startswith(_ROW_FIELDS))
  if differ:  # e.g. a cell of an earlier miniature against one of the current miniature
    return (f"* {text}: not compared: the two cells were meta-trained with different "
            f"settings ({', '.join(differ)}); rerun the older one.")
  r = statistics.decide("beyond", text, kind, paper_claims.cell_stats(ra),
                        paper_claims.cell_stats(rb), scale=scale,
                        controls=[("b", paper_claims.cell_stats(rb), paper_claims.baseline(rb))])
  m = ra.get("metric", "mse")
  fmt = cells.format_value
  return f"* {text}: **{r['verdict']}** ({fmt(ra['mean'], m)} vs {fmt(rb['mean'], m)}; {r['reason']})."


def markdown(results_dir: str, scale: str = "mini") -> list[str]:
  """RESULTS.md's "Beyond the paper" section from the stored cells and experiments."""
  fmt = cells.format_value
  results = cells.load_results(results_dir)
  done = [(c, results.get(c + (scale,))) for c in BEYOND_CELLS]
  done = [(c, recounted(r, results, scale)) for c, r in done if r and r.get("status") == "done"]
  results = {**results, **{c + (scale,): r for c, r in done}}
  longer = read_json(os.path.join(beyond_dir(results_dir), "longer_lifetimes.json"))
  if not done and not longer:
    return []
  out = ["## Beyond the paper", "",
         (f"Each question is a claim decided at 2 standard errors over independently "
         f"meta-trained networks, at the {scale} scale, on the dev CPU. Cells meta-trained "
         "before the miniature was recalibrated (their config differs from the current "
         "mini rows', e.g. in `sine.steps_per_function`) are listed with their numbers but "
         "not compared with the current rows (`python experiments/reproduce.py --scale=mini "
         "--beyond` reruns them)."), ""]
  if done:
    out += ["### Feedback alignment, learned rules, plastic feedback", "",
            ("`python experiments/reproduce.py --scale=mini --beyond` (rows of "
            "`experiments/configs/sine.py` and `fewshot.py`: `dfa3`/`dfa2`, `fa3`/`fa2`, "
            "Figure 1's learners, inner SGD along the error sent through fixed random "
            "feedback, directly or layer by layer, at the gradient row's inner rate; "
            "`rule3`/`rule2`, FLP with a generalised Hebbian rule per layer meta-learned from "
            "Oja's coefficients, `rule3r`/`rule2r` from random ones, `rule3m`/`rule2m` a small "
            "MLP rule per layer (2 hidden units at this scale, `MINI_MLP_HIDDEN`); "
            "`pfb3`/`pfb2`, FLP whose feedback weights learn within the lifetime at a "
            "meta-learned rate, `pfb3h` also from the next "
            "plastic layer's activity; all meta-trained from scratch as the other rows of "
            "their table, at the mini scale):"), ""]
    for (_, row, column), r in done:
      m = r["metric"]
      out.append(f"* {cells.ROW_NAMES[row]}, {cells.COLUMN_NAMES[column]}: "
                 f"{'MSE' if m == 'mse' else 'error (%)'} {fmt(r['mean'], m)} "
                 f"({fmt(r['stderr'], m)}), "
                 + (f"over {r['networks']} of {r['seeds']} networks"
                    if r.get("diverged_networks") and r.get("networks") is not None
                    else f"{r['seeds']} networks") + f", {r['meta_steps']} steps"
                 + (f", {r['diverged_networks']} diverged (networks "
                    + ", ".join(str(d["network"]) for d in r.get("diverged") or [])
                    + "; left out of the mean"
                    + (f"; re-counted with {r['level_from']}" if r.get("level_from") else "")
                    + ")" if r.get("diverged_networks") else ""))
    out.append("")
    for text, kind, a, b in BEYOND_CLAIMS:
      ra, rb = results.get(a + (scale,)), results.get(b + (scale,))
      if ra and rb and ra.get("status") == "done" and rb.get("status") == "done":
        out.append(claim_line(text, kind, ra, rb, scale))
    out.append("")
  rules = read_json(os.path.join(beyond_dir(results_dir), "learned_rules.json"), {})
  if rules:
    out += [("Learned coefficients (the rule `dw = alpha * sum_b (c_hebb post pre + c_pre pre + "
            "c_post post + c_decay post^2 w + c_w w + c_0)`; Oja is (1, 0, 0, -1, 0, 0)), "
            "mean (standard error) over the networks, per plastic layer:"), ""]
    for row, rec in rules.items():
      for layer, c in rec["layers"].items():
        out.append(f"* {cells.ROW_NAMES[row]}, layer {layer}: "
                   + ", ".join(f"{m:.3g} ({e:.2g})" for m, e in zip(c["mean"], c["stderr"])))
    out.append("")
  if longer:
    out += ["### Lifetimes longer than trained", "",
            (f"`{longer['command']}`: every network of each cell evaluated on lifetimes of "
            f"k x T steps (each function shown k times as many batches), k in "
            f"{longer['factors']}, {longer['lifetimes']} lifetimes each; MSE mean (standard "
            "error over networks):"), ""]
    for row in longer["rows"]:
      values = ", ".join(_mse_over_networks(f"{k}T", v) for k, v in row["summary"].items())
      out.append(f"* {row['learner']} ({row['plastic_layers']}), {row['order']}: {values}")
    out.append("")
    for c in longer["claims"]:
      out.append(f"* {c['claim']}: **{c['verdict']}**.")
    out.append("")
  return out + long_training_lines(results_dir)


def _mse_over_networks(name: str, stats: dict) -> str:
  """``'10T: 0.67 (0.088), 2 diverged'`` from `aggregate.over_networks`' record."""
  return (f"{name}: {cells.format_value(stats['mean'], 'mse')} "
          f"({cells.format_value(stats['stderr'], 'mse')})"
          + (f", {stats['diverged']} diverged" if stats["diverged"] else ""))


def long_training_lines(results_dir: str) -> list[str]:
  """RESULTS.md's memory-against-lifetime table and the long-lifetime meta-training claims
  (``experiments/long_lifetimes_training.py``)."""
  data = read_json(os.path.join(beyond_dir(results_dir), "long_lifetimes_training.json"))
  if not data:
    return []
  out = ["### Meta-training on lifetimes longer than full backprop fits", "",
         f"`{data['command']}` ({data['device']}).", ""]
  if data.get("memory"):
    out += [("Memory of one meta-step of FLP (3) (XLA's account of the compiled program: "
            "temporaries, arguments and outputs), MB, against the lifetime k T:"), "",
            "| network | T | " + " | ".join(f"{r['factor']}T" for r in
                                             next(iter(data["memory"].values()))) + " |",
            "|---|---|" + "---|" * len(next(iter(data["memory"].values())))]
    for scale, rows in data["memory"].items():
      for estimator in ("full", "truncated"):
        name = ("full backprop" if estimator == "full"
                else "truncated backprop (window T)")
        values = [f"{r[estimator]['total'] / 2**20:.0f}"
                  + (" (refused by the config check)" if r.get(f"{estimator}_refused") else "")
                  for r in rows]
        out.append(f"| {scale}, {name} | {rows[0]['T']} | " + " | ".join(values) + " |")
    out.append("")
  train = data.get("train")
  if train:
    k = f"{train['factor']}T"
    out += [(f"Networks meta-trained on T-step lifetimes and on {k}-step ones (continual sine, "
            f"mini scale, truncated backprop with a T-step window for 4,000 meta-steps, or full "
            f"backprop for 400, the same number of lifetime steps), each evaluated on "
            f"{train['lifetimes']} lifetimes of T and {k} steps; MSE mean (standard error "
            "over networks):"), ""]
    for r in train["rows"]:
      values = ", ".join(_mse_over_networks(name, r[name]) for name in ("T", k))
      out.append(f"* {cells.ROW_NAMES[r['row']]}, {r['variant']}: {values}")
    out.append("")
    out += [f"* {c['claim']}: **{c['verdict']}**." for c in train["claims"]] + [""]
  return out
