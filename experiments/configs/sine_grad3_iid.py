r"""Table 1 row: Gradient-based (3), i.i.d. (incremental sine waves).

  python experiments/train.py --config=experiments/configs/sine_grad3_iid.py \
      --workdir=workdirs/sine_grad3_iid \
      --config.init_ff_from=workdirs/sine_flp3_iid

Paper scale: 20,000 meta-steps of one 400-step lifetime (10 functions x 40
batches of 32), the 9-layer MLP (widths 300, sixth layer 900), meta-learning
rates of Table 3; evaluation over 50 lifetimes of fresh functions.
Inner SGD on the plastic layers' weights and biases with one learned learning
rate per parameter (initialised at 0.003, the reference's fixed rate;
meta-learning rate 1e-6), first-order meta-gradient as the reference
(REFERENCE.md 4). The paper initialises this baseline with the feed-forward
weights of the matching FLP run (B.2): pass --config.init_ff_from=<that workdir>.
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.order = "iid"
  c.plastic_layers = 3
  c.learner = "gradient"
  c.gradient.lr = 0.003
  c.gradient.learn_lr = True
  c.meta.lr.alpha = 1e-6
  return c
