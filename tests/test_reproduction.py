"""flpjax/reproduction: workdirs, the protocol's rules, plans, records and RESULTS.md."""

import json
import os
import pathlib
import re

import pytest

from flpjax.reproduction import beyond, cells, jobs, results_md, section71


def _record(table, row, column, mean, scale="mini", **extra):
  return dict({"table": table, "row": row, "column": column, "scale": scale, "status": "done",
               "metric": "mse" if table == "1" else "error", "mean": mean, "stderr": 0.01,
               "seeds": 2, "meta_steps": 40, "device": "cpu", "cpu_or_gpu": "test cpu",
               "per_seed": [mean, mean], "networks": 2, "reduced": {},
               "baselines": {"family_mean": {"mean": 3.12, "stderr": 0.05}}}, **extra)


def test_a_cell_has_one_workdir_and_its_networks_are_under_final():
  assert cells.cell_workdir("w", "1", "mini", "flp3", "iid") == os.path.join(
      "w", "table1", "mini", "flp3_iid")
  assert cells.cell_workdir("w", "1", "mini", "section71") == os.path.join(
      "w", "table1", "mini", "section71")
  assert cells.final_workdir("w", "2", "paper", "flp2", "omniglot+omniglot_continual") == (
      os.path.join("w", "table2", "paper", "flp2_omniglot+omniglot_continual", "final"))


def test_gradient_rows_start_from_the_trained_flp_cell_of_their_column(tmp_path):
  root = str(tmp_path)
  assert cells.init_ff_from(root, "1", "mini", "grad3", "iid") is None  # FLP cell not trained
  os.makedirs(os.path.join(cells.final_workdir(root, "1", "mini", "flp3", "iid"), "checkpoints"))
  source = cells.init_ff_from(root, "1", "mini", "grad3", "iid")
  assert os.path.samefile(source, cells.final_workdir(root, "1", "mini", "flp3", "iid"))
  assert cells.init_ff_from(root, "1", "mini", "grad3", "continual") is None
  assert cells.init_ff_from(root, "1", "mini", "reuse1", "iid") is None  # not a gradient row
  assert cells.init_ff_from(root, "2", "mini", "grad2", "omniglot") is None  # flp2, not flp3


def test_overrides_are_applied_to_a_cell_config_and_a_bad_one_is_named():
  string = cells.config_string("1", "flp3", "continual", "mini")
  config = cells.load_config(string, {"meta.steps": 3, "net.widths": (8, 8, 8)})
  assert config.meta.steps == 3 and tuple(config.net.widths) == (8, 8, 8)
  assert cells.load_config(string).meta.steps != 3
  with pytest.raises(cells.ReproductionError, match="--config.meta.steps='many'"):
    cells.load_config(string, {"meta.steps": "many"})


def test_the_mini_plan_meets_every_dependency_and_cells_choose_from_it():
  plan = jobs.mini_plan()
  at = {cell: n for n, cell in enumerate(plan)}
  for column in cells.COLUMNS["1"]:
    assert at[("1", "flp3", column)] < at[("1", "grad3", column)]  # init_ff_from
  assert at[("1", "reuse1", "continual")] < at[("1", "section71", "continual")]
  assert at[("1", "flp3", "continual")] < at[("1", "figure2", "continual")]
  assert not any(c[2] == "mini_imagenet" for c in plan)  # jobs.MINI_DROPPED
  chosen = jobs.choose_cells(plan, ["1:section71:continual", "1:reuse1:continual"])
  assert chosen == [("1", "reuse1", "continual"), ("1", "section71", "continual")]
  with pytest.raises(cells.ReproductionError, match="--cells=1:flp4:iid: expected some of"):
    jobs.choose_cells(plan, ["1:flp4:iid"])


def test_paper_plan_takes_pairs_and_refuses_bad_cells():
  assert jobs.paper_plan(["1:flp3:iid+continual", "2:grad2:mini_imagenet"]) == [
      ("1", "flp3", "iid+continual"), ("2", "grad2", "mini_imagenet")]
  with pytest.raises(cells.ReproductionError, match="expected table:row:column"):
    jobs.paper_plan(["1:flp2x:iid"])
  with pytest.raises(cells.ReproductionError, match=re.escape("column 'iid+sorted'")):
    jobs.paper_plan(["1:flp3:iid+sorted"])


def test_records_are_stored_by_scale_and_column_and_merged(tmp_path):
  source, target = str(tmp_path / "gpu"), str(tmp_path / "results")
  cells.store_cells(source, {"iid": _record("1", "flp3", "iid", 0.1, "paper"),
                             "continual": _record("1", "flp3", "continual", 0.2, "paper")})
  cells.store_cells(target, {"iid": _record("1", "flp3", "iid", 0.3, "mini")})
  assert jobs.merge_results(source, target) == ["1:flp3:iid (paper)", "1:flp3:continual (paper)"]
  stored = cells.load_results(target)
  assert set(stored) == {("1", "flp3", "iid", "mini"), ("1", "flp3", "iid", "paper"),
                         ("1", "flp3", "continual", "paper")}
  assert stored[("1", "flp3", "continual", "paper")]["mean"] == 0.2


def test_a_cell_is_done_only_with_the_config_its_scale_has_now(tmp_path):
  results = str(tmp_path)
  now = json.loads(json.dumps(cells.reduced_changes("1", "flp3", "continual", "mini")))
  cells.store_cells(results, {"continual": _record("1", "flp3", "continual", 0.1, reduced=now)})
  assert cells.cell_done(results, "1", "flp3", "continual", "mini")["mean"] == 0.1
  assert jobs.done(results, "1", "flp3", "continual", "mini")
  cells.store_cells(results, {"continual": _record("1", "flp3", "continual", 0.1,
                                                   reduced=dict(now, **{"meta.steps": 1}))})
  assert cells.cell_done(results, "1", "flp3", "continual", "mini") is None
  assert jobs.done(results, "1", "section71", "continual", "mini") is None


def test_results_md_from_a_fabricated_results_dir(tmp_path):
  results = str(tmp_path)
  for row, mean in (("flp3", 0.01), ("reuse1", 1.0), ("dfa3", 0.5)):
    cells.store_cells(results, {"continual": _record("1", row, "continual", mean)})
  cells.store_cells(results, {"omniglot": _record("2", "flp2", "omniglot", 0.04)})
  s71 = {"scale": "mini", "seeds": 2, "meta_steps": 40, "random_init": _record(
      "1", "section71", "continual", 0.2), "extended": _record("1", "section71", "continual", 0.9),
         "feature_reuse": _record("1", "reuse1", "continual", 1.0),
         "flp3": _record("1", "flp3", "continual", 0.01)}
  with open(section71.section71_path(results, "mini"), "w") as f:
    json.dump(s71, f)
  text = pathlib.Path(results_md.write_results_md(results)).read_text()
  flp3 = next(l for l in text.splitlines() if l.startswith("| FLP (3) |"))
  assert "0.01 (0.01) [mini, 2 seeds, 40 steps, test cpu]" in flp3
  assert "| FLP (2) | 3 (0.1) | paper scale: not run: no GPU available<br>4 (1) [mini" in text
  assert "## Section 7.1 at the mini scale" in text and "reaches MSE 0.9 (0.01)" in text
  assert "## Beyond the paper" in text and "* DFA (3), Continual learning: MSE 0.5" in text
  assert "* FLP (3) below DFA (3) on continual sine: **holds**" in text
  assert "## What mini means" in text
  claims = {c["id"]: c for c in json.loads((tmp_path / "claims.json").read_text())}
  assert claims["flp3_below_reuse1_continual_sine"]["verdict"] == "holds"
  assert beyond.markdown(str(tmp_path / "empty")) == []


def _section71_inputs(tmp_path, monkeypatch):
  """A results dir with the feature-reuse and FLP (3) continual cells, their trained
  workdir (a checkpoint folder), and `train.train_and_evaluate` replaced by a recorder."""
  from flpjax import train  # pylint: disable=g-import-not-at-top
  from flpjax.experiment import aggregate  # pylint: disable=g-import-not-at-top
  results, root = str(tmp_path / "results"), str(tmp_path / "work")
  cells.store_cells(results, {"continual": _record(
      "1", "reuse1", "continual", 0.3, config=cells.config_string(
          "1", "reuse1", "continual", "mini", runs=2))})
  cells.store_cells(results, {"continual": _record("1", "flp3", "continual", 0.02)})
  source = cells.final_workdir(root, "1", "mini", "reuse1", "continual")
  os.makedirs(os.path.join(source, "checkpoints", "40"))
  pathlib.Path(source, "metrics.jsonl").write_text('{"step": 40}\n')
  calls = []

  def fake_train(config, workdir):
    calls.append((os.path.basename(workdir), config))
    return {"step": config.meta.steps}

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  monkeypatch.setattr(aggregate, "no_learning", lambda config: {})
  monkeypatch.setattr(cells, "summarize_result",
                      lambda result, levels: {"meta_steps": result["step"], "mean": 0.1})
  return results, root, calls


def test_section71_has_an_equal_steps_control_and_resumes_part_by_part(tmp_path, monkeypatch):
  results, root, calls = _section71_inputs(tmp_path, monkeypatch)
  record = section71.run("mini", root, results, {"meta.steps": 40})
  assert [name for name, _ in calls] == ["section71", "section71_reuse_equal_steps",
                                         "section71_random"]
  extended, equal, random_init = (config for _, config in calls)
  assert extended.extend_from and not random_init.extend_from
  # The control: the feature-reuse networks (their workdir copied), as many more steps.
  assert equal.learner == "flp" and equal.meta.steps == 40 + 40 and not equal.extend_from
  assert os.path.isfile(os.path.join(root, "table1", "mini", "section71_reuse_equal_steps",
                                     "metrics.jsonl"))
  assert record["reuse_equal_steps"]["meta_steps"] == 80
  assert record["equal_steps_config"].endswith("runs=2 --config.meta.steps=80")
  assert section71.done(results, "mini") == json.loads(json.dumps(record))
  # Stopped before its last part: only that part trains again.
  stored = json.loads(pathlib.Path(section71.section71_path(results, "mini")).read_text())
  del stored["random_init"]
  pathlib.Path(section71.section71_path(results, "mini")).write_text(json.dumps(stored))
  assert section71.done(results, "mini") is None
  calls.clear()
  section71.run("mini", root, results, {"meta.steps": 40})
  assert [name for name, _ in calls] == ["section71_random"]
  # Other overrides (another set of seeds): every part trains again.
  calls.clear()
  section71.run("mini", root, results, {"meta.steps": 40, "seed": 100})
  assert len(calls) == 3


def test_section71_claim_is_decided_against_the_equal_steps_control(tmp_path):
  results = str(tmp_path)
  s71 = {"scale": "mini", "seeds": 2, "meta_steps": 40,
         "extended": _record("1", "section71", "continual", 0.5),
         "reuse_equal_steps": _record("1", "reuse1", "continual", 0.5),
         "random_init": _record("1", "section71", "continual", 3.0),
         "feature_reuse": _record("1", "reuse1", "continual", 1.0),
         "flp3": _record("1", "flp3", "continual", 0.01)}
  path = pathlib.Path(section71.section71_path(results, "mini"))
  path.write_text(json.dumps(s71))
  from flpjax.reproduction import paper_claims  # pylint: disable=g-import-not-at-top
  claim = paper_claims.section71_claims(results, "mini")[0]
  assert claim["b"] == 0.5 and "as many meta-steps" in claim["claim"]
  assert claim["verdict"] == "holds"  # 0.5 is not below 0.5
  # Against the 40-step feature-reuse cell alone (a record without the control) it fails.
  del s71["reuse_equal_steps"]
  path.write_text(json.dumps(s71))
  claim = paper_claims.section71_claims(results, "mini")[0]
  assert claim["b"] == 1.0 and claim["verdict"] == "fails" and "fewer meta-steps" in claim[
      "claim"]
  text = pathlib.Path(results_md.write_results_md(results)).read_text()
  assert "## Section 7.1 at the mini scale" in text and "as many" not in text


def test_figure_claims_keep_the_papers_panels_per_order_with_periodicity_against_iid(tmp_path):
  from flpjax.reproduction import figure2, paper_claims  # pylint: disable=g-import-not-at-top
  results = str(tmp_path)
  os.makedirs(os.path.join(results, "figures_mini", "iid"))
  periodic = lambda m: {"panel": "C", "claim": "repeats with the functions", "verdict": (
      "holds" if m > 0.5 else "fails"), "periodic": {"mean": m, "stderr": 0.05, "networks": 6}}
  for order, sub, m in (("continual", (), 0.7), ("iid", ("iid",), 0.0)):
    trends = [{"panel": p, "claim": f"panel {p}", "verdict": "holds"} for p in "ABCD"]
    with open(os.path.join(results, "figures_mini", *sub, "figure2.json"), "w") as f:
      json.dump({"trends": trends + [periodic(m)]}, f)
  with open(os.path.join(results, "figures_mini", "done.json"), "w") as f:
    json.dump({"scale": "mini"}, f)
  claims = paper_claims.figure_claims(results, "mini")
  kept = [(c["cells"], c["claim"]) for c in claims]
  assert kept == [("continual", "panel A"), ("continual", "panel B"), ("continual", "panel C"),
                  ("continual", "repeats with the functions"), ("iid", "panel A"),
                  ("iid", "panel D")]
  assert all(c["panel"][-1].upper() in figure2.PAPER_PANELS[c["cells"]] for c in claims)
  rep = next(c for c in claims if c["claim"].startswith("repeats"))
  assert rep["verdict"] == "holds" and rep["reason"] == (
      "holds; per-network fraction 0.7 (0.05, 6 networks), i.i.d. cells (no function "
      "structure): 0 (0.05, 6 networks)")
  table = "\n".join(paper_claims.markdown(claims))
  assert "| repeats with the functions (Figure 2C, continual sine cells) | **holds** |" in table
  assert "| panel D (Figure 2D, i.i.d. sine cells) | **holds** |" in table


def test_a_record_from_before_the_divergence_rule_is_recounted_for_beyond(tmp_path):
  results = str(tmp_path)
  stale = _record("1", "dfa3", "continual", 2.5e26)
  stale.update(per_seed=[1e27, 1.0, 2.0, 1e15], seeds=4, diverged_networks=0)
  stale.pop("baselines", None)
  reuse = _record("1", "reuse1", "continual", 0.3)
  reuse["baselines"] = {"family_mean": {"mean": 3.0, "stderr": 0.1}}
  cells.store_cells(results, {"continual": stale})
  cells.store_cells(results, {"continual": reuse})
  loaded = cells.load_results(results)
  r = beyond.recounted(loaded[("1", "dfa3", "continual", "mini")], loaded, "mini")
  assert [d["network"] for d in r["diverged"]] == [0, 3] and r["diverged_networks"] == 2
  assert r["mean"] == 1.5 and r["networks"] == 2 and "feature-reuse cell" in r["level_from"]
  assert beyond.recounted(reuse, loaded, "mini") is reuse  # has its own baselines
  text = "\n".join(beyond.markdown(results))
  assert ("* DFA (3), Continual learning: MSE 1.5 (0.5), over 2 of 4 networks, 40 steps, "
          "2 diverged (networks 0, 3; left out of the mean; re-counted with") in text
