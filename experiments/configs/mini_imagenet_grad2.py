r"""Table 2 row: Gradient-based (2), mini-ImageNet (online 5-way 5-shot, one image per step).

  python experiments/train.py --config=experiments/configs/mini_imagenet_grad2.py \
      --workdir=workdirs/mini_imagenet_grad2

Data: ``--config.fewshot.data_dir=<dir>`` (default ``../shared/data``; see README).
Paper scale: 40,000 meta-steps of one 25-step lifetime (meta-batch 1), tested
on 500 lifetimes of unseen classes (5 support images per class from the first
30 of each class, queries = the remaining 30; REFERENCE.md 6).
Network: 6 convs of 256 channels, dense 1000, readout 1000, RGB input (REFERENCE.md 1.4).
Gradient-based: inner SGD (cross-entropy) on the two dense layers' weights
and biases with a learned rate per parameter (initialised at 0.03,
meta-learning rate 1e-4), first-order meta-gradient. The reference's
per-episode readout reset is off (``--config.gradient.reset_readout=True``).
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.task = "mini_imagenet"
  c.order = "iid"
  c.plastic_layers = 2
  c.meta.steps = 40000
  c.eval.lifetimes = 500
  c.eval.seed = 222
  c.eval.batch = 25
  c.net.channels = 256
  c.net.hidden = 1000
  c.learner = "gradient"
  c.gradient.lr = 0.03
  c.gradient.learn_lr = True
  c.meta.lr.alpha = 1e-4
  return c
