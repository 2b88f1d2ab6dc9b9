r"""Figure 2 of the paper from stored runs.

  python experiments/figures.py \
      --flp_workdirs=workdirs/sine_reuse1_continual,workdirs/sine_flp2_continual,workdirs/sine_flp3_continual \
      --grad_workdirs=workdirs/sine_grad3_continual \
      --output_dir=results/figures

Restores the latest checkpoint of every run (`flpjax.train.restore_params`,
config from the run's ``config.json``), runs the analyses of
`flpjax.analysis` on ``--lifetimes`` fresh lifetimes of the run's meta-test
task (``--seed``; runs with the same task settings see the same lifetimes)
and writes, under ``--output_dir``, ``figure2.json``: every number of the
panels (means over lifetimes, standard errors, the per-lifetime values of
panel A, per network), with the runs' configs' essentials and the claims
decided over networks (``trends``, see `trends`). Non-finite values are written as
null. The panels:

* A (``fig2a_frozen_readout``): per FLP run, against its number of plastic
  layers, the query MSE (error for classification) of the network itself
  and of its initial feature extractor, frozen, with a readout fitted to
  convergence on the lifetime's data (`analysis.frozen_readout`); lifetimes in
  the run's own order.
* B (``fig2b_interference``): per run (sine only), continual lifetimes: mean
  squared change of the outputs on earlier functions caused by learning each
  function, against the number of functions encountered
  (`analysis.interference`; the first function has no earlier one).
* C (``fig2c_alignment``): per FLP run, the cosine between each plastic
  layer's weight update and the negative gradient of the step's loss, against
  the step, lifetimes in the run's own order (`analysis.gradient_alignment`).
* D (``fig2d_update_magnitude``): per plastic layer, the Frobenius norm of the
  weight updates of every run over i.i.d. lifetimes (`analysis.update_norms`).

Then it draws them (`flpjax.plots.figure2_files`): ``figure2.{png,svg}``, the
four panels laid out as the paper's figure, and each panel alone
(``<panel>.{png,svg}``), mean over networks with a standard-error band, claim
verdicts in the captions (from ``results/claims.json`` when present, else
``trends``). Panel D comes from ``<output_dir>/iid/figure2.json`` when that
exists. To redraw every figure from the stored JSONs without analysing
anything: ``python experiments/plot.py``; to recompute the claims of a stored
``figure2.json`` too (after a change to `trends`): ``--from_json --output_dir=...``.

Flags ``--flp_workdirs`` and ``--grad_workdirs`` take comma-separated
workdirs of `experiments/train.py` runs (``config.learner`` must match).
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from scipy import stats

from flpjax import analysis, lifetime, plots, train
from flpjax import config as config_lib
from flpjax.experiment.aggregate import below, over_networks
from flpjax.reporting import errors
from flpjax.reporting.statistics import Z
from flpjax.tasks.base import metrics as task_metrics

_FLP = flags.DEFINE_list("flp_workdirs", [], "Workdirs of FLP runs.")
_GRAD = flags.DEFINE_list("grad_workdirs", [], "Workdirs of gradient-based runs.")
_FLP_PARAMS = flags.DEFINE_list(
    "flp_params", [], "Stored meta-parameters of FLP runs (`evaluate.py --export`, e.g. "
    "results/params/omniglot_flp2_h200_25000), analysed like workdirs.")
_OUTPUT = flags.DEFINE_string("output_dir", "results/figures", "Where the PNGs and JSON go.")
_LIFETIMES = flags.DEFINE_integer("lifetimes", 20, "Lifetimes per run and analysis.")
_BATCH = flags.DEFINE_integer("batch", 5, "Lifetimes evaluated together (vmap).")
_SEED = flags.DEFINE_integer("seed", 2020, "Seed of the analysed lifetimes.")
_NETWORKS = flags.DEFINE_integer(
    "networks", 1, "Networks analysed per multi-run workdir (config.runs > 1): the first N; "
    "0 = all. With several, figure2.json's 'trends' decides each panel's claim at 2 "
    "standard errors over the networks.", lower_bound=0)
_READOUT_FIT = flags.DEFINE_enum(
    "readout_fit", "auto", ["auto", *analysis.READOUT_FITS],
    "Frozen-readout fit (panel A): 'auto' = least_squares for regression, softmax for"
    " classification.")

#: Panel C: a layer's alignment curve counts as periodic below this p-value
#: (`analysis.periodicity`); the fraction expected by chance.
PERIODIC_P = 0.01
_FROM_JSON = flags.DEFINE_bool(
    "from_json", False, "Analyse nothing: recompute the claims ('trends') of --output_dir's "
    "figure2.json from its stored numbers and redraw its figures (after a change to the "
    "claims' tests).")

FILES = tuple(f"{stem}.png" for stem in plots.FIG2_FILES.values()) + ("figure2.json",)


class Run(NamedTuple):
  workdir: str
  config: Any
  learner: Any
  params: Any
  step: int
  network: int = 0
  networks: int = 1

  @property
  def kind(self) -> str:
    return "FLP" if self.config.learner == "flp" else "Gradient"

  @property
  def label(self) -> str:
    name = os.path.basename(self.workdir.rstrip("/"))  # a workdir, or a stored-params path
    if name == "final":  # experiments/reproduce.py's layout: <cell>/final
      name = os.path.basename(os.path.dirname(self.workdir.rstrip("/")))
    net = f" net {self.network}" if self.networks > 1 else ""
    return f"{self.kind} ({self.config.plastic_layers}) {name}{net}"


def load_runs(workdir: str, learner: str, networks: int = 1) -> list[Run]:
  """Config and latest meta-parameters of a workdir's networks: the first ``networks``
  of a multi-run job (0: all).

  Raises:
    ConfigError, train.WorkdirError: not a usable run of ``learner``.
  """
  if os.path.isfile(workdir + ".npz"):  # stored meta-parameters (train.export_params)
    config, params, step = train.load_params_file(workdir)
  else:
    config, params, step = train.load_run(workdir)
  if config.learner != learner:
    raise config_lib.ConfigError(
        f"{workdir}: config.learner={config.learner!r}, but it was passed as a {learner!r} run")
  if config.runs == 1:
    return [Run(workdir, config, config_lib.make_learner(config), params, step)]
  n = config.runs if networks == 0 else min(networks, config.runs)
  one = config.copy_and_resolve_references()
  one.runs, one.sweep.lrs = 1, ()
  learner_ = config_lib.make_learner(one)
  return [Run(workdir, one, learner_, jax.tree.map(lambda a, r=r: a[r], params), step, r, n)
          for r in range(n)]


def load_run(workdir: str, learner: str) -> Run:
  """The first network of `load_runs`."""
  return load_runs(workdir, learner)[0]


def _tasks(config):
  """``order -> meta-test task`` of a run's config, built once per order."""
  cache = {}

  def task(order: str):
    if order not in cache:
      c = ml_collections.ConfigDict(config.to_dict())
      c.order = order
      cache[order] = config_lib.make_tasks(c)[1]
    return cache[order]

  return task


def _plain(x) -> Any:
  """Nested lists of floats, non-finite values as None (strict JSON)."""
  a = np.asarray(x, np.float64)
  if a.ndim == 0:
    return float(a) if math.isfinite(a) else None
  return [_plain(v) for v in a]


def _mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard error over the leading (lifetime) axis, ignoring NaNs."""
  values = np.asarray(values, np.float64)
  n = np.sum(np.isfinite(values), axis=0)
  with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (no update) stay NaN
    mean = np.nanmean(values, axis=0)
    se = np.nanstd(values, axis=0, ddof=1) / np.sqrt(n)
  return mean, np.where(n > 1, se, np.nan)


def analyse(runs: list[Run], *, lifetimes: int, batch: int, seed: int,
            readout_fit: str = "auto") -> dict[str, Any]:
  """Every panel's numbers (see the module docstring)."""
  key = jax.random.key(seed)
  out = {"lifetimes": lifetimes, "seed": seed, "runs": [], "fig2a": [], "fig2b": [],
         "fig2c": [], "fig2d": []}
  for run in runs:
    c, learner = run.config, run.learner
    output = config_lib.output_kind(c)
    layers = [int(l) for l in learner.plastic_layers]
    out["runs"].append({"workdir": run.workdir, "learner": c.learner, "task": c.task,
                        "order": c.order, "plastic_layers": c.plastic_layers,
                        "plastic_layer_ids": layers, "step": run.step, "label": run.label,
                        "network": run.network})
    kw = dict(lifetimes=lifetimes, batch=batch)
    task = _tasks(c)
    logging.info("analysing %s", run.label)

    if c.learner == "flp":
      metric = "mse" if output == "regression" else "error"
      fit = readout_fit if readout_fit != "auto" else (
          "least_squares" if output == "regression" else "softmax")

      def panel_a(params, episode, k):
        pred = lifetime.query_predictions(learner, params, episode, key=k, remat="none")
        learned = task_metrics(output, pred, episode.yq)
        frozen = analysis.frozen_readout(learner, params, episode, output=output, method=fit,
                                         key=k)
        return learned[metric], frozen[metric]

      learned, frozen = analysis.map_lifetimes(panel_a, run.params, task(c.order), key, **kw)
      entry = {"workdir": run.workdir, "label": run.label, "plastic_layers": c.plastic_layers,
               "metric": metric, "readout_fit": fit, "order": c.order, "network": run.network}
      for name, values in (("learned", learned), ("frozen", frozen)):
        mean, se = _mean_se(values)
        entry.update({name: _plain(values), f"{name}_mean": _plain(mean),
                      f"{name}_stderr": _plain(se)})
      out["fig2a"].append(entry)

      align = analysis.map_lifetimes(
          lambda p, e, k: analysis.gradient_alignment(learner, p, e.xs, e.ys, output=output, key=k),
          run.params, task(c.order), key, **kw)
      mean, se = _mean_se(align)
      functions = c.sine.n_functions if c.task == "sine" else None
      out["fig2c"].append({"workdir": run.workdir, "label": run.label, "order": c.order,
                           "layers": layers, "functions": functions, "alignment": _plain(mean),
                           "alignment_stderr": _plain(se), "network": run.network})

    if c.task == "sine":
      f = c.sine.n_functions
      interf = analysis.map_lifetimes(
          lambda p, e, k: analysis.interference(learner, p, e, f, key=k),
          run.params, task("continual"), key, **kw)[:, 1:]
      mean, se = _mean_se(interf)
      out["fig2b"].append({"workdir": run.workdir, "label": run.label, "learner": c.learner,
                           "plastic_layers": c.plastic_layers, "network": run.network,
                           "functions_encountered": list(range(2, f + 1)),
                           "interference": _plain(mean), "interference_stderr": _plain(se)})
    else:
      logging.info("%s: panel B (interference) is for the sine task only; skipped", run.label)

    norms, rel = analysis.map_lifetimes(
        lambda p, e, k: (analysis.update_norms(learner, p, e.xs, e.ys, key=k),
                         analysis.update_norms(learner, p, e.xs, e.ys, relative=True, key=k)),
        run.params, task("iid"), key, **kw)
    out["fig2d"].append({"workdir": run.workdir, "label": run.label, "learner": c.learner,
                         "plastic_layers": c.plastic_layers, "network": run.network,
                         "layers": layers, "update_norm": _plain(_mean_se(norms)[0]),
                         "relative_update_norm": _plain(_mean_se(rel)[0])})
  return out


def trends(results: dict[str, Any]) -> list[dict]:
  """Figure 2's claims, each decided at 2 standard errors over independently
  meta-trained networks (one value per network: its mean over lifetimes).

  A: the frozen initial network with a fitted readout is worse for the FLP run with
     the most plastic layers than for the one with the fewest (the paper: FLP
     networks that learn better start with worse features).
  B: FLP's interference (mean over functions) is below the gradient-based run's.
  C: FLP's updates are weakly aligned with the gradient: every layer's mean cosine
     below 0.5. Some layers' updates are negatively correlated with the gradient:
     for some FLP row, layer and lifetime step, the cosine is below 0 by ``z``
     standard errors over networks, ``z`` the 2-standard-error level
     Bonferroni-corrected for the row-layer-steps tested. The alignment
     repeats with the task's functions (sine runs with the functions of
     ``functions``): per network, the fraction of its plastic layers whose curve
     depends on the step within a function (`analysis.periodicity` below
     ``PERIODIC_P``) is above the ``PERIODIC_P`` expected by chance.
  D: FLP's non-readout updates are larger, and its readout updates smaller, than
     the gradient-based run's (mean Frobenius norm over the i.i.d. lifetime).
  """
  out = []
  nanmean = lambda x: float(np.nanmean(_array(x))) if np.isfinite(_array(x)).any() else None
  a = {}
  for r in results["fig2a"]:
    a.setdefault(r["plastic_layers"], []).append(r["frozen_mean"])
  if len(a) >= 2:
    lo, hi = min(a), max(a)
    fa, fb = over_networks(a[lo]), over_networks(a[hi])
    out.append({"panel": "A", "claim": f"frozen initial features with a fitted readout are "
                f"worse for FLP ({hi}) than for FLP ({lo})", "fewer": fa, "more": fb,
                "verdict": below(fa, fb)})
  by = lambda rows, kind: [r for r in rows if (r["learner"] == "flp") == (kind == "flp")]
  b_flp = over_networks([nanmean(r["interference"]) for r in by(results["fig2b"], "flp")
                          if r["plastic_layers"] > 1])
  b_grad = over_networks([nanmean(r["interference"]) for r in by(results["fig2b"], "grad")])
  if b_flp["networks"] and b_grad["networks"]:
    out.append({"panel": "B", "claim": "FLP's interference is below the gradient-based "
                "learner's", "flp": b_flp, "gradient": b_grad, "verdict": below(b_flp, b_grad)})
  cos = {}
  for r in results["fig2c"]:
    arr = _array(r["alignment"])
    for i, layer in enumerate(r["layers"]):
      cos.setdefault(layer, []).append(float(np.nanmean(arr[:, i])))
  if cos:
    layers = {str(l): over_networks(v) for l, v in cos.items()}
    half = {"mean": 0.5, "stderr": 0.0}
    verdicts = [below(v, half) for v in layers.values()]
    out.append({"panel": "C", "claim": "FLP's updates are weakly aligned with the gradient "
                "(every layer's mean cosine below 0.5)", "layers": layers,
                "verdict": ("holds" if all(v == "holds" for v in verdicts)
                            else "fails" if "fails" in verdicts else verdicts[0])})
  out += _alignment_shape(results)
  d = {}
  for r in results["fig2d"]:
    norms = _array(r["update_norm"])
    for i, layer in enumerate(r["layers"]):
      key = ("flp" if r["learner"] == "flp" else "grad", r["plastic_layers"], layer)
      d.setdefault(key, []).append(float(np.nanmean(norms[:, i])))
  for n in sorted({k[1] for k in d if k[0] == "flp"}):
    for (kind, m, layer), grads in d.items():
      if kind != "grad" or m != n or ("flp", n, layer) not in d:
        continue
      flp_, grad_ = over_networks(d[("flp", n, layer)]), over_networks(grads)
      readout = layer == max(l for (k, mm, l) in d if k == "grad" and mm == n)
      claim = (f"FLP ({n})'s {'readout' if readout else f'layer {layer}'} updates are "
               f"{'smaller' if readout else 'larger'} than gradient-based ({n})'s")
      out.append({"panel": "D", "claim": claim, "layer": layer, "flp": flp_,
                  "gradient": grad_, "verdict": (below(flp_, grad_) if readout
                                                 else below(grad_, flp_))})
  return out


def _functions(results: dict[str, Any]) -> int | None:
  """Functions per lifetime of a sine figure (``fig2c``'s ``functions``; older files:
  panel B's functions encountered plus the first)."""
  for r in results["fig2c"]:
    if r.get("functions"):
      return int(r["functions"])
  b = results.get("fig2b") or []
  return len(b[0]["functions_encountered"]) + 1 if b else None


def _alignment_shape(results: dict[str, Any]) -> list[dict]:
  """Panel C's two claims on the alignment curves' shape (see `trends`): some layer
  negatively correlated with the gradient, and periodicity with the functions."""
  f = _functions(results)
  arrays = [(r, _array(r["alignment"])) for r in results["fig2c"]] if f else []
  rows = [(r, arr) for r, arr in arrays if arr.shape[0] % f == 0]
  if not rows:
    return []
  curves, fractions = {}, []
  for r, arr in rows:
    periodic = []
    for i, layer in enumerate(r["layers"]):
      curves.setdefault((r["label"].split(")")[0] + ")", layer), []).append(arr[:, i])
      periodic.append(analysis.periodicity(arr[:, i], arr.shape[0] // f) < PERIODIC_P)
    fractions.append(float(np.mean(periodic)))
  out = []
  tests = sum(len(c[0]) for c in curves.values())
  z = float(stats.norm.isf(stats.norm.sf(Z) / tests))
  lowest = None
  for (row, layer), per_net in curves.items():
    per_net = np.asarray(per_net)
    for step in range(per_net.shape[1]):
      o = over_networks(list(per_net[:, step]))
      if o["stderr"] and (lowest is None or o["mean"] / o["stderr"]
                          < lowest["mean"] / lowest["stderr"]):
        lowest = dict(o, row=row, layer=int(layer), step=step + 1, steps=per_net.shape[1])
  if lowest is not None:
    ratio = lowest["mean"] / lowest["stderr"]
    where = (f"lowest: {lowest['row']} layer {lowest['layer']} at lifetime step "
             f"{lowest['step']} of {lowest['steps']}, {lowest['mean']:.3g} = {ratio:.1f} "
             f"standard errors; needs -{z:.2f}, Bonferroni over {tests} row-layer-steps")
    out.append({"panel": "C", "claim": "some FLP layers' updates are negatively correlated "
                "with the gradient (a layer's cosine at a lifetime step below 0 over "
                "networks)", "lowest": lowest, "z": z,
                "verdict": f"{'holds' if ratio < -z else 'fails'} ({where})"})
  periodic = over_networks(fractions)
  chance = {"mean": PERIODIC_P, "stderr": 0.0, "networks": 0}
  out.append({"panel": "C", "claim": "FLP's alignment with the gradient repeats with the "
              f"task's functions (per network, the fraction of plastic layers whose cosine "
              f"depends on the step within a function, one-way ANOVA p < {PERIODIC_P:g}, "
              "above chance)", "periodic": periodic, "chance": chance,
              "verdict": below(chance, periodic)})
  return out


def _array(x) -> np.ndarray:
  return np.asarray([np.nan if v is None else v for v in np.ravel(np.asarray(x, object))],
                    np.float64).reshape(np.shape(np.asarray(x, object)))


def _results_root(output_dir: str) -> str:
  """The results folder above ``output_dir`` holding ``claims.json`` (its parent, or the
  parent's parent for ``figures_<scale>/iid``); the parent when neither has one."""
  parent = os.path.dirname(os.path.normpath(output_dir))
  for d in (parent, os.path.dirname(parent)):
    if os.path.isfile(os.path.join(d, "claims.json")):
      return d
  return parent


def plot(results: dict[str, Any], output_dir: str) -> list[str]:
  """Figure 2 under ``output_dir`` (`flpjax.plots.figure2_files`: the four panels together
  and each alone, PNG and SVG); panel D from ``output_dir/iid/figure2.json`` when there
  is one. Returns the files written."""
  iid = None
  if os.path.isfile(os.path.join(output_dir, "iid", "figure2.json")):
    with open(os.path.join(output_dir, "iid", "figure2.json")) as f:
      iid = json.load(f)
  return plots.figure2_files(results, output_dir, iid,
                             plots.load_claims(_results_root(output_dir)))


def main(argv):
  del argv
  errors.quiet_libraries()
  if _FROM_JSON.value:
    path = os.path.join(_OUTPUT.value, FILES[4])
    if not os.path.isfile(path):
      print(f"error: --from_json: no {path}", file=sys.stderr)
      sys.exit(2)
    with open(path) as f:
      results = json.load(f)
    results["trends"] = trends(results)
    with open(path, "w") as f:
      json.dump(results, f, indent=1)
    plot(results, _OUTPUT.value)
    logging.info("recomputed the claims of %s and redrew its figures", path)
    return
  try:
    if not _FLP.value and not _GRAD.value and not _FLP_PARAMS.value:
      raise config_lib.ConfigError(
          "give at least one of --flp_workdirs, --grad_workdirs, --flp_params")
    if _LIFETIMES.value < 2 or _BATCH.value < 1:
      raise config_lib.ConfigError(
          f"--lifetimes={_LIFETIMES.value}, --batch={_BATCH.value}: expected >= 2 and >= 1")
    runs = ([r for w in _FLP.value + _FLP_PARAMS.value
             for r in load_runs(w, "flp", _NETWORKS.value)]
            + [r for w in _GRAD.value for r in load_runs(w, "gradient", _NETWORKS.value)])
  except (config_lib.ConfigError, FileNotFoundError, train.WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  results = analyse(runs, lifetimes=_LIFETIMES.value, batch=_BATCH.value, seed=_SEED.value,
                    readout_fit=_READOUT_FIT.value)
  results["trends"] = trends(results)
  results["command"] = " ".join(sys.argv)
  results["device"] = jax.devices()[0].device_kind
  os.makedirs(_OUTPUT.value, exist_ok=True)
  with open(os.path.join(_OUTPUT.value, FILES[4]), "w") as f:
    json.dump(results, f, indent=1)
  written = plot(results, _OUTPUT.value)
  logging.info("wrote %s under %s", ", ".join(os.path.basename(p) for p in written + [FILES[4]]),
               _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
