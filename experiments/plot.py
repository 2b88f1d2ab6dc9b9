r"""Draws the learning curves of one or more runs to a PNG.

  python experiments/plot.py --workdirs=workdirs/sine_flp3_iid,workdirs/sine_grad3_iid \
      --output=curves.png

Left: the meta-loss of each run (``metrics.jsonl`` train records, or
``--metric``) against the meta-step, raw and smoothed; right: its evaluations.
Works on running runs too. Exit status 2 on bad input, with one ``error:`` line.
"""

from absl import app, flags, logging

from flpjax import summary

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Run directories, comma-separated.")
_OUTPUT = flags.DEFINE_string("output", "curves.png", "The PNG file to write.")
_METRIC = flags.DEFINE_string("metric", "loss", "Field of the train records to draw.")
_SMOOTHING = flags.DEFINE_float("smoothing", 0.6, "Moving-average weight in [0, 1).",
                                lower_bound=0.0, upper_bound=0.99)
flags.mark_flags_as_required(["workdirs"])


def main(argv):
  del argv
  try:
    summary.plot_curves(_WORKDIRS.value, _OUTPUT.value, _METRIC.value, _SMOOTHING.value)
  except summary.WorkdirError as e:
    summary.exit_with_error(e, 2)
  logging.info("wrote %s", _OUTPUT.value)


if __name__ == "__main__":
  app.run(main, flags_parser=summary.parse_flags_or_exit)
