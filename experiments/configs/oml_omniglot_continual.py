r"""Table 2 row: Original OML (2), Omniglot (continual column; online 5-way 5-shot).

  python experiments/train.py --config=experiments/configs/oml_omniglot_continual.py \
      --workdir=workdirs/oml_omniglot_continual

Data: ``--config.fewshot.data_dir=<dir>`` (default ``../shared/data``; see README).

Meta-training: exactly that of oml_omniglot.py (OML's proxy task has no stream
order; REFERENCE-OML.md 2.3, 5): one trajectory class from 481..962, S = 10
single-image inner SGD steps at 0.03 on fc1 + readout, first-order; meta-loss
on 10 remember images of classes 0..480 plus 2 held-out images, raw ids over
1000 logits; per-episode readout-row reset; meta-gradient clamped to +-5;
Adam 1e-4 on every tensor; 40,000 meta-steps; seed 10000. Network: 6 convs of
256 channels, dense 1024, readout 1000.

Evaluation: FLP's protocol with a class-sorted stream (all 5 images of one
class, then the next; 500 lifetimes, tested on images 15-19) and OML's
adaptation rule (readout reset, fc1 kept, inner Adam at the rate OML's search
picks on the support images). ``--config.oml.eval_rule=sgd``: FLP's gradient
evaluation instead.
"""

import os

from flpjax import config as config_lib


def get_config():
  c = config_lib.load_file(os.path.join(os.path.dirname(__file__), "oml_omniglot.py"))
  c.order = "continual"
  return c
