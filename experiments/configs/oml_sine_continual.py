r"""Table 1 row: Original OML (3), continual (incremental sine waves).

  python experiments/train.py --config=experiments/configs/oml_sine_continual.py \
      --workdir=workdirs/oml_sine_continual

OML's regression meta-training (REFERENCE-OML.md 1.3-1.4, 5; flpjax/oml.py),
in OML's own continual order: the 9-layer MLP (widths 300, sixth layer 900)
with its last 3 layers plastic (``--rln 6``); inner plain SGD at 0.003 on
their weights and biases, first-order meta-gradient, 400 steps of 32 points
(function 0's 40 batches, then function 1's, ...); meta-loss on the 320 query
points; Adam 1e-4 on every tensor with MultiStepLR([1500, 2500, 3500], 0.3) in
one run of 20,000 meta-steps; a pool of 400 functions; seed 1000; no
clipping, no row reset.

Evaluation: the shared protocol (REFERENCE-OML 1.5): 50 lifetimes of fresh
functions in continual order, one SGD pass at 0.003, plastic layers not
reset; mean query MSE.
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.estimator = "oml"
  c.order = "continual"
  c.seed = 1000
  c.learner = "gradient"
  c.plastic_layers = 3
  c.gradient.lr = 0.003
  c.meta.steps = 20000
  c.meta.lr.ff = 1e-4
  c.meta.ff_milestones = (1500, 2500, 3500)
  c.meta.ff_decay = 0.3
  c.oml.reset_row = False
  c.oml.clamp = 0.0
  return c
