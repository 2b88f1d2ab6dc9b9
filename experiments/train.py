r"""Meta-trains one configuration and evaluates it; resumes from the workdir.

  python experiments/train.py --config=experiments/configs/sine.py:row=flp3,order=iid \
      --workdir=workdirs/sine_flp3_iid

``--config=FILE:ARG`` passes ARG to the file's ``get_config`` (the row, column
and scale of experiments/configs/sine.py and fewshot.py; see their docstrings).
Any config field can be overridden, e.g. ``--config.meta.steps=1000``. Run the
same command again to resume an interrupted run from its latest checkpoint
(``--config.meta.steps`` may be raised to extend a finished one). Exit status:
0 done, 2 bad input (one ``error:`` line on stderr names the flag, field or
file), 3 stopped after ``config.meta.max_nonfinite`` non-finite meta-steps in a
row.
"""

from absl import app, flags
from ml_collections import config_flags

from flpjax import train
from flpjax.reporting import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  errors.quiet_libraries()
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except train.USER_ERRORS as e:
    errors.exit_with_error(e, 2)
  except train.NonFiniteError as e:
    errors.exit_with_error(e, 3)


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
