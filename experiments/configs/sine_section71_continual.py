r"""Section 7.1: FLP (3) continual sine, starting from a feature-reuse network, ff frozen.

  python experiments/train.py --config=experiments/configs/sine_section71_continual.py \
      --workdir=workdirs/sine_section71_continual \
      --config.extend_from=workdirs/sine_reuse1_continual

Takes a network meta-trained for feature reuse (``sine_reuse1_continual.py``),
enables feedback and plasticity in the two layers below the readout, keeps the
feed-forward initialisation frozen at the feature-reuse one (``meta.lr.ff = 0``)
and continues meta-training the feedback, plasticity and feedback strengths
(`flpjax.analysis.extend_plasticity`). The paper reports that this does not
improve on feature reuse: initial weights optimised for feature reuse are not
those that let FLP learn. Compare its ``eval.json`` with the feature-reuse run's
and with ``sine_flp3_continual.py``'s. Without ``--config.extend_from`` it would
train FLP (3) with a frozen random initialisation.
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.order = "continual"
  c.plastic_layers = 3
  c.meta.lr.ff = 0.0
  return c
