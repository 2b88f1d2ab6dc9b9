r"""Table 2 row: FLP (2), Omniglot (online 5-way 5-shot, one image per step).

  python experiments/train.py --config=experiments/configs/omniglot_flp2.py \
      --workdir=workdirs/omniglot_flp2

Data: ``--config.fewshot.data_dir=<dir>`` (default ``../shared/data``; see README).
Paper scale: 40,000 meta-steps of one 25-step lifetime (meta-batch 1), tested
on 500 lifetimes of unseen classes (5 support images per class from the first
15 of each class, queries = the remaining 5; REFERENCE.md 6).
Network: 6 convs of 128 channels, dense 128, readout 1000 (REFERENCE.md 1.4).
FLP: readout clamped to the one-hot target, penultimate layer driven by
ReLU(B y + c) with beta fixed at 1, Oja's rule, plasticity meta-learning rates
of Table 4 as per-layer groups: penultimate 1e-3, readout 1e-5.
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.task = "omniglot"
  c.order = "iid"
  c.plastic_layers = 2
  c.meta.steps = 40000
  c.eval.lifetimes = 500
  c.eval.seed = 222
  c.eval.batch = 25
  c.flp.signal = "target"
  c.flp.clamp_readout = True
  c.flp.init_beta = 1.0
  c.meta.lr.beta = 0.0  # beta clamped at 1 (Table 4)
  c.meta.lr.alpha = 1e-3
  c.meta.lr.alpha_readout = 1e-5
  return c
