r"""Table 1 row: Original OML (3), i.i.d. (incremental sine waves).

  python experiments/train.py --config=experiments/configs/oml_sine_iid.py \
      --workdir=workdirs/oml_sine_iid

OML's regression meta-training (REFERENCE-OML.md 1.3-1.4, 5; flpjax/oml.py):
the 9-layer MLP (widths 300, sixth layer 900) with its last 3 layers plastic
(OML's ``--rln 6``); inner plain SGD at 0.003 on their weights and biases,
first-order meta-gradient, 400 steps of 32 points; meta-loss on the 320 query
points; Adam 1e-4 on every tensor with MultiStepLR([1500, 2500, 3500], 0.3)
(2.7e-6 from step 3500 on) in one run of 20,000 meta-steps; a pool of 400
functions; seed 1000; no clipping, no row reset.

Stream order: this i.i.d. column meta-trains on i.i.d. (batch-shuffled)
streams, as every other row of the table (REFERENCE-OML 5's default). OML's
own driver only has the continual order: ``--config.oml.train_order=continual``
meta-trains as OML and evaluates on i.i.d. streams (the same meta-training as
oml_sine_continual.py).

Evaluation: the shared protocol (REFERENCE-OML 1.5): 50 lifetimes of fresh
functions, one SGD pass at 0.003, plastic layers not reset; mean query MSE.
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.estimator = "oml"
  c.order = "iid"
  c.seed = 1000
  c.learner = "gradient"
  c.plastic_layers = 3
  c.gradient.lr = 0.003
  c.meta.steps = 20000
  c.meta.lr.ff = 1e-4
  c.meta.ff_milestones = (1500, 2500, 3500)
  c.meta.ff_decay = 0.3
  c.oml.train_order = ""  # '' = c.order; 'continual' = OML's training order
  c.oml.reset_row = False
  c.oml.clamp = 0.0
  return c
