r"""Table 2 row: Feature reuse (1), mini-ImageNet (online 5-way 5-shot, one image per step).

  python experiments/train.py --config=experiments/configs/mini_imagenet_reuse1.py \
      --workdir=workdirs/mini_imagenet_reuse1

Data: ``--config.fewshot.data_dir=<dir>`` (default ``../shared/data``; see README).
Paper scale: 40,000 meta-steps of one 25-step lifetime (meta-batch 1), tested
on 500 lifetimes of unseen classes (5 support images per class from the first
30 of each class, queries = the remaining 30; REFERENCE.md 6).
Network: 6 convs of 256 channels, dense 1000, readout 1000, RGB input (REFERENCE.md 1.4).
Feature reuse: only the clamped readout is plastic (Oja), with the readout
plasticity meta-learning rate of the FLP (2) row (1e-8).
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.task = "mini_imagenet"
  c.order = "iid"
  c.plastic_layers = 1
  c.meta.steps = 40000
  c.eval.lifetimes = 500
  c.eval.seed = 222
  c.eval.batch = 25
  c.net.channels = 256
  c.net.hidden = 1000
  c.flp.signal = "target"
  c.flp.clamp_readout = True
  c.flp.init_beta = 1.0
  c.meta.lr.beta = 0.0  # beta clamped at 1 (Table 4)
  c.meta.lr.alpha = 1e-4
  c.meta.lr.alpha_readout = 1e-8
  return c
