r"""Table 2 row: Original OML (2), mini-ImageNet (online 5-way 5-shot).

  python experiments/train.py --config=experiments/configs/oml_mini_imagenet.py \
      --workdir=workdirs/oml_mini_imagenet

Data: ``--config.fewshot.data_dir=<dir>`` (default ``../shared/data``; the
training split's tar must be present; see README).

Meta-training: OML's proxy task on the 64 training classes (REFERENCE-OML.md
3, 5; flpjax/oml.py): the trajectory class and the 10 remember images are both
drawn from all 64 classes (so they may overlap, as OML); S = 10 single-image
inner SGD steps at 0.01 (OML's mini-ImageNet default) on fc1 + readout,
first-order; 5 held-out images of the class join the meta set (15 images);
raw ids over 1000 logits; per-episode readout-row reset; meta-gradient
clamped to +-5; Adam 1e-4 on every tensor; seed 10000. Length: FLP's 40,000
episodes, as every other Table 2 row (OML ran 200,000:
``--config.meta.steps=200000``).
Network: 6 convs of 256 channels, dense 1024, readout 1000, RGB input.

Evaluation: FLP's 5-way protocol (500 lifetimes; the 20 test classes; 5
support images per class drawn from images 0-29, tested on images 30-59;
``--config.fewshot.shots=10`` for FLP's effective 10 shots, REFERENCE.md 6.3)
with OML's adaptation rule: readout re-initialised, fc1 kept, inner Adam at
the rate OML's search picks among its 9 mini-ImageNet rates (0.03 ... 3e-6) by
accuracy on the support images. ``--config.oml.eval_rule=sgd``: FLP's
gradient evaluation instead.
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.task = "mini_imagenet"
  c.order = "iid"
  c.estimator = "oml"
  c.seed = 10000
  c.learner = "gradient"
  c.plastic_layers = 2
  c.gradient.lr = 0.01
  c.net.channels = 256
  c.net.hidden = 1024
  c.net.readout = 1000
  c.meta.steps = 40000
  c.meta.lr.ff = 1e-4
  c.oml.steps = 10
  c.oml.remember = 10
  c.oml.trajectory_classes = (0, 64)
  c.oml.remember_classes = (0, 64)
  c.oml.reset_row = True
  c.oml.clamp = 5.0
  c.oml.eval_rule = "adam"
  c.oml.eval_lrs = (0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6)
  c.eval.lifetimes = 500
  c.eval.seed = 222
  c.eval.batch = 25
  return c
