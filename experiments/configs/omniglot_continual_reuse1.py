r"""Table 2 row: Feature reuse (1), Omniglot (continual) (online 5-way 5-shot, one image per step).

  python experiments/train.py --config=experiments/configs/omniglot_continual_reuse1.py \
      --workdir=workdirs/omniglot_continual_reuse1

``omniglot_reuse1.py`` with the classes in order (all of one class's images,
then the next class's; REFERENCE.md 6); everything else, including the
meta-learning rates, as there.
"""

import os

from flpjax import config as config_lib


def get_config():
  c = config_lib.load_file(os.path.join(os.path.dirname(__file__), "omniglot_reuse1.py"))
  c.order = "continual"
  return c
