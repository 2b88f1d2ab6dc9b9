r"""Table 2 row: Original OML (2), Omniglot (i.i.d. column; online 5-way 5-shot).

  python experiments/train.py --config=experiments/configs/oml_omniglot.py \
      --workdir=workdirs/oml_omniglot

Data: ``--config.fewshot.data_dir=<dir>`` (default ``../shared/data``; see README).

Meta-training: OML's proxy task (REFERENCE-OML.md 2.3, 5; flpjax/oml.py). Per
meta-step one trajectory class from classes 481..962 of the background split,
S = 10 single-image inner SGD steps on it (rate 0.03, the README's; OML's
argparse default 0.01 is ``--config.gradient.lr=0.01``) on fc1 and the readout
(weights and biases), first-order; meta-loss: cross-entropy over the 1000 raw
class ids on a remember batch of 10 images of classes 0..480 plus the class's
2 held-out images. Before every episode the readout row of the trajectory
class is re-initialised (kaiming; bias and Adam moments kept); the
meta-gradient is clamped elementwise to +-5; Adam 1e-4 on every tensor;
40,000 meta-steps; seed 10000.
Network: OML's, 6 convs of 256 channels, dense 1024, readout 1000
(``--config.net.channels=128 --config.net.hidden=128`` for FLP's smaller net).

Evaluation: FLP's protocol (500 lifetimes, 5 evaluation-set classes, 5 of the
first 15 images per class as a shuffled one-image-per-step stream, tested on
images 15-19, argmax over 1000 logits) with OML's adaptation rule: readout
re-initialised, fc1 kept, inner Adam at the rate that OML's search (12 rates,
5 searches, mode) picks by accuracy on the support images, never on the test
images. ``--config.oml.eval_rule=sgd``: FLP's gradient evaluation instead
(no reset, SGD at 0.03).
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.task = "omniglot"
  c.order = "iid"
  c.estimator = "oml"
  c.seed = 10000
  c.learner = "gradient"
  c.plastic_layers = 2
  c.gradient.lr = 0.03
  c.net.channels = 256
  c.net.hidden = 1024
  c.net.readout = 1000
  c.meta.steps = 40000
  c.meta.lr.ff = 1e-4
  c.oml.steps = 10
  c.oml.remember = 10
  c.oml.trajectory_classes = (481, 963)
  c.oml.remember_classes = (0, 481)
  c.oml.reset_row = True
  c.oml.clamp = 5.0
  c.oml.eval_rule = "adam"
  c.eval.lifetimes = 500
  c.eval.seed = 222
  c.eval.batch = 25
  return c
