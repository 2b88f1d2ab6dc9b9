r"""Quick start: a small sine FLP (3) meta-training on CPU, in a few minutes.

  python experiments/train.py --config=experiments/configs/sine_quick.py \
      --workdir=workdirs/sine_quick

Reduced from the paper's FLP (3) i.i.d. row (sine_flp3_iid.py): hidden widths
64 instead of 300/900, 5 functions x 8 batches of 16 points per lifetime
instead of 10 x 40 x 32, 3,000 meta-steps instead of 20,000, and meta-learning
rates for plasticity and feedback raised so that something is learned in that
time. Evaluates before and after meta-training and prints both.
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.net.widths = (64,) * 8
  c.sine.n_functions = 5
  c.sine.steps_per_function = 8
  c.sine.batch_size = 16
  c.sine.queries_per_function = 32
  c.sine.pool_size = 200
  c.plastic_layers = 3
  c.meta.steps = 3000
  c.meta.lr.ff = 1e-3
  c.meta.lr.fb = 1e-3
  c.meta.lr.alpha = 1e-6
  c.meta.lr.beta = 1e-3
  c.eval.lifetimes = 50
  c.eval.at_start = True
  c.checkpoint_every = 500
  c.log_every = 250
  return c
