"""flpjax.plots: every figure of results/ drawn from a tiny results folder (no training)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from flpjax import plots
from flpjax.reporting import errors, metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"
STEPS, FUNCTIONS, NETS = 8, 4, 2
LAYERS = {"reuse1": [4], "flp3": [2, 3, 4], "grad3": [2, 3, 4]}


def _cell(row, column, mean, metric="mse", curve=False, **extra):
  rng = np.random.default_rng(len(row) + len(column))
  per = [mean * (1 + 0.1 * rng.standard_normal()) for _ in range(NETS)]
  cell = {"table": "1", "row": row, "column": column, "scale": "mini", "status": "done",
          "metric": metric, "mean": mean, "stderr": 0.1 * mean, "per_seed": per,
          "diverged_networks": 0, "meta_steps": 10, **extra}
  if curve:
    steps = [0, 5, 10]
    cell["curve"] = {"metric": metric, "split": "validation", "step": steps,
                     "networks": [[mean * (3 - i) * (1 + 0.05 * n) for i in range(3)]
                                  for n in range(NETS)],
                     # sine: the curve's own levels; few-shot: none (the cell's baselines)
                     **({"no_learning": {"family_mean": 3.0}} if metric == "mse" else {})}
  return cell


def _fig2(order):
  """A figure2.json of 2 networks of reuse1, flp3 (FLP) and grad3 (gradient-based)."""
  rng = np.random.default_rng(0)
  out = {"lifetimes": 3, "seed": 0, "runs": [], "fig2a": [], "fig2b": [], "fig2c": [],
         "fig2d": [], "scale": "mini", "order": order,
         "trends": [{"panel": "B", "claim": "FLP's interference is below the gradient-based "
                     "learner's", "flp": {"mean": 0.1, "stderr": 0.01, "networks": 2},
                     "gradient": {"mean": 0.3, "stderr": 0.02, "networks": 2},
                     "verdict": "holds"}]}
  for row, layers in LAYERS.items():
    learner = "gradient" if row.startswith("grad") else "flp"
    for net in range(NETS):
      base = {"workdir": f"w/{row}_{order}/final", "label": f"{row} net {net}", "network": net,
              "learner": learner, "plastic_layers": len(layers), "order": order}
      out["runs"].append(dict(base, task="sine", plastic_layer_ids=layers, step=10))
      if learner == "flp":
        learned, frozen = rng.uniform(0.05, 1.0, 3), rng.uniform(0.05, 1.0, 3)
        out["fig2a"].append(dict(base, metric="mse", readout_fit="least_squares",
                                 learned=list(learned), frozen=list(frozen),
                                 learned_mean=learned.mean(), frozen_mean=frozen.mean(),
                                 learned_stderr=0.1, frozen_stderr=0.1))
        out["fig2c"].append(dict(base, layers=layers,
                                 alignment=rng.uniform(-0.5, 1, (STEPS, len(layers))).tolist(),
                                 alignment_stderr=np.full((STEPS, len(layers)), 0.1).tolist()))
      out["fig2b"].append(dict(base, functions_encountered=list(range(2, FUNCTIONS + 1)),
                               interference=rng.uniform(0.01, 1, FUNCTIONS - 1).tolist(),
                               interference_stderr=[0.01] * (FUNCTIONS - 1)))
      norms = rng.uniform(1e-3, 1e-1, (STEPS, len(layers)))
      norms[0, 0] = None if net else norms[0, 0]  # a non-finite value stored as null
      out["fig2d"].append(dict(base, layers=layers, update_norm=norms.tolist(),
                               relative_update_norm=norms.tolist()))
  return out


CLAIMS = [
    {"id": "fig2b_interference", "scale": "mini", "panel": "fig2b", "kind": "below",
     "claim": "FLP's interference is below gradient-based", "a": 0.1, "b": 0.3, "se_a": 0.01,
     "se_b": 0.02, "networks_a": 2, "networks_b": 2, "diverged_a": 0, "diverged_b": 0,
     "verdict": "holds", "reason": ""},
    {"id": "flp3_below_reuse1", "scale": "mini", "panel": "table1", "kind": "below",
     "claim": "FLP (3) below feature reuse (1) on continual sine", "a": 0.04, "b": 3.1,
     "se_a": 0.003, "se_b": 0.2, "networks_a": 2, "networks_b": 2, "diverged_a": 0,
     "diverged_b": 0, "verdict": "holds", "reason": ""},
    {"id": "fig2a_frozen", "scale": "reduced", "panel": "fig2a", "kind": "below",
     "claim": "another scale's claim", "verdict": "fails"},
    {"id": "fig2c_continual_2", "scale": "mini", "panel": "fig2c", "kind": "trend",
     "claim": "the continual cells' panel C claim", "verdict": "holds", "reason": "holds"},
    {"id": "fig2c_iid_5", "scale": "mini", "panel": "fig2c", "kind": "trend",
     "claim": "the iid cells' panel C claim", "verdict": "fails", "reason": "fails"},
]


def _read(path):
  with open(path) as f:
    return json.load(f)


def _write(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(data, f)


def _results(r):
  """A results folder at ``r``: Tables 1-2 (curves, baselines, a diverged and an off-scale
  cell), Figure 2 (continual + iid), section 7.1 and claims.json."""
  t1 = {"reuse1": (3.0, 3.2), "flp3": (0.02, 0.04), "grad3": (0.04, 0.9)}
  for row, (iid, cont) in t1.items():
    extra = {"no_plasticity": {"mean": 6.0}} if row == "reuse1" else {}
    _write(r / "table1" / f"{row}.json", {"mini": {
        "iid": _cell(row, "iid", iid, curve=True,
                     baselines={"family_mean": {"mean": 3.0, "stderr": 0.1}}, **extra),
        "continual": _cell(row, "continual", cont, curve=row != "grad3",
                           diverged_networks=int(row == "grad3"), **extra)}})
  _write(r / "table1" / "dfa3.json", {"mini": {"continual": _cell(
      "dfa3", "continual", 1e27, diverged_networks=1)}})
  _write(r / "table2" / "flp2.json", {"mini": {
      "omniglot": _cell("flp2", "omniglot", 0.3, "error", curve=True,
                        baselines={"chance": {"mean": 0.8, "stderr": 0.0},
                                   "pixel_prototype": {"mean": 0.6, "stderr": 0.01}}),
      "mini_imagenet": {"status": "not run", "reason": "no data"}}})
  _write(r / "figures_mini" / "figure2.json", _fig2("continual"))
  _write(r / "figures_mini" / "iid" / "figure2.json", _fig2("iid"))
  part = lambda m: {"mean": m, "stderr": 0.1 * m, "per_seed": [m, 1.1 * m]}
  _write(r / "section71_mini.json", {"scale": "mini", "seeds": 2, "extended": part(2.8),
                                     "reuse_equal_steps": part(2.9),
                                     "feature_reuse": part(3.1), "flp3": part(0.04)})
  _write(r / "claims.json", CLAIMS)
  return r


@pytest.fixture()
def results(tmp_path):
  return _results(tmp_path / "results")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
  """`_results` with every figure drawn as PNG (SVG: one, below; the same code path), once
  for the module: ``(folder, files written, log lines)``."""
  r = _results(tmp_path_factory.mktemp("drawn") / "results")
  logs = []
  return r, plots.plot_all(str(r), log=logs.append, formats=("png",)), logs


def _texts(fig):
  out = [t.get_text() for t in fig.texts]
  for sub in fig.subfigs:
    out += _texts(sub)
  for name in ("_suptitle", "_supxlabel"):
    if getattr(fig, name, None) is not None:
      out.append(getattr(fig, name).get_text())
  return out


def _legend_entries(fig):
  legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
  for sub in fig.subfigs:
    legends += list(sub.legends)
  return {t.get_text() for lg in legends for t in lg.get_texts()}


def test_plot_all_writes_every_figure(drawn, tmp_path):
  results, paths, logs = drawn
  rel = {os.path.relpath(p, results) for p in paths}
  stems = ["tables/table1", "tables/table2", "tables/table1_curves_mini",
           "tables/table2_curves_mini", "tables/section71"]
  stems += [f"{d}/{s}" for d in ("figures_mini", "figures_mini/iid")
            for s in ("figure2", *plots.FIG2_FILES.values())]
  assert rel == {f"{s}.png" for s in stems}
  for s in stems:
    data = (results / f"{s}.png").read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000, s
  assert not logs  # claims and curves present: nothing skipped
  with plots.style():
    paths = plots.save(plots.section71_figure(str(results)), str(tmp_path / "s71"))
  assert [os.path.basename(p) for p in paths] == ["s71.png", "s71.svg"]
  assert (tmp_path / "s71.svg").read_text().lstrip().startswith("<?xml")


def test_figure2_panels_labels_legends_and_verdicts(results):
  data = _read(results / "figures_mini" / "figure2.json")
  iid = _read(results / "figures_mini" / "iid" / "figure2.json")
  with plots.style():
    fig = plots.figure2(data, iid, plots.load_claims(str(results)), "mini")
    assert [s.get_suptitle().split()[0] for s in fig.subfigs] == ["A", "B", "C", "D"]
    labels = {(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes}
    assert ("plastic layers (FLP)", "meta-test query MSE") in labels
    assert ("functions encountered (continual sine)",
            "interference: mean squared change\nof outputs on earlier functions") in labels
    assert len(fig.subfigs[2].axes) == 2 and len(fig.subfigs[3].axes) == 3  # C: 2 FLP, D: 3 layers
    assert fig.subfigs[3].axes[0].get_ylabel() == "|Δw| (Frobenius)\non i.i.d. lifetimes"
    assert fig.subfigs[3].axes[0].get_yscale() == "log"
    legends = _legend_entries(fig)
    assert {"Feature reuse (1)", "FLP (3)", "Gradient-based (3)", "network after its lifetime",
            "layer 4 (readout)", "layer 3", "layer 2"} <= legends
    assert not any(re.search(r"\bnet \d", l) for l in legends)  # methods, not networks
    text = "\n".join(_texts(fig))
    assert "FLP's interference is below gradient-based: HOLDS (0.1 ± 0.01, 2 nets" in text
    assert "another scale's claim" not in text
    assert "D: sine, iid cells, analysed on i.i.d. lifetimes (the paper's panel D: i.i.d." in text
    assert "the continual cells' panel C claim: HOLDS\n" in text + "\n"  # no reason repeated
    assert "the iid cells' panel C claim" not in text  # C shows the continual cells
    assert "no claim of results/claims.json is on fig2d at the mini scale" in text
    plots._plt().close(fig)
    # Without claims.json: figure2.json's own verdicts, said so.
    fig = plots.figure2(data, None, None, "mini", panels="b")
    text = "\n".join(_texts(fig))
    assert "HOLDS" in text and "results/claims.json absent" in text
    assert len(fig.axes) == 1
    plots._plt().close(fig)


def test_table_figure_panels_paper_markers_baselines_and_off_scale(results):
  claims = plots.load_claims(str(results))
  with plots.style():
    fig = plots.table_figure(str(results), "1", claims)
    assert [ax.get_title() for ax in fig.axes] == ["i.i.d. learning", "Continual learning"]
    assert fig.axes[0].get_ylabel() == "meta-test MSE"
    assert all(ax.get_yscale() == "log" for ax in fig.axes)  # 0.0005 .. 3: decades
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks[:5] == ["Feature reuse (1)", "FLP (2)", "FLP (3)", "Gradient-based (3)",
                         "Original OML (3)"] and ticks[5] == "DFA (3)"
    assert "DFA (3)" not in [t.get_text() for t in fig.axes[0].get_xticklabels()]
    legends = _legend_entries(fig)
    assert {"paper (Table 1)", "ours, mini scale: mean ± s.e. over 2 networks",
            "family mean (mini)", "Feature reuse (1) without plasticity (mini)",
            "some networks diverged\n(mean over the rest)"} <= legends
    text = "\n".join(_texts(fig) + [t.get_text() for ax in fig.axes for t in ax.texts])
    assert "1.0e+27" in text
    assert "mini scale: FLP (3) below feature reuse (1) on continual sine: HOLDS" in text
    plots._plt().close(fig)
    fig = plots.table_figure(str(results), "2", None)
    assert [ax.get_title() for ax in fig.axes] == ["Omniglot", "Omniglot (continual)",
                                                   "Mini-ImageNet"]
    assert fig.axes[0].get_ylabel() == "meta-test error (%)"
    assert "chance (mini)" in _legend_entries(fig)
    assert 80.0 in [line.get_ydata()[0] for line in fig.axes[0].get_lines()]  # in %
    plots._plt().close(fig)


def test_curves_and_section71_figures(results):
  with plots.style():
    fig = plots.curves_figure(str(results), "1", "mini")
    assert [ax.get_title() for ax in fig.axes] == ["i.i.d. learning", "Continual learning"]
    assert fig.axes[0].get_xlabel() == "meta-step"
    assert fig.axes[0].get_ylabel() == "MSE\nvalidation"
    assert {"Feature reuse (1)", "FLP (3)", "Gradient-based (3)",
            "family mean (no learning)"} <= _legend_entries(fig)
    plots._plt().close(fig)
    fig = plots.curves_figure(str(results), "2", "mini")
    assert fig.axes[0].get_ylabel() == "error (%)\nvalidation"
    assert {"FLP (2)", "chance (no learning)", "pixel prototype (no learning)"} <= \
        _legend_entries(fig)
    plots._plt().close(fig)
    fig = plots.section71_figure(str(results))
    assert fig.axes[0].get_ylabel() == "meta-test MSE\n(continual sine)"
    assert "mini scale (2 networks)" in _legend_entries(fig)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][1] == (
        "Feature reuse (1),\nas many more\nmeta-steps")  # the claim's control
    plots._plt().close(fig)


def test_markdown_embeds_every_figure_with_a_caption(results, drawn):
  assert plots.figures_markdown(str(results)).strip() == ""  # nothing drawn yet
  results = drawn[0]
  snippets = plots.figure_snippets(str(results))
  assert set(snippets) == {"table1", "table2", "table1_curves_mini", "table2_curves_mini",
                           "section71", "figure2_figures_mini", "figure2_figures_mini_iid"}
  md = plots.figures_markdown(str(results))
  for stem in ("tables/table1", "tables/table2_curves_mini", "figures_mini/figure2",
               "figures_mini/iid/figure2"):
    assert f"]({stem}.png)" in md and f"]({stem}.svg)" in md
  assert "](figures_mini/fig2c_alignment.png)" in md and "{" not in md
  assert "B 1 holds" in snippets["figure2_figures_mini"]
  assert "; D: i.i.d. cells" in snippets["figure2_figures_mini"]


def test_missing_claims_and_curves_are_skipped_and_said(results):
  os.remove(results / "claims.json")
  for path in (results / "table1").glob("*.json"):
    data = _read(path)
    for cell in data["mini"].values():
      cell.pop("curve", None)
    _write(path, data)
  (results / "table2" / "flp2.json").unlink()
  logs = []
  assert plots.plot_all(str(results), log=logs.append, formats=()) == []  # built, not saved
  assert plots.curve_scales(str(results), "1") == []
  assert any("claims.json absent" in l for l in logs)
  assert any("Table 1: no cell keeps a learning curve" in l for l in logs)
  assert any("no results/table2/*.json" in l for l in logs)


def test_plot_binary_builds_every_figure_and_prints_markdown(results, drawn):
  run = lambda *a: subprocess.run([sys.executable, "experiments/plot.py", *a], cwd=REPO,
                                  capture_output=True, text=True, check=False)
  proc = run(f"--results_dir={results}", "--formats=")  # every figure built, none saved
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "wrote 0 files" in proc.stdout and not os.path.exists(results / "tables")
  proc = run(f"--results_dir={drawn[0]}", "--markdown")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "![Table 1](tables/table1.png)" in proc.stdout
  assert proc.stdout == plots.figures_markdown(str(drawn[0]))


# ----------------------------------------------------------------------------- learning curves


def test_smoothing():
  assert plots.smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
  assert plots.smooth([1.0, 3.0], 0.0) == [1.0, 3.0]
  out = plots.smooth([float("nan"), 1.0, float("nan"), 3.0], 0.5)
  assert np.isnan(out[0]) and out[1:3] == [1.0, 1.0] and 1.0 < out[3] < 3.0


def _fake_run(workdir, scale, evals=True):
  workdir.mkdir()
  w = metrics.MetricWriter(str(workdir), tensorboard=False)
  for s in range(10, 210, 10):
    w.write(s, "train", {"loss": scale * 100.0 / s, "grad_norm": 1.0, "skipped_total": 0})
  w.write(55, "nonfinite", {"loss": "nan", "in_row": 1, "total": 1})
  if evals:
    w.write(0, "eval", {"mse": 5.0, "mse_stderr": 0.3, "lifetimes": 50})
    w.write(200, "eval", {"mse": scale, "mse_stderr": 0.1, "lifetimes": 50})
  w.close()


def test_plot_curves_of_two_runs(tmp_path):
  _fake_run(tmp_path / "a", 1.0)
  _fake_run(tmp_path / "b", 2.0, evals=False)
  out = tmp_path / "curves.png"
  plots.plot_curves([str(tmp_path / "a"), str(tmp_path / "b")], str(out))
  data = out.read_bytes()
  assert data.startswith(PNG) and len(data) > 10_000
  with pytest.raises(errors.WorkdirError, match=r"--metric=lr: no train record .* "
                     r"\(available: grad_norm, loss, skipped_total\)"):
    plots.plot_curves([str(tmp_path / "a")], str(out), metric="lr")


def test_plot_binary_writes_a_png(tmp_path):
  _fake_run(tmp_path / "a", 1.0)
  out = tmp_path / "c.png"
  proc = subprocess.run([sys.executable, "experiments/plot.py", f"--workdirs={tmp_path / 'a'}",
                         f"--output={out}", "--metric=grad_norm"],
                        cwd=REPO, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert out.read_bytes().startswith(PNG)
