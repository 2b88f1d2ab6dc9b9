r"""Redraws every figure of ``results/`` from the committed JSONs, or draws runs' curves.

  python experiments/plot.py                      # every figure, PNG + SVG (< 1 min, 2 CPUs)
  python experiments/plot.py --markdown           # print the markdown that embeds them
  python experiments/plot.py --workdirs=workdirs/sine_flp3_iid,workdirs/sine_grad3_iid \
      --output=curves.png                         # learning curves of workdirs

Without ``--workdirs``: `flpjax.plots.plot_all` on ``--results_dir``, no training
and no analysis: Figure 2 per ``results/figures*/`` folder (the four panels together
and each alone), Tables 1 and 2 beside the paper's values
(``results/tables/table{1,2}``), the learning curves of the cells that keep
one (``results/tables/table{1,2}_curves_<scale>``) and section 7.1
(``results/tables/section71``); what each shows is in `flpjax.plots`'s
docstring. ``--markdown`` prints `flpjax.plots.figures_markdown` (each figure
embedded with a one-line caption, paths relative to ``results/``) and draws
nothing.

With ``--workdirs``: the meta-loss of each run (``metrics.jsonl`` train
records, or ``--metric``) against the meta-step, raw and smoothed, and its
evaluations, to ``--output``. Works on running runs too. Exit status 2 on bad
input, with one ``error:`` line.
"""

import time

from absl import app, flags, logging

from flpjax import plots
from flpjax.reporting import errors

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Run directories, comma-separated; without "
                              "them every figure of --results_dir is redrawn.")
_OUTPUT = flags.DEFINE_string("output", "curves.png", "The PNG file of --workdirs' curves.")
_METRIC = flags.DEFINE_string("metric", "loss", "Field of the train records to draw.")
_SMOOTHING = flags.DEFINE_float("smoothing", 0.6, "Moving-average weight in [0, 1).",
                                lower_bound=0.0, upper_bound=0.99)
_RESULTS = flags.DEFINE_string("results_dir", "results", "Where the JSONs are and the figures go.")
_FORMATS = flags.DEFINE_list("formats", list(plots.FORMATS), "File formats of the figures "
                             "(none: build them only, e.g. to check the JSONs).")
_MARKDOWN = flags.DEFINE_bool("markdown", False, "Print the markdown embedding the figures of "
                              "--results_dir instead of drawing.")


def main(argv):
  del argv
  if _WORKDIRS.value:
    try:
      plots.plot_curves(_WORKDIRS.value, _OUTPUT.value, _METRIC.value, _SMOOTHING.value)
    except errors.WorkdirError as e:
      errors.exit_with_error(e, 2)
    logging.info("wrote %s", _OUTPUT.value)
  elif _MARKDOWN.value:
    print(plots.figures_markdown(_RESULTS.value), end="")
  else:
    start = time.time()
    paths = plots.plot_all(_RESULTS.value, log=logging.info, formats=_FORMATS.value)
    print(f"wrote {len(paths)} files under {_RESULTS.value} in {time.time() - start:.1f} s")


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
