r"""Every figure of ``results/``, drawn from the committed JSONs, in one style.

  python experiments/plot.py                 # every figure below, from results/*.json
  python experiments/plot.py --markdown      # the markdown that embeds them

No training and no analysis: the figures are redrawn from ``results/table{1,2}/*.json``,
``results/figures*/**/figure2.json``, ``results/section71*.json`` and (when
present) ``results/claims.json``, as PNG and SVG (`plot_all`):

* ``results/figures*/figure2.{png,svg}``: the paper's Figure 2, panels A-D in a
  2 x 2 grid, and each panel alone (``fig2a_frozen_readout``,
  ``fig2b_interference``, ``fig2c_alignment``, ``fig2d_update_magnitude``). A-C
  come from the folder's ``figure2.json``; D from its ``iid/figure2.json`` when
  there is one (the paper's panel D is the i.i.d. task), else from the folder's.
  Every panel: mean over independently meta-trained networks with a band of one
  standard error, single networks faint; with one network per method the band
  is the standard error over lifetimes. Each panel's caption carries the
  verdicts of the claims of ``results/claims.json`` whose ``panel`` is
  ``fig2a``..``fig2d`` and ``scale`` the folder's (without that file: the
  ``trends`` of ``figure2.json``, said so).
* ``results/tables/table{1,2}.{png,svg}``: one panel per column of the paper's
  table; per method, ours at every scale run (mean and standard error over
  networks, faint dots for single networks, a hollow marker where networks
  diverged) beside the paper's value (black diamond); log axis where the values
  span more than `LOG_SPAN`; the cells' ``baselines`` (and feature reuse's
  ``no_plasticity``) as horizontal lines; values beyond the axis as arrows.
* ``results/tables/table{1,2}_curves_<scale>.{png,svg}``: the validation
  learning curve of every cell that keeps one (``"curve"`` in the cell's JSON),
  one panel per column, its ``no_learning`` levels as lines.
* ``results/tables/section71.{png,svg}``: section 7.1 per scale.

The style (`METHODS`: one name and colour per method, the same in every figure;
`RC`: fonts and sizes; `SCALES`: a marker per scale) is shared by
``experiments/figures.py`` (which analyses trained runs, then draws Figure 2
with `figure2_files`) and ``experiments/plot.py``. Matplotlib is imported
inside the functions (binaries that draw nothing do not pay for it).
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import re
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from flpjax.reporting.errors import WorkdirError
from flpjax.reporting.metrics import read_json, read_metrics

# ----------------------------------------------------------------------------- style

#: Row id -> (name, colour). Every figure colours a method by its row id; rows
#: differing only in their number of plastic layers share a family's hue.
METHODS = {
    "reuse1": ("Feature reuse (1)", "#762a83"),
    "flp2": ("FLP (2)", "#5aae61"),
    "flp3": ("FLP (3)", "#1b7837"),
    "grad2": ("Gradient-based (2)", "#d73027"),
    "grad3": ("Gradient-based (3)", "#d73027"),
    "oml2": ("Original OML (2)", "#8c510a"),
    "oml3": ("Original OML (3)", "#8c510a"),
    "dfa2": ("DFA (2)", "#e7298a"),
    "dfa3": ("DFA (3)", "#e7298a"),
    "fa2": ("FA (2)", "#e6ab02"),
    "fa3": ("FA (3)", "#e6ab02"),
    "rule2": ("Rule from Oja (2)", "#01665e"),
    "rule3": ("Rule from Oja (3)", "#01665e"),
    "rule2r": ("Rule from random (2)", "#5ab4ac"),
    "rule3r": ("Rule from random (3)", "#5ab4ac"),
    "rule2m": ("MLP rule (2)", "#666666"),
    "rule3m": ("MLP rule (3)", "#666666"),
    "pfb2": ("Plastic feedback (2)", "#4393c3"),
    "pfb3": ("Plastic feedback (3)", "#4393c3"),
    "pfb3h": ("Plastic multi-layer fb (3)", "#313695"),
    "section71": ("FLP (3) on reuse init", "#a6761d"),
}
_EXTRA = ("#17becf", "#bcbd22", "#7f7f7f", "#9467bd", "#8c564b")
#: The paper's Figure 2A: the network after its lifetime (orange) and its frozen
#: initial features with a fitted readout (blue).
LEARNED, FROZEN = "#ff7f0e", "#1f77b4"
#: Panel C: colour of a plastic layer by its distance from the readout.
LAYERS = ("#252525", "#e08214", "#8073ac", "#35978f", "#bf812d", "#b2abd2")
PAPER_COLOR = "black"
#: Scale -> marker of our values; their order left to right within a method.
SCALES = {"mini": "o", "reduced": "s", "paper": "^"}
#: A panel's value axis is logarithmic when its largest value exceeds its smallest
#: positive one this many times.
LOG_SPAN = 20.0
#: Values above this many times the panel's median are drawn as arrows at the edge.
OFF_SCALE = 1e3
FORMATS = ("png", "svg")
DPI = 150
RC = {
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 9,
    "lines.linewidth": 1.4, "lines.markersize": 4.5, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "axes.grid.axis": "y", "grid.alpha": 0.25,
    "grid.linewidth": 0.5, "legend.frameon": False, "svg.fonttype": "path",
    "savefig.dpi": DPI, "figure.dpi": 100, "svg.hashsalt": "flpjax",
}
CAPTION_SIZE = 6.5
#: Table columns as the paper names them, and the paper's values.
COLUMN_NAMES = {"iid": "i.i.d. learning", "continual": "Continual learning",
                "omniglot": "Omniglot", "omniglot_continual": "Omniglot (continual)",
                "mini_imagenet": "Mini-ImageNet"}
COLUMNS = {"1": ("iid", "continual"), "2": ("omniglot", "omniglot_continual", "mini_imagenet")}
# Typed in from the paper's Table 1 ("Regression Results (Mean squared error)") and
# Table 2 ("Classification Results (% Error)"), Lindsey & Litwin-Kumar, NeurIPS 2020,
# section 5: (mean, standard error or None where the paper gives none).
PAPER_TABLES = {
    "1": {  # Table 1: meta-test MSE
        "reuse1": {"iid": (0.050, 7e-3), "continual": (0.035, 3e-3)},
        "flp2": {"iid": (0.00093, 3e-5), "continual": (0.0016, 6e-5)},
        "flp3": {"iid": (0.00051, 8e-5), "continual": (0.0068, 2e-3)},
        "grad3": {"iid": (0.00057, 2e-5), "continual": (0.069, 0.02)},
        "oml3": {"iid": (0.072, None), "continual": (0.40, None)},
    },
    "2": {  # Table 2: % error
        "reuse1": {"omniglot": (4.6, 0.1), "omniglot_continual": (5.0, 0.1),
                   "mini_imagenet": (48.2, 0.1)},
        "flp2": {"omniglot": (3.0, 0.1), "omniglot_continual": (2.7, 0.1),
                 "mini_imagenet": (42.5, 0.6)},
        "grad2": {"omniglot": (3.2, 0.1), "omniglot_continual": (3.4, 0.1),
                  "mini_imagenet": (42.5, 0.3)},
        "oml2": {"omniglot": (3.5, None), "omniglot_continual": (7.0, None),
                 "mini_imagenet": (52.0, None)},
    },
}
FIG2_FILES = {"a": "fig2a_frozen_readout", "b": "fig2b_interference", "c": "fig2c_alignment",
              "d": "fig2d_update_magnitude"}
_SCALE_NAMES = ("mini", "reduced", "paper")


def method_name(row: str) -> str:
  return METHODS.get(row, (row, None))[0]


def method_color(row: str) -> str:
  """The method's colour; an unknown row gets a fixed one from its name."""
  if row in METHODS:
    return METHODS[row][1]
  return _EXTRA[sum(map(ord, row)) % len(_EXTRA)]


def row_of(name: str) -> str | None:
  """The row id inside a cell or workdir name (``sine_flp3_iid`` -> ``flp3``), or None."""
  for part in re.split(r"[_/\-\s]", name):
    if part in METHODS:
      return part
  return None


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


@contextlib.contextmanager
def style():
  """The shared fonts and sizes (`RC`), for the figures drawn inside."""
  plt = _plt()
  with plt.rc_context(RC):
    yield plt


def save(fig, stem: str, formats: Sequence[str] = FORMATS) -> list[str]:
  """Writes ``fig`` as ``stem.<format>`` for each format, closes it; returns the paths."""
  plt = _plt()
  if formats:
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
  paths = []
  try:
    for fmt in formats:
      path = f"{stem}.{fmt}"
      meta = {"Software": None} if fmt == "png" else {"Date": None} if fmt == "svg" else {}
      fig.savefig(path, dpi=DPI, metadata=meta)
      paths.append(path)
  finally:
    plt.close(fig)
  return paths


def arr(x) -> np.ndarray:
  """Nested lists (None for non-finite values, as the JSONs store them) as a float array."""
  a = np.array(x, dtype=object)
  if a.dtype == object:
    a = np.where(a == None, np.nan, a)  # pylint: disable=singleton-comparison
  return a.astype(np.float64)


def mean_se(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean, standard error and count over the leading (network) axis, NaNs left out.

  Args:
    values: ``(networks, ...)``.
  Returns:
    ``mean, se, n`` of shape ``values.shape[1:]``; ``se`` is NaN where ``n < 2``.
  """
  v = arr(values)
  n = np.sum(np.isfinite(v), axis=0)
  with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)
    mean = np.nanmean(v, axis=0)
    se = np.nanstd(v, axis=0, ddof=1) / np.sqrt(n)
  return mean, np.where(n > 1, se, np.nan), n


def band(ax, x, values, color: str, label: str | None = None, *, se=None, faint: bool = True,
         log: bool = False, **kw):
  """Mean over networks (a line), one standard error either side (a band) and each
  network (faint lines).

  Args:
    ax: the axes.
    x: ``(steps,)``.
    values: ``(networks, steps)``.
    color, label: of the mean line.
    se: ``(steps,)`` standard error to draw when there is one network (e.g. over
      lifetimes); with several the standard error over networks is drawn.
    faint: draw the single networks.
    log: the axis is logarithmic: the band's lower edge stays above 0.
  Returns:
    The mean's line.
  """
  x, v = np.asarray(x, np.float64), arr(values)
  v = v.reshape(-1, len(x))
  mean, err, _ = mean_se(v)
  if v.shape[0] == 1 and se is not None:
    err = arr(se).reshape(mean.shape)
  if faint and v.shape[0] > 1:
    for row in v:
      ax.plot(x, row, color=color, alpha=0.22, linewidth=0.6, zorder=1)
  lo, hi = mean - err, mean + err
  if log:
    lo = np.where(lo > 0, lo, mean / 10)
  ok = np.isfinite(lo) & np.isfinite(hi)
  if ok.any():
    ax.fill_between(x, np.where(ok, lo, mean), np.where(ok, hi, mean), color=color, alpha=0.25,
                    linewidth=0, zorder=2)
  (line,) = ax.plot(x, mean, color=color, label=label, zorder=3, **kw)
  return line


def wants_log(values: Iterable[float]) -> bool:
  """Whether positive ``values`` span more than `LOG_SPAN`."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  return bool(len(v)) and bool((v > 0).all()) and v.max() > LOG_SPAN * v.min()


def wrap(lines: Iterable[str], width: int) -> str:
  return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines if line)


def _fmt(x) -> str:
  if x is None or not np.isfinite(x):
    return "n/a"
  return f"{x:.2g}" if abs(x) < 1e4 else f"{x:.1e}"



# ----------------------------------------------------------------------------- claims

def load_claims(results_dir: str) -> list[dict] | None:
  """``results/claims.json`` (a list of claim objects), or None when absent or unreadable."""
  data = read_json(os.path.join(results_dir, "claims.json"))
  return data if isinstance(data, list) else None


def claim_text(c: dict, trends: Sequence[dict] = ()) -> str:
  """One claim of ``results/claims.json`` as a caption line: text, verdict, the two sides'
  values (a ``table2`` claim's in %) and the reason. A Figure 2 claim without values
  (``kind`` ``trend``) takes them from the ``trends`` entry of the same text."""
  unit, pct = (100.0, "%") if c.get("panel") == "table2" else (1.0, "")

  def side(v, se, n, div):
    text = _fmt(None if v is None else unit * v) + pct
    text += f" ± {_fmt(unit * se)}{pct}" if se is not None else ""
    return text + (f", {n} nets" if n else "") + (f", {div} diverged" if div else "")

  verdict = str(c.get("verdict", "?"))
  out = f"{c.get('claim', c.get('id', '?'))}: {verdict.upper()}"
  if c.get("a") is not None or c.get("b") is not None:
    out += (f" ({side(c.get('a'), c.get('se_a'), c.get('networks_a'), c.get('diverged_a'))}"
            f" vs {side(c.get('b'), c.get('se_b'), c.get('networks_b'), c.get('diverged_b'))})")
  else:
    same = [t for t in trends if t.get("claim") == c.get("claim")]
    if same and _trend_sides(same[0]):
      out += f" ({_trend_sides(same[0])})"
  reason = str(c.get("reason") or "")
  if reason and reason.lower() != verdict.lower():
    out += f"; {reason}"
  return out


def _trend_sides(t: dict) -> str:
  names = {"fewer": "fewer layers", "more": "more layers", "flp": "FLP",
           "gradient": "gradient-based"}
  return " vs ".join(
      f"{names.get(k, k)} {_fmt(v.get('mean'))}"
      + (f" ± {_fmt(v['stderr'])}" if v.get("stderr") else "")
      for k, v in t.items() if isinstance(v, dict) and "mean" in v)


def _trend_text(t: dict) -> str:
  """A ``figure2.json`` trend (the claim as `experiments/figures.py` decided it)."""
  word, _, reason = str(t.get("verdict", "?")).partition(" (")
  verdict = word.upper() + (f" ({reason}" if reason else "")
  return f"{t['claim']}: {verdict}" + (f" ({_trend_sides(t)})" if _trend_sides(t) else "")


def panel_claims(claims: list[dict] | None, panel: str, scale: str | None,
                 trends: Sequence[dict] = (), order: str | None = None) -> list[str]:
  """Caption lines of the claims of ``panel`` (``fig2a``, ``table1``, ...) at ``scale``
  (None: every scale, each line naming its own): from ``claims`` (results/claims.json)
  when given, else from ``trends`` (figure2.json's own verdicts, said so), else a line
  saying there is none. A Figure 2 claim whose id names the cells' order
  (``fig2b_iid_3``) is shown only for that ``order``'s cells."""
  if claims is not None:
    def kept(c):
      m = re.match(r"fig2[a-d]_(continual|iid)_", str(c.get("id", "")))
      return (c.get("panel") == panel and (scale is None or c.get("scale") in (None, scale))
              and not (order and m and m.group(1) != order))
    rows = [c for c in claims if kept(c)]
    prefix = lambda c: f"{c['scale']} scale: " if scale is None and c.get("scale") else ""
    return ([prefix(c) + claim_text(c, trends) for c in rows] if rows
            else [f"no claim of results/claims.json is on {panel}"
                  + (f" at the {scale} scale" if scale else "")])
  letter = panel[-1].upper() if panel.startswith("fig2") else None
  rows = [t for t in trends if letter and t.get("panel") == letter]
  if rows:
    return [_trend_text(t) for t in rows] + [("(verdicts from figure2.json: "
                                              "results/claims.json absent)")]
  return ["results/claims.json absent: no verdict shown"]


# ----------------------------------------------------------------------------- Figure 2

def _fig2_method(entry: dict) -> str:
  """The row id of a ``figure2.json`` entry (older files lack ``plastic_layers``: the
  label's ``(k)``, else the number of layers)."""
  learner = entry.get("learner", "flp")
  m = re.search(r"\((\d+)\)", entry.get("label", ""))
  k = entry.get("plastic_layers") or (int(m.group(1)) if m else 0) or len(
      entry.get("layers", ())) or 1
  if learner == "flp":
    return "reuse1" if k == 1 else f"flp{k}"
  return f"grad{k}" if learner == "gradient" else f"{learner}{k}"


def _groups(entries: Sequence[dict]) -> list[tuple[str, str, list[dict]]]:
  """``(row id, label, networks' entries)`` per run (workdir), in the JSON's order."""
  by = {}
  for e in entries:
    by.setdefault(e.get("workdir", e.get("label", "?")), []).append(e)
  rows = [(_fig2_method(es[0]), es) for es in by.values()]
  count = {}
  for row, _ in rows:
    count[row] = count.get(row, 0) + 1
  out = []
  for row, es in rows:
    label = method_name(row)
    if count[row] > 1:  # two runs of the same method: tell them apart by workdir
      w = es[0].get("workdir", "").rstrip("/")
      label += " " + os.path.basename(os.path.dirname(w) if w.endswith("/final") else w)
    out.append((row, label, sorted(es, key=lambda e: e.get("network", 0))))
  return out


def _networks_text(data: dict, panel: str = "") -> str:
  """How many networks a panel averages (per method), and over what."""
  keys = [f"fig2{panel}"] if panel else ["fig2a", "fig2b", "fig2c", "fig2d"]
  n = sorted({len(es) for k in keys for _, _, es in _groups(data.get(k, []))})
  if not n:
    return "no runs in this panel"
  if n == [1]:
    if panel == "d":  # figure2.json keeps no s.e. of the update norms
      return f"1 network per method, its mean over {data.get('lifetimes', '?')} lifetimes"
    return (f"1 network per method: bands are the s.e. over {data.get('lifetimes', '?')} "
            "lifetimes")
  return (f"{'-'.join(map(str, sorted({n[0], n[-1]})))} networks per method: mean ± s.e. over "
          f"networks (each its mean over {data.get('lifetimes', '?')} lifetimes), single "
          "networks faint")


def _empty(ax, text: str) -> None:
  ax.set_axis_off()
  ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7.5,
          color="0.4", wrap=True)


def _legend_right(ax, handles=None, **kw) -> None:
  handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
  if handles:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              handlelength=1.6, **kw)


def _caption(fig, lines: Sequence[str], width: int) -> None:
  fig.supxlabel(wrap(lines, width), x=0.01, ha="left", fontsize=CAPTION_SIZE,
                multialignment="left", color="0.15")


def _title(fig, letter: str, text: str) -> None:
  fig.suptitle(f"{letter}   {text}", x=0.01, ha="left", fontweight="bold")


def panel_a(fig, data: dict, caption: Sequence[str] = (), width: int = 75) -> None:
  """Panel A into ``fig`` (a figure or subfigure): per number of plastic layers, the
  query loss of the FLP networks after their lifetime and of their frozen initial
  features with a fitted readout."""
  ax = fig.subplots()
  groups = [g for g in _groups(data.get("fig2a", []))]
  metric = groups[0][2][0].get("metric", "mse") if groups else "mse"
  scale = 100.0 if metric == "error" else 1.0
  handles, values = [], []
  for name, color, label in (("learned", LEARNED, "network after its lifetime"),
                             ("frozen", FROZEN, "frozen initial weights,\nfitted readout")):
    xs, means, los, his = [], [], [], []
    for _, _, es in sorted(groups, key=lambda g: g[2][0]["plastic_layers"]):
      k = es[0]["plastic_layers"]
      v = scale * arr([e.get(f"{name}_mean") for e in es])
      mean, se, _ = mean_se(v[:, None])
      mean, se = float(mean[0]), float(se[0])
      if len(es) == 1:
        se = scale * (es[0].get(f"{name}_stderr") or np.nan)
      jitter = (np.arange(len(v)) - (len(v) - 1) / 2) * 0.03
      if len(v) > 1:
        ax.plot(k + jitter + (0.06 if name == "frozen" else -0.06), v, "o", color=color,
                alpha=0.35, markersize=2.5, markeredgewidth=0, zorder=1)
      xs.append(k)
      means.append(mean)
      los.append(mean - se)
      his.append(mean + se)
      values += [x for x in v if np.isfinite(x)] + [mean]
    if xs:
      xs, los = np.asarray(xs, float), np.asarray(los)
      los = np.where(los > 0, los, np.asarray(means) / 10) if metric == "mse" else los
      ax.fill_between(xs, los, his, color=color, alpha=0.25, linewidth=0)
      (h,) = ax.plot(xs, means, "o-", color=color, label=label, zorder=3)
      handles.append(h)
  if not groups:
    _empty(ax, "no FLP runs in figure2.json")
  else:
    if wants_log(values):
      ax.set_yscale("log")
    ax.set_xticks(sorted({es[0]["plastic_layers"] for _, _, es in groups}))
    ax.set_xlabel("plastic layers (FLP)")
    ax.set_ylabel("meta-test query MSE" if metric == "mse" else "meta-test query error (%)")
    _legend_right(ax, handles)
  _title(fig, "A", "Feature extractor at initialisation")
  _caption(fig, caption, width)


def panel_b(fig, data: dict, caption: Sequence[str] = (), width: int = 75) -> None:
  """Panel B: interference (mean squared change of the outputs on earlier functions)
  against the number of functions encountered, per method."""
  ax = fig.subplots()
  groups = _groups(data.get("fig2b", []))
  for row, label, es in groups:
    x = es[0]["functions_encountered"]
    band(ax, x, [e["interference"] for e in es], method_color(row), label,
         se=es[0].get("interference_stderr"), log=True, marker="o", markersize=3)
  if groups:
    ax.set_yscale("log")
    ax.set_xticks(groups[0][2][0]["functions_encountered"])
    ax.set_xlabel("functions encountered (continual sine)")
    ax.set_ylabel("interference: mean squared change\nof outputs on earlier functions")
    _legend_right(ax)
  else:
    _empty(ax, "no sine runs: interference is measured on continual sine only")
  _title(fig, "B", "Interference")
  _caption(fig, caption, width)


def _layer_name(layer: int, readout: int) -> str:
  return f"layer {layer} (readout)" if layer == readout else f"layer {layer}"


def _function_edges(ax, steps: int, functions: int | None) -> None:
  """Dotted lines where a continual lifetime moves to its next function / class."""
  if functions and functions > 1 and steps % functions == 0:
    for s in range(steps // functions, steps, steps // functions):
      ax.axvline(s + 0.5, color="0.6", linewidth=0.5, linestyle=":", zorder=0)


def panel_c(fig, data: dict, caption: Sequence[str] = (), width: int = 75) -> None:
  """Panel C: per FLP method (one axes each), the cosine of each plastic layer's update
  with the negative gradient of the step's loss, over the lifetime."""
  groups = [g for g in _groups(data.get("fig2c", [])) if len(g[2][0]["layers"]) > 0]
  groups.sort(key=lambda g: -len(g[2][0]["layers"]))  # most plastic layers first
  axes = fig.subplots(max(len(groups), 1), 1, sharex=True, squeeze=False)[:, 0]
  readout = max((l for _, _, es in groups for l in es[0]["layers"]), default=0)
  functions = max((max(e["functions_encountered"]) for e in data.get("fig2b", [])),
                  default=None)
  order = (data.get("fig2c") or [{}])[0].get("order", "")
  handles = {}
  for ax, (row, label, es) in zip(axes, groups):
    cos = arr([e["alignment"] for e in es])  # (networks, steps, layers)
    se = arr(es[0].get("alignment_stderr")) if len(es) == 1 and es[0].get(
        "alignment_stderr") is not None else None
    steps = np.arange(1, cos.shape[1] + 1)
    for i, layer in enumerate(es[0]["layers"]):
      color = LAYERS[(readout - layer) % len(LAYERS)]
      h = band(ax, steps, cos[:, :, i], color, _layer_name(layer, readout),
               se=None if se is None else se[:, i], linewidth=1.0)
      handles.setdefault(layer, h)
    ax.axhline(0.0, color="k", linewidth=0.5)
    if order == "continual":
      _function_edges(ax, cos.shape[1], functions)
    ax.set_title(label, fontsize=7.5, loc="left", color=method_color(row), pad=2)
    ax.set_ylabel("cos(Δw, −∇L)")
  if groups:
    axes[-1].set_xlabel(f"lifetime step ({order}" + (", dotted: next function)"
                                                      if order == "continual" else ")"))
    _legend_right(axes[0], [handles[l] for l in sorted(handles, reverse=True)])
  else:
    _empty(axes[0], "no FLP runs in figure2.json")
  _title(fig, "C", "Alignment of FLP updates with the gradient")
  _caption(fig, caption, width)


def panel_d(fig, data: dict, caption: Sequence[str] = (), width: int = 75) -> None:
  """Panel D: per plastic layer (one axes each, readout first), the Frobenius norm of
  each method's weight update over an i.i.d. lifetime (`experiments/figures.py` analyses
  panel D on i.i.d. lifetimes whatever the cells' order)."""
  groups = _groups(data.get("fig2d", []))
  layers = sorted({l for _, _, es in groups for l in es[0]["layers"]}, reverse=True)
  axes = fig.subplots(1, max(len(layers), 1), sharey=True, squeeze=False)[0]
  for ax, layer in zip(axes, layers):
    for row, label, es in groups:
      if layer in es[0]["layers"]:
        i = es[0]["layers"].index(layer)
        norms = arr([e["update_norm"] for e in es])[:, :, i]
        band(ax, np.arange(1, norms.shape[1] + 1), norms, method_color(row), label, log=True,
             linewidth=1.0)
    ax.set_yscale("log")
    ax.set_title(_layer_name(layer, layers[0]), fontsize=7.5, pad=2)
    ax.set_xlabel("lifetime step")
  if layers:
    axes[0].set_ylabel("|Δw| (Frobenius)\non i.i.d. lifetimes")
    seen = {}
    for ax in axes:
      for h, l in zip(*ax.get_legend_handles_labels()):
        seen.setdefault(l, h)
    _legend_right(axes[-1], list(seen.values()))
  else:
    _empty(axes[0], "no runs in figure2.json")
  _title(fig, "D", "Update magnitude per layer")
  _caption(fig, caption, width)


PANELS = {"a": panel_a, "b": panel_b, "c": panel_c, "d": panel_d}
_PANEL_SIZE = {"a": (5.0, 2.9), "b": (5.0, 2.9), "c": (5.0, 4.2), "d": (6.4, 2.9)}  # + caption


def figure2_scale(data: dict, folder: str = "") -> str | None:
  """The scale of a ``figure2.json``: its ``scale``, else the one its command's paths name,
  else ``paper`` for a ``figures_paper*`` folder."""
  if data.get("scale"):
    return data["scale"]
  m = re.search(r"/(mini|reduced|paper)/", data.get("command", ""))
  if m:
    return m.group(1)
  m = re.match(r"figures_(mini|reduced|paper)", os.path.basename(os.path.normpath(folder)))
  return m.group(1) if m else None


def _fig2_sources(data: dict, iid: dict | None) -> dict[str, dict]:
  return {"a": data, "b": data, "c": data, "d": iid if iid and iid.get("fig2d") else data}


def figure2_captions(data: dict, iid: dict | None = None, claims: list[dict] | None = None,
                     scale: str | None = None) -> dict[str, list[str]]:
  """Each panel's caption lines: what it shows, from which cells, and its claims."""
  src = _fig2_sources(data, iid)
  out = {}
  for p, d in src.items():
    runs = d.get("runs") or [{}]
    task = runs[0].get("task", "?")
    order = runs[0].get("order", "?")
    what = f"{task}, {order} cells"
    if p == "a":
      fit = (d.get("fig2a") or [{}])[0].get("readout_fit", "?")
      what += f"; readout fitted by {fit}"
    if p == "b" and d.get("fig2b"):
      what += ", analysed on continual lifetimes"
    if p == "d" and d.get("fig2d"):
      what += ", analysed on i.i.d. lifetimes" + (" (the paper's panel D: i.i.d. cells)"
                                                   if d is not data else "")
    out[p] = [f"{p.upper()}: {what}. {_networks_text(d, p)}."] + panel_claims(
        claims, f"fig2{p}", scale, d.get("trends", ()), d.get("order") or runs[0].get("order"))
  return out


def figure2(data: dict, iid: dict | None = None, claims: list[dict] | None = None,
            scale: str | None = None, panels: str = "abcd"):
  """Figure 2 (``panels``: all four in a 2 x 2 grid, or one) as a matplotlib figure.

  Args:
    data: a ``figure2.json`` (`experiments/figures.py`): panels A-C, and D without ``iid``.
    iid: the ``figure2.json`` of the i.i.d. cells, for panel D; or None.
    claims: ``results/claims.json``'s list, or None (verdicts from ``data['trends']``).
    scale: the claims' scale to show.
    panels: ``"abcd"`` or one letter.
  """
  plt = _plt()
  captions = figure2_captions(data, iid, claims, scale)
  src = _fig2_sources(data, iid)
  if len(panels) == 1:
    w, h = _PANEL_SIZE[panels]
    lines = wrap(captions[panels], 95).count("\n") + 1  # room for the caption below
    fig = plt.figure(figsize=(w, h + 0.11 * lines), layout="constrained")
    PANELS[panels](fig, src[panels], captions[panels], width=95)
    return fig
  fig = plt.figure(figsize=(11.5, 8.6), layout="constrained")
  subs = fig.subfigures(2, 2, wspace=0.03, hspace=0.03, width_ratios=(1, 1.15),
                        height_ratios=(1, 1.25))
  for p, sub in zip("abcd", subs.ravel()):
    PANELS[p](sub, src[p], captions[p], width=85)
  return fig


def figure2_files(data: dict, output_dir: str, iid: dict | None = None,
                  claims: list[dict] | None = None, scale: str | None = None,
                  formats: Sequence[str] = FORMATS) -> list[str]:
  """Writes ``figure2.<format>`` and each panel alone (`FIG2_FILES`) under ``output_dir``."""
  scale = scale or figure2_scale(data, output_dir)
  paths = []
  with style():
    paths += save(figure2(data, iid, claims, scale), os.path.join(output_dir, "figure2"),
                  formats)
    for p, stem in FIG2_FILES.items():
      paths += save(figure2(data, iid, claims, scale, panels=p), os.path.join(output_dir, stem),
                    formats)
  return paths


# ----------------------------------------------------------------------------- Tables 1, 2

def load_cells(results_dir: str, table: str) -> dict[tuple[str, str, str], dict]:
  """``(row, column, scale) -> cell`` of ``results/table<table>/*.json``."""
  out = {}
  for path in sorted(glob.glob(os.path.join(results_dir, f"table{table}", "*.json"))):
    row = os.path.splitext(os.path.basename(path))[0]
    for scale, columns in (read_json(path) or {}).items():
      if isinstance(columns, dict):
        for column, cell in columns.items():
          if isinstance(cell, dict):
            out[(row, column, scale)] = cell
  return out


def table_rows(table: str, cells) -> list[str]:
  """The paper's rows in its order, then the others run (beyond the paper), sorted."""
  paper = list(PAPER_TABLES[table])
  return paper + sorted({r for r, _, _ in cells} - set(paper), key=lambda r: (
      list(METHODS).index(r) if r in METHODS else len(METHODS), r))


def _unit(table: str) -> float:
  return 100.0 if table == "2" else 1.0  # Table 2 in % error, as the paper


def level(value) -> float | None:
  """A no-learning level as stored: a number, or ``{'mean', 'stderr', ...}``
  (`flpjax.baselines`); None when absent or not finite."""
  v = value.get("mean") if isinstance(value, dict) else value
  try:
    v = float(v)
  except (TypeError, ValueError):
    return None
  return v if math.isfinite(v) else None


def _levels(levels: dict | None) -> dict[str, float]:
  """``{readable name: value}`` of a ``baselines`` / ``no_learning`` dict."""
  out = {}
  for name, value in (levels or {}).items():
    if level(value) is not None:
      out[str(name).replace("_", " ")] = level(value)
  return out


def _baselines(cell: dict, row: str) -> dict[str, float]:
  """A cell's no-learning levels: its ``baselines`` and (feature reuse) its networks
  evaluated without plasticity (``no_plasticity``)."""
  out = _levels(cell.get("baselines"))
  if level(cell.get("no_plasticity")) is not None:
    out[f"{method_name(row)} without plasticity"] = level(cell["no_plasticity"])
  return out


def _scale_note(cells, scale: str) -> str:
  """``'mean ± s.e. over 5-6 networks'`` of a scale's cells (s.e. over lifetimes with one)."""
  n = sorted({len(c.get("per_seed") or []) for k, c in cells.items()
              if k[2] == scale and c.get("status") == "done"})
  if n == [1]:
    return "1 network, mean ± s.e. over lifetimes"
  return f"mean ± s.e. over {'-'.join(map(str, sorted({n[0], n[-1]})))} networks"


def _table_claim_lines(claims: list[dict] | None, table: str) -> list[str]:
  """The table's claims at its smallest scale (one line each) and a count of the others:
  every claim at every scale would not fit under the axes (all are in RESULTS.md)."""
  lines = panel_claims(claims, f"table{table}", None) if claims else []
  if not lines:
    return []
  first = next((s for s in _SCALE_NAMES if any(l.startswith(f"{s} scale") for l in lines)), None)
  shown = [l for l in lines if first and l.startswith(f"{first} scale")]
  rest = [l for l in lines if l not in shown]
  return shown + ([f"Other scales (results/claims.json, RESULTS.md): {_verdicts(rest)}."]
                  if rest else [])


def table_figure(results_dir: str, table: str, claims: list[dict] | None = None):
  """Table ``table`` as a figure: one panel per column (see the module docstring)."""
  plt = _plt()
  from matplotlib import transforms  # pylint: disable=g-import-not-at-top
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  cells = load_cells(results_dir, table)
  rows, columns, unit = table_rows(table, cells), COLUMNS[table], _unit(table)
  done = {k for k, c in cells.items() if c.get("status") == "done" and c.get("mean") is not None}
  scales = [s for s in _SCALE_NAMES if any(k[2] == s for k in done)]
  shown_rows = {column: [r for r in rows if PAPER_TABLES[table].get(r, {}).get(column)
                         or any((r, column, s) in done for s in scales)] for column in columns}
  fig, axes = plt.subplots(
      1, len(columns), figsize=(0.36 * sum(len(v) + 2 for v in shown_rows.values()) + 3.2, 4.6),
      layout="constrained", squeeze=False,
      gridspec_kw={"width_ratios": [len(shown_rows[c]) + 1 for c in columns]})
  slots = ["paper"] + scales  # left to right within a method
  offsets = (np.arange(len(slots)) - (len(slots) - 1) / 2) * 0.16
  baseline_styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
  base_handles, notes = {}, []
  diverged_any = False
  for ax, column in zip(axes[0], columns):
    rows = shown_rows[column]
    pts = []  # (x, mean, se, per-network, color, marker, hollow)
    for i, row in enumerate(rows):
      paper = PAPER_TABLES[table].get(row, {}).get(column)
      if paper:
        pts.append((i + offsets[0], paper[0], paper[1], [], PAPER_COLOR, "D", True))
      for j, scale in enumerate(scales, start=1):
        c = cells.get((row, column, scale))
        if not c or c.get("status") != "done" or c.get("mean") is None:
          continue
        nets = [unit * v for v in arr(c.get("per_seed") or []).ravel() if np.isfinite(v)]
        pts.append((i + offsets[j], unit * c["mean"], None if c.get("stderr") is None else
                    unit * c["stderr"], nets, method_color(row), SCALES[scale],
                    bool(c.get("diverged_networks"))))
    baselines = {}
    for (row, col, scale), c in cells.items():
      if col == column and c.get("status") == "done":
        for name, value in _baselines(c, row).items():
          baselines.setdefault((name, scale), unit * value)
    values = [p[1] for p in pts] + list(baselines.values())
    finite = [v for v in values if np.isfinite(v)]
    cut = OFF_SCALE * float(np.median(finite)) if finite and np.median(finite) > 0 else np.inf
    shown = [v for v in finite if v <= cut] + [n for p in pts for n in p[3] if n <= cut]
    log = wants_log(shown)
    edge = transforms.blended_transform_factory(ax.transData, ax.transAxes)
    for x, mean, se, nets, color, marker, hollow in pts:
      if mean > cut:  # off the axis: an arrow at the top edge with the value
        ax.plot(x, 0.98, marker="^", color=color, transform=edge, clip_on=False)
        ax.text(x + 0.08, 0.97, _fmt(mean), transform=edge, fontsize=6, rotation=90, ha="left",
                va="top", color=color)
        notes.append(f"{column}: a value of {_fmt(mean)} is off the axis (arrow)")
        continue
      if nets:
        ax.plot(np.full(len(nets), x), [min(n, cut) for n in nets], "_", color=color,
                alpha=0.45, markersize=5, zorder=1)
      lower = se if se is not None else 0.0
      if log and se is not None and mean - se <= 0:
        lower = mean * 0.9
      ax.errorbar(x, mean, yerr=None if se is None else [[lower], [se]], fmt=marker,
                  color=color, markerfacecolor="white" if hollow else color,
                  markeredgewidth=1.1, capsize=2, markersize=5 if marker != "D" else 4.5,
                  zorder=3, elinewidth=0.9)
      diverged_any |= hollow and color != PAPER_COLOR
    for key, value in sorted(baselines.items()):  # key: (name, scale); one style per key
      if value > cut:
        continue
      ls = baseline_styles[list(dict.fromkeys([*base_handles, key])).index(key)
                           % len(baseline_styles)]
      base_handles.setdefault(key, Line2D([], [], color="0.45", linewidth=0.9, linestyle=ls,
                                          label=f"{key[0]} ({key[1]})"))
      ax.axhline(value, color="0.45", linewidth=0.9, linestyle=ls, zorder=0)
    if log:
      ax.set_yscale("log")
    if shown:
      lo, hi = min(v for v in shown if v > 0) if log else 0.0, max(shown)
      ax.set_ylim((lo / 2, hi * 2.5) if log else (0, hi * 1.12))
    n_paper = sum(r in PAPER_TABLES[table] for r in rows)
    if len(rows) > n_paper:
      ax.axvline(n_paper - 0.5, color="0.5", linewidth=0.6, linestyle="--")
      ax.text(n_paper - 0.4, 0.01, "beyond the paper →", transform=edge, fontsize=6.5,
              va="bottom", ha="left", color="0.3")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([method_name(r) for r in rows], rotation=45, ha="right",
                       rotation_mode="anchor")
    for t, r in zip(ax.get_xticklabels(), rows):
      t.set_color(method_color(r))
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_title(COLUMN_NAMES[column])
    ax.grid(True, axis="y", which="major")
  axes[0, 0].set_ylabel("meta-test MSE" if table == "1" else "meta-test error (%)")
  gray = "0.35"
  handles = [Line2D([], [], color=PAPER_COLOR, marker="D", markerfacecolor="white",
                    linestyle="", label=f"paper (Table {table})")]
  handles += [Line2D([], [], color=gray, marker=SCALES[s], linestyle="",
                     label=f"ours, {s} scale: {_scale_note(cells, s)}") for s in scales]
  handles.append(Line2D([], [], color=gray, marker="_", linestyle="", alpha=0.6,
                        label="ours, single networks"))
  if diverged_any:
    handles.append(Line2D([], [], color=gray, marker="o", markerfacecolor="white",
                          linestyle="", label="some networks diverged\n(mean over the rest)"))
  handles += list(base_handles.values())
  axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                     borderaxespad=0, title="colour: method", title_fontsize=7,
                     alignment="left")
  fig.suptitle(f"Table {table}: " + ("regression, meta-test MSE" if table == "1" else
                                     "classification, meta-test % error"),
               fontweight="bold", x=0.01, ha="left")
  lines = ([("Log axis where a column's values span decades; error bars: one standard error; "
             "the paper's values average 2 (regression) or 5 (classification) networks.")]
           + _table_claim_lines(claims, table) + sorted(set(notes)))
  _caption(fig, lines, 200)
  return fig


# ----------------------------------------------------------------------------- curves

def curve_scales(results_dir: str, table: str) -> list[str]:
  cells = load_cells(results_dir, table)
  return [s for s in _SCALE_NAMES if any(k[2] == s and c.get("curve") for k, c in cells.items())]


def curves_figure(results_dir: str, table: str, scale: str):
  """The validation learning curves of table ``table``'s cells at ``scale``: one panel per
  column, one line per method (mean ± s.e. over networks, single networks faint), the
  curves' ``no_learning`` levels as horizontal lines."""
  plt = _plt()
  cells = {k: c for k, c in load_cells(results_dir, table).items()
           if k[2] == scale and isinstance(c.get("curve"), dict)}
  rows = table_rows(table, cells)
  columns = [c for c in COLUMNS[table] if any(k[1] == c for k in cells)]
  fig, axes = plt.subplots(1, max(len(columns), 1), figsize=(4.2 * max(len(columns), 1) + 2, 3.4),
                           layout="constrained", squeeze=False)
  styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
  first = next(iter(cells.values()), {}).get("curve", {})
  metric, split = first.get("metric", "mse"), first.get("split", "")
  unit = 100.0 if metric == "error" else 1.0
  base_styles = {}
  for ax, column in zip(axes[0], columns):
    values = []
    for row in rows:
      c = cells.get((row, column, scale))
      if not c:
        continue
      curve = c["curve"]
      nets = unit * arr(curve["networks"])
      band(ax, curve["step"], nets, method_color(row), method_name(row), log=True)
      values += [v for v in nets.ravel() if np.isfinite(v)]
    seen = {}  # the curves' no-learning levels, else the cells' baselines
    for row in rows:
      c = cells.get((row, column, scale)) or {}
      for name, value in (_levels(c.get("curve", {}).get("no_learning"))
                          or _levels(c.get("baselines"))).items():
        seen.setdefault(name, unit * value)
    for name, value in seen.items():
      ls = base_styles.setdefault(name, styles[len(base_styles) % len(styles)])
      ax.axhline(value, color="0.45", linewidth=0.9, linestyle=ls, label=f"{name} (no learning)")
      values.append(value)
    if wants_log(values):
      ax.set_yscale("log")
    ax.set_title(COLUMN_NAMES.get(column, column))
    ax.set_xlabel("meta-step")
  if not columns:
    _empty(axes[0, 0], f"no cell of Table {table} at the {scale} scale keeps a curve")
  axes[0, 0].set_ylabel(("MSE" if metric == "mse" else "error (%)")
                        + (f"\n{split}" if split else ""))
  seen = {}
  for ax in axes[0]:
    for h, l in zip(*ax.get_legend_handles_labels()):
      seen.setdefault(l, h)
  if seen:
    axes[0, -1].legend(list(seen.values()), list(seen), loc="upper left",
                       bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
  fig.suptitle(f"Table {table} at the {scale} scale: learning curves during meta-training",
               fontweight="bold", x=0.01, ha="left")
  return fig


# ----------------------------------------------------------------------------- section 7.1

def section71_figure(results_dir: str, claims: list[dict] | None = None):
  """Section 7.1 per scale: feature reuse (1), the same networks meta-trained on as
  feature reuse for as many more meta-steps (the claim's control), FLP (3) meta-trained
  further from them with their feed-forward initialisation frozen, the same from a frozen
  random initialisation, FLP (3) from scratch (mean ± s.e. over networks, single
  networks as ticks)."""
  plt = _plt()
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  found = []
  for path in sorted(glob.glob(os.path.join(results_dir, "section71*.json"))):
    d = read_json(path)
    if d:
      found.append((d.get("scale") or "reduced", d))
  found.sort(key=lambda s: _SCALE_NAMES.index(s[0]) if s[0] in _SCALE_NAMES else 9)
  fig, ax = plt.subplots(figsize=(7.6, 3.6), layout="constrained")
  parts = (("feature_reuse", "reuse1"), ("reuse_equal_steps", "reuse1"),
           ("extended", "section71"), ("random_init", "section71"), ("flp3", "flp3"))
  offsets = (np.arange(len(found)) - (len(found) - 1) / 2) * 0.2
  values = []
  for (scale, d), off in zip(found, offsets):
    for i, (key, row) in enumerate(parts):
      r = d.get(key) or {}
      if r.get("mean") is None:
        continue
      nets = [v for v in arr(r.get("per_seed") or []).ravel() if np.isfinite(v)]
      ax.plot(np.full(len(nets), i + off), nets, "_", color=method_color(row), alpha=0.45)
      ax.errorbar(i + off, r["mean"], yerr=r.get("stderr"), fmt=SCALES.get(scale, "o"),
                  color=method_color(row), capsize=2,
                  markerfacecolor="white" if r.get("diverged_networks") else method_color(row))
      values += nets + [r["mean"]]
  if wants_log(values):
    ax.set_yscale("log")
  ax.set_xticks(range(len(parts)))
  ax.set_xticklabels(["Feature reuse (1)", "Feature reuse (1),\nas many more\nmeta-steps",
                      "FLP (3) from feature\nreuse's frozen init",
                      "FLP (3) from a\nfrozen random init", "FLP (3) from\nscratch"])
  for t, (_, row) in zip(ax.get_xticklabels(), parts):
    t.set_color(method_color(row))
  ax.set_ylabel("meta-test MSE\n(continual sine)")
  handles = [Line2D([], [], color="0.35", marker=SCALES.get(s, "o"), linestyle="",
                    label=f"{s} scale ({d.get('seeds', '?')} networks)") for s, d in found]
  handles.append(Line2D([], [], color="0.35", marker="_", linestyle="", label="single networks"))
  if any((d.get(k) or {}).get("diverged_networks") for _, d in found for k, _ in parts):
    handles.append(Line2D([], [], color="0.35", marker="o", markerfacecolor="white",
                          linestyle="", label="some networks diverged\n(mean over the rest)"))
  ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
  if not found:
    _empty(ax, "no results/section71*.json")
  fig.suptitle("Section 7.1: feature-reuse initialisation, then FLP", fontweight="bold", x=0.01,
               ha="left")
  _caption(fig, [("The paper (section 7.1): meta-training further with plasticity in more "
                  "layers, from a feature-reuse network with its feed-forward initialisation "
                  "frozen, does not improve beyond feature reuse.")]
           + panel_claims(claims, "section71", None), 110)
  return fig


# ----------------------------------------------------------------------------- all figures

def figure2_dirs(results_dir: str) -> list[str]:
  """Folders holding a ``figure2.json`` (``results/figures*`` and their subfolders)."""
  paths = glob.glob(os.path.join(results_dir, "figures*", "figure2.json"))
  paths += glob.glob(os.path.join(results_dir, "figures*", "*", "figure2.json"))
  return sorted(os.path.dirname(p) for p in paths)


def _iid_of(folder: str) -> dict | None:
  return read_json(os.path.join(folder, "iid", "figure2.json"))


def plot_all(results_dir: str = "results", log=print,
             formats: Sequence[str] = FORMATS) -> list[str]:
  """Redraws every figure of ``results_dir`` from its JSONs as ``formats`` (none: build
  the figures only); returns the files written. ``log`` gets a line per element skipped."""
  claims = load_claims(results_dir)
  if claims is None:
    log(f"{os.path.join(results_dir, 'claims.json')} absent: Figure 2's captions show "
        "figure2.json's own verdicts, the tables' none")
  paths = []
  for folder in figure2_dirs(results_dir):
    data = read_json(os.path.join(folder, "figure2.json"))
    if data:
      paths += figure2_files(data, folder, _iid_of(folder), claims, formats=formats)
  tables = os.path.join(results_dir, "tables")
  with style():
    for table in ("1", "2"):
      if not load_cells(results_dir, table):
        log(f"no results/table{table}/*.json: Table {table} not drawn")
        continue
      paths += save(table_figure(results_dir, table, claims),
                    os.path.join(tables, f"table{table}"), formats)
      scales = curve_scales(results_dir, table)
      if not scales:
        log(f"Table {table}: no cell keeps a learning curve ('curve' absent); curves not drawn")
      for scale in scales:
        paths += save(curves_figure(results_dir, table, scale),
                      os.path.join(tables, f"table{table}_curves_{scale}"), formats)
    if glob.glob(os.path.join(results_dir, "section71*.json")):
      paths += save(section71_figure(results_dir, claims), os.path.join(tables, "section71"),
                    formats)
  return paths


def _verdicts(lines: Sequence[str]) -> str:
  """``'2 holds, 1 fails'``: the verdicts (upper-case words after ``': '``) of caption lines."""
  v = [m.group(1) for l in lines for m in [re.search(r": ([A-Z]{4,})\b", l)] if m]
  return ", ".join(f"{v.count(k)} {k.lower()}" for k in dict.fromkeys(v)) or "none"


def _scale_key(scale: str | None) -> int:
  return _SCALE_NAMES.index(scale) if scale in _SCALE_NAMES else len(_SCALE_NAMES)


def figure_snippets(results_dir: str = "results") -> dict[str, str]:
  """Markdown embedding each figure drawn under ``results_dir`` with a one-line caption,
  keyed so that RESULTS.md can place each next to what it supports: ``table1``,
  ``table1_curves_<scale>``, ``table2``, ..., ``section71``, ``figure2_<folder>``
  (folder below ``results_dir``, ``/`` as ``_``; smallest scale first). Paths are
  relative to ``results_dir`` (where RESULTS.md is). Figures not drawn yet are left out."""
  claims = load_claims(results_dir)
  source = ("results/claims.json" if claims is not None
            else "figure2.json; results/claims.json absent")
  out = {}

  def add(key, stem, alt, caption):
    if os.path.isfile(os.path.join(results_dir, stem + ".png")):
      out[key] = f"![{alt}]({stem}.png)\n\n**{alt}.** {caption} ([SVG]({stem}.svg))"

  src = "`python experiments/plot.py`"
  for table in ("1", "2"):
    cells = load_cells(results_dir, table)
    scales = sorted({k[2] for k in cells}, key=_scale_key)
    verdict = ("" if claims is None else "; claims on it (`results/claims.json`): "
               + _verdicts(panel_claims(claims, f"table{table}", None)))
    add(f"table{table}", f"tables/table{table}", f"Table {table}",
        f"Ours (mean ± s.e. over networks; scales {', '.join(scales)}) beside the paper's "
        f"values (black diamonds), one panel per column; no-learning baselines as lines{verdict}."
        f" Drawn by {src} from `results/table{table}/*.json`.")
    for scale in _SCALE_NAMES:
      add(f"table{table}_curves_{scale}", f"tables/table{table}_curves_{scale}",
          f"Table {table}, {scale} scale: learning curves",
          "Validation curves during meta-training (mean ± s.e. over networks, single networks "
          f"faint; no-learning levels as lines). Drawn by {src}.")
  add("section71", "tables/section71", "Section 7.1",
      "FLP (3) meta-trained further from feature reuse's networks with their feed-forward "
      "initialisation frozen, against feature reuse (1) and FLP (3) from scratch, per scale. "
      f"Drawn by {src} from `results/section71*.json`.")
  folders = [(f, read_json(os.path.join(f, "figure2.json")) or {}) for f in figure2_dirs(results_dir)]
  folders.sort(key=lambda fd: (_scale_key(figure2_scale(fd[1], fd[0])), fd[0]))
  for folder, data in folders:
    rel = os.path.relpath(folder, results_dir).replace(os.sep, "/")
    scale = figure2_scale(data, folder)
    iid = _iid_of(folder)
    caps = figure2_captions(data, iid, claims, scale)
    verdicts = "; ".join(f"{p.upper()} {_verdicts(caps[p][1:])}" for p in "abcd")
    runs = data.get("runs") or [{}]
    panels = " ".join(f"[{p.upper()}]({rel}/{FIG2_FILES[p]}.png)" for p in "abcd")
    add("figure2_" + rel.replace("/", "_"), f"{rel}/figure2",
        f"Figure 2, {scale or '?'} scale ({runs[0].get('task', '?')}, "
        f"{runs[0].get('order', '?')} cells{'; D: i.i.d. cells' if iid else ''})",
        f"{_networks_text(data)}. Claim verdicts: {verdicts} ({source}). "
        f"Panels alone: {panels}.")
  return out


def figures_markdown(results_dir: str = "results") -> str:
  """Every snippet of `figure_snippets`, in order, as one markdown string."""
  return "\n\n".join(figure_snippets(results_dir).values()) + "\n"


# ----------------------------------------------------------------------------- workdir curves

def smooth(values: Sequence[float], weight: float) -> list[float]:
  """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped."""
  out, acc, norm = [], 0.0, 0.0
  for v in values:
    if math.isfinite(v):
      acc, norm = weight * acc + (1 - weight) * v, weight * norm + (1 - weight)
    out.append(acc / norm if norm > 0 else float("nan"))
  return out


def _float(v: Any) -> float:
  try:
    return float(v)
  except (TypeError, ValueError):
    return float("nan")


def _workdir_colors(labels: Sequence[str]) -> list[str]:
  """A method's colour for each workdir naming one (when no other names the same), else
  the default cycle."""
  rows = [row_of(l) for l in labels]
  return [method_color(r) if r and rows.count(r) == 1 else f"C{i % 10}"
          for i, r in enumerate(rows)]


def plot_curves(workdirs: Sequence[str], output: str, metric: str = "loss",
                smoothing: float = 0.6) -> None:
  """Draws the learning curves of ``workdirs`` to the PNG file ``output``.

  Left: the train records' ``metric`` (the meta-loss by default) against the
  meta-step, raw (faint) and smoothed, on a log scale when it spans more than
  a decade, with skipped (non-finite) meta-steps marked. Right: the evaluation
  results (MSE or error, with standard errors) against the meta-step.

  Args:
    workdirs: run directories holding ``metrics.jsonl``.
    output: the PNG file to write.
    metric: a field of the train records.
    smoothing: weight of the moving average in [0, 1) (0: no smoothing).

  Raises:
    WorkdirError: a workdir has no metrics, or none has ``metric``; ``output``
      cannot be written.
  """
  if not 0 <= smoothing < 1:
    raise ValueError(f"smoothing={smoothing}: expected a number in [0, 1)")
  runs = [(os.path.basename(os.path.normpath(w)) or w, read_metrics(w)) for w in workdirs]
  if not any(r.get(metric) is not None for _, records in runs for r in records
             if r["kind"] == "train"):
    fields = sorted({k for _, records in runs for r in records if r["kind"] == "train"
                     for k in r} - {"step", "kind"})
    raise WorkdirError(f"--metric={metric}: no train record of {', '.join(workdirs)} has it"
                       f" (available: {', '.join(fields) or 'none yet'})")

  with style() as plt:
    fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    positive, spans = True, []
    for (label, records), color in zip(runs, _workdir_colors([l for l, _ in runs])):
      train = [(r["step"], _float(r.get(metric))) for r in records if r["kind"] == "train"]
      if train:
        steps, values = zip(*train)
        ax_train.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
        ax_train.plot(steps, smooth(values, smoothing), color=color, label=label)
        finite = [v for v in values if math.isfinite(v)]
        positive &= all(v > 0 for v in finite)
        spans += finite
      skipped = [r["step"] for r in records if r["kind"] == "nonfinite"]
      if skipped:
        ax_train.plot(skipped, [0] * len(skipped), "x", color=color,
                      transform=ax_train.get_xaxis_transform(), clip_on=False,
                      label=f"{label}: skipped steps")
      evals = [r for r in records if r["kind"] == "eval"]
      if evals:
        name = "mse" if "mse" in evals[0] else "error"
        ax_eval.errorbar([r["step"] for r in evals], [_float(r.get(name)) for r in evals],
                         yerr=[_float(r.get(f"{name}_stderr")) for r in evals], color=color,
                         marker="o", capsize=3, label=f"{label} ({name})")
    if positive and spans and max(spans) > 10 * min(spans):
      ax_train.set_yscale("log")
    ax_train.set(xlabel="meta-step", ylabel=metric, title=f"train: {metric}"
                 + (f" (smoothed {smoothing})" if smoothing else ""))
    ax_train.legend(fontsize="small")
    ax_eval.set(xlabel="meta-step", ylabel="meta-test", title="evaluation (mean +- s.e.)")
    if ax_eval.has_data():
      ax_eval.legend(fontsize="small")
    else:
      ax_eval.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                   transform=ax_eval.transAxes)
    try:
      fig.savefig(output, dpi=120)
    except OSError as e:
      raise WorkdirError(f"--output={output}: cannot write it ({e.strerror})") from None
    finally:
      plt.close(fig)
