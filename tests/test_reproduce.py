"""experiments/reproduce.py and flpjax/reproduction end to end: cells, RESULTS.md, the jobs."""

import json
import math
import os
import sys

import pytest

from flpjax.reproduction import cells, results_md

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path):
  with open(path) as f:
    return json.load(f)


def _text(path):
  with open(path) as f:
    return f.read()


def _run(mse, lifetimes=10, nonfinite=0, finite_mean=None, stderr=0.1):
  r = {"mse": mse, "mse_stderr": stderr, "lifetimes": lifetimes, "nonfinite_lifetimes": nonfinite}
  if finite_mean is not None:
    r["mse_finite_mean"] = finite_mean
  return r


def test_every_cell_has_a_valid_config_string_at_both_scales():
  from flpjax import config as config_lib  # pylint: disable=g-import-not-at-top
  for table, rows in cells.PAPER.items():
    for row, columns in rows.items():
      assert set(columns) == set(cells.COLUMNS[table])
      for column in columns:
        for scale in ("paper", "reduced", "mini"):
          string = cells.config_string(table, row, column, scale, runs=2)
          assert string.startswith("experiments/configs/") and f"scale={scale}" in string
          config = cells.load_config(string)
          config_lib.validate(config)
          assert config.runs == 2, string
        changes = cells.reduced_changes(table, row, column)
        assert changes["meta.steps"] < (20000 if table == "1" else 40000), (table, row, column)
  string = cells.config_string("1", "grad3", "iid", "reduced", runs=2,
                                init_ff_from="workdirs/flp3_iid/final")
  assert string == ("experiments/configs/sine.py:row=grad3,order=iid,scale=reduced,runs=2,"
                    "init_ff_from=workdirs/flp3_iid/final")
  assert cells.load_config(string).init_ff_from == "workdirs/flp3_iid/final"
  string = cells.config_string("1", "flp3", "iid", "reduced", runs=2, plasticity_lr=1e-05)
  assert string.endswith(",runs=2,plasticity_lr=1e-05")
  assert cells.load_config(string).meta.lr.alpha == 1e-05
  # the gradient learner has no plasticity to set: one line, not a silently ignored value
  with pytest.raises(config_lib.ConfigError, match="no plasticity group"):
    cells.load_config(cells.config_string("1", "grad3", "iid", "reduced", plasticity_lr=1e-5))


def test_summary_mean_and_stderr_over_seeds():
  out = cells.summarize_result({"step": 7, "lifetimes": 10, "mse": 2.0,
                                    "runs": [_run(1.0), _run(3.0)]})
  assert out["mean"] == pytest.approx(2.0)
  assert out["stderr"] == pytest.approx(math.sqrt(2.0) / math.sqrt(2.0))
  assert out["stderr_over"] == "seeds"
  assert out["meta_steps"] == 7 and out["metric"] == "mse"
  assert out["diverged_networks"] == 0 and out["nonfinite_lifetimes"] == 0


def test_summary_names_diverged_networks_and_leaves_them_out():
  nan = float("nan")
  runs = [_run(1.0), _run(2.0),
          _run(nan, nonfinite=3, finite_mean=2.0),            # some lifetimes diverged
          _run(nan, nonfinite=10, finite_mean=nan),           # every lifetime diverged
          _run(40.0)]                                         # finite but exploded
  level = {"family_mean": {"mean": 3.12, "stderr": 0.1, "per_lifetime": None}}
  out = cells.summarize_result({"step": 1, "lifetimes": 10, "mse": nan, "runs": runs}, level)
  assert out["diverged_networks"] == 3 and [d["network"] for d in out["diverged"]] == [2, 3, 4]
  assert "10x" in out["diverged"][2]["why"]
  assert out["nonfinite_lifetimes"] == 13
  assert out["mean"] == pytest.approx(1.5) and out["stderr"] == pytest.approx(0.5)
  assert out["per_seed"][:2] == [1.0, 2.0] and all(math.isnan(v) for v in out["per_seed"][2:])
  assert out["baselines"] == {"family_mean": {"mean": 3.12, "stderr": 0.1}}
  one = cells.summarize_result({"step": 1, "lifetimes": 10, "mse": nan, "runs": runs[:1]})
  assert one["mean"] == 1.0 and one["stderr"] is None  # one network: no claim at 2 se


def test_results_md_fills_cells_and_checks_claims(tmp_path):
  def cell(row, column, mean, stderr):
    return {"table": "1", "row": row, "column": column, "scale": "reduced", "status": "done",
            "metric": "mse", "mean": mean, "stderr": stderr, "seeds": 2, "meta_steps": 40,
            "device": "cpu", "cpu_or_gpu": "test cpu", "per_seed": [mean, mean], "networks": 2,
            "baselines": {"family_mean": {"mean": 3.12, "stderr": 0.05}}}

  os.makedirs(tmp_path / "table1")
  for row, mean in (("flp3", 0.01), ("reuse1", 1.0)):
    with open(tmp_path / "table1" / f"{row}.json", "w") as f:
      json.dump({"reduced": {"continual": cell(row, "continual", mean, 0.01)}}, f)
  path = results_md.write_results_md(str(tmp_path))
  text = _text(path)
  assert "| FLP (3) below feature reuse (1) on continual sine | **holds** |" in text
  claims = _load(tmp_path / "claims.json")
  by_id = {c["id"]: c for c in claims}
  assert by_id["flp3_below_reuse1_continual_sine"]["verdict"] == "holds"
  assert by_id["flp3_below_grad3_continual_sine"]["reason"] == "not run"
  flp3_line = next(l for l in text.splitlines() if l.startswith("| FLP (3) |"))
  assert "0.01 (0.01) [reduced, 2 seeds, 40 steps" in flp3_line
  assert "paper scale: not run: no GPU available" in flp3_line  # the i.i.d. cell
  assert "| Gradient-based (2) | 3.2 (0.1) | paper scale: not run: no GPU available |" in text


TINY = ["--config.meta.steps=2", "--config.runs=2", "--config.eval.lifetimes=4",
        "--config.eval.batch=2", "--config.sine.n_functions=2",
        "--config.sine.steps_per_function=3", "--config.sine.batch_size=4",
        "--config.sine.queries_per_function=4", "--config.net.widths=(8,8,8)",
        "--config.net.channels=4", "--config.net.hidden=8", "--config.checkpoint_every=1",
        "--config.log_every=1", "--nofigures"]


def _reproduce(args, tmp_path, **env):
  import subprocess  # pylint: disable=g-import-not-at-top,multiple-imports
  import sys
  return subprocess.run(
      [sys.executable, "experiments/reproduce.py", "--scale=mini",
       f"--workdir_root={tmp_path / 'work'}", f"--results_dir={tmp_path / 'results'}"] + args,
      cwd=REPO, capture_output=True, text=True, check=False, env=dict(os.environ, **env))


def test_mini_pipeline_end_to_end_at_a_tiny_size_then_resumes(tmp_path):
  """reproduce.py --scale=mini: cells that depend on each other (section 7.1 on feature
  reuse, Figure 2 on the continual cells), RESULTS.md and the claims; a second call finds
  every cell done and trains nothing. (A Table 2 cell runs the same code with the
  few-shot config, which test_fewshot meta-trains; grad3's start from flp3 is
  test_runs' init_ff_from.)"""
  cells = ["1:reuse1:continual", "1:flp3:continual", "1:section71:continual",
           "1:figure2:continual"]
  args = ["--cells=" + ",".join(cells)] + TINY
  proc = _reproduce(args, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "ETA" in proc.stdout and f"{len(cells)}/{len(cells)} cells done" in proc.stdout
  assert "FLP (3) below feature reuse (1) on continual sine: " in proc.stdout
  claims = _load(tmp_path / "results" / "claims.json")
  assert {c["scale"] for c in claims} == {"mini"} and all(
      c["verdict"] in ("holds", "fails") for c in claims)
  assert "curve" in _load(tmp_path / "results" / "table1" / "reuse1.json")["mini"][
      "continual"]
  flp3 = _load(tmp_path / "results" / "table1" / "flp3.json")["mini"]["continual"]
  assert flp3["status"] == "done" and flp3["seeds"] == 2 and flp3["meta_steps"] == 2
  assert flp3["overrides"]["meta.steps"] == 2 and "net.widths" in flp3["reduced"]
  s71 = _load(tmp_path / "results" / "section71_mini.json")
  assert s71["scale"] == "mini" and s71["seeds"] == 2
  # The claim's control: the feature-reuse networks resumed for as many more meta-steps.
  assert s71["reuse_equal_steps"]["meta_steps"] == 2 + 2 and s71["random_init"]
  assert "as many meta-steps" in next(c["claim"] for c in claims
                                      if c["id"] == "section71_reuse_init_not_below_reuse1")
  text = _text(tmp_path / "results" / "RESULTS.md")
  assert "[mini, 2 seeds, 2 steps" in text
  fig = _load(tmp_path / "results" / "figures_mini" / "figure2.json")
  assert fig["scale"] == "mini" and len(fig["fig2a"]) == 4  # reuse1, flp3: 2 networks each
  assert {t["panel"] for t in fig["trends"]} >= {"A", "C"}
  assert "## Figure 2 at the mini scale" in text
  again = _reproduce(args, tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"{len(cells)} of {len(cells)} cells already done" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--cells=1:flp4:iid"], "--cells=1:flp4:iid: expected some of 1:reuse1:iid"),
    (["--cells=2:flp2:omniglot", "--data_dir=/nonexistent"],
     "omniglot split 'train' (/nonexistent"),
    (["--cells=2:flp2:mini_imagenet"], "--cells=2:flp2:mini_imagenet: expected some of"),
    (["--scale=tiny"], "--scale"),
])
def test_mini_bad_input_is_one_line_before_training(args, message, tmp_path):
  proc = _reproduce(args, tmp_path)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr[-2000:]
  assert not (tmp_path / "work").exists()


TINY_CELL = [t for t in TINY if not t.startswith("--config.runs=")]


def test_gpu_cells_trains_both_orders_as_one_program_within_its_budget(tmp_path):
  """experiments/gpu_cells.sh (the command of one GPU allocation), on the CPU at a tiny
  size: both columns of a row as one program, a record per column with its device, wall
  time and precision, the first network of each exported, then merged into results/."""
  import subprocess  # pylint: disable=g-import-not-at-top
  out = tmp_path / "out"
  proc = subprocess.run(
      ["bash", "experiments/gpu_cells.sh", "1:reuse1:iid+continual", "900", "--seeds=2"]
      + TINY_CELL, cwd=REPO, capture_output=True, text=True, check=False,
      env=dict(os.environ, OUT=str(out), WORKDIR_ROOT=str(tmp_path / "work"),
               PYTHON=sys.executable))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '"networks": 4' in proc.stdout  # the [budget] line: 2 seeds x 2 orders timed
  cells = _load(out / "results" / "table1" / "reuse1.json")["paper"]
  for column in ("iid", "continual"):
    r = cells[column]
    assert r["status"] == "done" and r["seeds"] == 2 and r["meta_steps"] == 2
    assert r["column"] == column and r["matmul_precision"] and r["wall_s"] > 0
    assert r["estimate_s"] > 0 and "both_orders=true" in r["config"]
    info = _load(out / "params" / f"table1_reuse1_{column}_paper.json")
    assert info["config"]["order"] == column and info["config"]["runs"] == 1
  assert cells["iid"]["per_seed"] != cells["continual"]["per_seed"]
  merged = subprocess.run(
      [sys.executable, "experiments/reproduce.py", f"--merge_from={out / 'results'}",
       f"--results_dir={tmp_path / 'results'}"], cwd=REPO, capture_output=True, text=True,
      check=False)
  assert merged.returncode == 0, merged.stderr[-2000:]
  assert "merged 1:reuse1:iid (paper), 1:reuse1:continual (paper)" in merged.stdout
  assert (tmp_path / "results" / "RESULTS.md").is_file()


@pytest.mark.parametrize("args, message", [
    (["--cells=1:flp4:iid", "--budget_s=60"], "--cells=1:flp4:iid: expected table:row:column"),
    (["--cells=1:flp3:iid+sorted", "--budget_s=60"], "column 'iid+sorted': expected one of"),
    (["--cells=1:flp3:iid", "--budget_s=0"], "--budget_s=0.0: expected a positive number"),
    (["--cells=1:flp3:iid", "--budget_s=60", "--config.meta.steps=10000000"] + TINY_CELL[1:],
     "--budget_s=60: the cells need about"),
])
def test_budget_refuses_bad_cells_and_what_cannot_finish_before_training(args, message,
                                                                         tmp_path):
  proc = _reproduce(["--scale=paper"] + args, tmp_path)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr[-2000:]
  assert "[budget] training" not in proc.stdout
  assert not (tmp_path / "results").exists()
