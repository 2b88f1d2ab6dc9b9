r"""FLP with all 9 layers plastic, i.i.d. (the authors' published example command; not a table row) (incremental sine waves).

  python experiments/train.py --config=experiments/configs/sine_flp9_iid.py \
      --workdir=workdirs/sine_flp9_iid

Paper scale: 20,000 meta-steps of one 400-step lifetime (10 functions x 40
batches of 32), the 9-layer MLP (widths 300, sixth layer 900), meta-learning
rates of Table 3; evaluation over 50 lifetimes of fresh functions.
Plasticity meta-learning rate 1e-8 (the published command; the paper swept
1e-6..1e-9 per network), initial plasticity 0, initial feedback strength 0.5,
error feedback, Oja's rule, pre-feedback presynaptic activity, output layer
not clamped (REFERENCE.md 2).
"""

from flpjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.order = "iid"
  c.plastic_layers = 9
  return c
