r"""Table 2 (online 5-way 5-shot classification, one image per step): every row and column.

  python experiments/train.py \
      --config=experiments/configs/fewshot.py:dataset=omniglot,order=iid,row=flp2 \
      --workdir=workdirs/omniglot_flp2

The argument after ``:`` is ``key=value,...`` (defaults in brackets):

* ``dataset`` [omniglot]: ``omniglot`` or ``mini_imagenet``.
* ``order`` [iid]: ``iid`` (shuffled stream) or ``continual`` (all of one class's
  images, then the next class's; the Omniglot (continual) column).
* ``row`` [flp2]: ``reuse1`` Feature reuse (1), ``flp2`` FLP (2), ``grad2``
  Gradient-based (2), ``oml2`` Original OML (2); `BEYOND_ROWS` (``dfa2``,
  ``fa2``, ``rule2``, ``rule2r``, ``rule2m``, ``pfb2``).
* ``scale`` [paper]: ``paper``, ``reduced`` (`REDUCED`, CPU-sized), or ``mini`` (`MINI`:
  the CPU miniature of ``reproduce.py --scale=mini``, `MINI_SEEDS` networks, no sweep).
* ``sweep`` [false]: one network per plasticity meta-learning rate of `SWEEPS`,
  compared on validation classes (Omniglot: the last `VALIDATION_CLASSES`
  meta-training classes, held out of the sweep's meta-training; mini-ImageNet:
  its 'val' split); never the meta-test classes (B.1). Not for oml2.
* ``runs`` [1]: independent networks meta-trained together (``config.runs``).
* ``both_orders`` [false]: the i.i.d. and continual columns together, ``runs``
  networks of each in one program (``config.run_orders``; ``order`` is ignored).
* ``plasticity_lr``: the plasticity meta-learning rate (the one a sweep chose;
  the readout's for reuse1).
* ``init_ff_from``: the FLP (2) workdir a grad2 run starts from (B.2):

  python experiments/train.py \
      --config=experiments/configs/fewshot.py:row=grad2,init_ff_from=workdirs/omniglot_flp2 \
      --workdir=workdirs/omniglot_grad2

Data: ``--config.fewshot.data_dir=<dir>`` (default ``$FLPJAX_DATA_DIR``, else
``~/.local/share/flpjax``; see README, Data).

reuse1, flp2, grad2 at paper scale: 40,000 meta-steps of one 25-step lifetime
(meta-batch 1), tested on 500 lifetimes of unseen classes (5 support images per
class, queries = the rest; Omniglot: from the first 15 of each class, queries
the remaining 5; mini-ImageNet: the first 30 and the remaining 30; docs/fidelity.md
6). Network: 6 convs of 128 channels, dense 128, readout 1000 (mini-ImageNet:
256 channels, dense 1000, RGB input; docs/fidelity.md 1.4).
FLP (flp2; reuse1 with only the readout plastic): readout clamped to the
one-hot target, penultimate layer driven by ReLU(B y + c) with beta fixed at 1,
Oja's rule, plasticity meta-learning rates of Table 4 as per-layer groups:
penultimate 1e-3, readout 1e-5 (mini-ImageNet: 1e-4 and 1e-8).
grad2: inner SGD (cross-entropy) on the two dense layers' weights and biases
with a learned rate per parameter (initialised at 0.03, meta-learning rate
1e-4), first-order meta-gradient. The reference's per-episode readout reset is
off (``--config.gradient.reset_readout=True``).

oml2: OML's proxy task (docs/fidelity.md OML 2.3, 3, 5; flpjax/protocols/oml.py).
Per meta-step one trajectory class (Omniglot: classes 481..962 of the
background split; mini-ImageNet: all 64 training classes), S = 10 single-image
inner SGD steps on it (rate 0.03, OML's README, for Omniglot, whose argparse
default 0.01 is ``--config.gradient.lr=0.01``; 0.01 for mini-ImageNet) on fc1
and the readout (weights and biases), first-order; meta-loss: cross-entropy
over the 1000 raw class ids on a remember batch of 10 images (Omniglot: classes
0..480; mini-ImageNet: all 64, so they may overlap as OML's) plus the class's
held-out images. Before every episode the readout row of the trajectory class
is re-initialised (kaiming; bias and Adam moments kept); the meta-gradient is
clamped elementwise to +-5; Adam 1e-4 on every tensor; 40,000 meta-steps (OML
ran 200,000 on mini-ImageNet: ``--config.meta.steps=200000``); seed 10000.
Network: OML's, 6 convs of 256 channels, dense 1024, readout 1000. The proxy
task has no stream order: ``order`` only orders the evaluation stream.
Evaluation: FLP's protocol (above) with OML's adaptation rule: readout
re-initialised, fc1 kept, inner Adam at the rate OML's search picks (Omniglot:
12 rates, mini-ImageNet: 9, 0.03 ... 3e-6; 5 searches, mode) by accuracy on the
support images, never on the test images. ``--config.oml.eval_rule=sgd``:
FLP's gradient evaluation instead (no reset, SGD at ``gradient.lr``).

  python experiments/train.py \
      --config=experiments/configs/fewshot.py:dataset=mini_imagenet,row=oml2 \
      --workdir=workdirs/oml_mini_imagenet

``python experiments/reproduce.py`` runs these strings for Table 2 and records
each in its results.
"""

from flpjax import config as config_lib
from flpjax.protocols import oml

SCALES = ("paper", "reduced", "mini")
#: Beyond-the-paper rows (section 8; not in Table 2), FLP (2)'s network and plastic layers:
#: ``dfa2`` / ``fa2`` Figure 1's feedback-alignment learners (inner SGD at grad2's
#: rate along the error sent through fixed random feedback); ``rule2`` / ``rule2r`` /
#: ``rule2m`` FLP (2) with a meta-learned local rule per layer (generalised Hebbian
#: from Oja's coefficients / from random ones / a small MLP); ``pfb2`` FLP (2) whose
#: feedback weights learn within the lifetime.
BEYOND_ROWS = ("dfa2", "fa2", "rule2", "rule2r", "rule2m", "pfb2")
CHOICES = dict(dataset=("omniglot", "mini_imagenet"), order=("iid", "continual"),
               row=("reuse1", "flp2", "grad2", "oml2") + BEYOND_ROWS, scale=SCALES)
#: FLP's plasticity meta-learning rates (Table 4): (penultimate, readout).
FLP_RATES = {"omniglot": (1e-3, 1e-5), "mini_imagenet": (1e-4, 1e-8)}

#: Reduced scale (CPU-sized), every row; FLP rows also raise the readout's rate.
REDUCED = {
    "fewshot.image_size": 28, "net.strides": (2, 2, 2), "net.channels": 32, "net.hidden": 64,
    "meta.steps": 1500, "meta.lr.ff": 1e-3, "meta.lr.fb": 1e-3,
    "eval.lifetimes": 200, "eval.batch": 50, "checkpoint_every": 500, "log_every": 250,
}
REDUCED_FLP = {"meta.lr.alpha_readout": 1e-2}
#: The CPU miniature (BUILD_NOTES "The CPU miniature"): the reduced network,
#: images and meta-steps, `MINI_SEEDS` networks per cell, the reduced sweep's choice as
#: the fixed plasticity rate (no sweep), the paper's plain Adam (no network diverged at
#: this scale, so no remedy is applied).
MINI = {**REDUCED, "meta.steps": 4000, "eval.curve_every": 500, "eval.curve_lifetimes": 100}
MINI_FLP = {**REDUCED_FLP, "meta.lr.alpha": 1e-2}
MINI_SEEDS = 5
#: The MLP rule's hidden width at the mini scale (as sine.py's: cost linear in it; with
#: 8, 0.52 s per meta-step of the 5 networks on the dev CPU, 7x FLP (2)'s).
MINI_MLP_HIDDEN = 2
#: Plasticity meta-learning rates swept per network (B.1), by learner and scale.
#: The gradient rows have no sweep: the gradient learner has no plasticity group
#: (its inner SGD rate is fixed). Before learners declared their groups, the
#: reduced cells "swept" `alpha` on it, a group with no leaves: the runs differed
#: only by seed, and the sweep picked a seed on validation lifetimes.
SWEEPS = {
    ("flp", "paper"): (1e-2, 1e-3, 1e-4, 1e-5),  # Table 4 (penultimate)
    ("flp", "reduced"): (1e-2, 1e-3),
}
#: Omniglot classes held out of a sweep's meta-training to compare its rates.
VALIDATION_CLASSES = 100


def get_config(arg=None):
  a = config_lib.parse_arg(arg, CHOICES, dataset="omniglot", order="iid", row="flp2",
                           scale="paper", **config_lib.RUN_ARGS)
  imagenet = a.dataset == "mini_imagenet"
  c = config_lib.base_config()
  c.task = a.dataset
  c.order = a.order
  c.meta.steps = 40000
  c.eval.lifetimes = 500
  c.eval.seed = 222
  c.eval.batch = 25
  c.plastic_layers = 1 if a.row == "reuse1" else 2
  if a.row in ("rule2", "rule2r", "rule2m"):
    c.learner = "learned_rule"
    c.learned_rule.rule = "mlp" if a.row == "rule2m" else "hebbian"
    c.learned_rule.init = {"rule2": "oja", "rule2r": "random", "rule2m": ""}[a.row]
  elif a.row == "pfb2":
    c.learner = "plastic_feedback"
  elif a.row in ("dfa2", "fa2"):
    c.learner = a.row[:-1]
    c.alignment.lr = 0.03  # grad2's inner rate
  if a.row in ("reuse1", "flp2", "rule2", "rule2r", "rule2m", "pfb2"):
    c.flp.signal = "target"
    c.flp.clamp_readout = True
    c.flp.init_beta = 1.0
    c.meta.lr.beta = 0.0  # beta clamped at 1 (Table 4)
    c.meta.lr.alpha, c.meta.lr.alpha_readout = FLP_RATES[a.dataset]
  elif a.row == "grad2":
    c.learner = "gradient"
    c.gradient.lr = 0.03
    c.gradient.learn_lr = True
    c.meta.lr.lr = 1e-4  # the learned inner rates' group (Table 4)
  if a.row != "oml2":
    if imagenet:
      c.net.channels = 256
      c.net.hidden = 1000
  else:
    c.estimator = "oml"
    c.seed = 10000
    c.learner = "gradient"
    c.gradient.lr = 0.01 if imagenet else 0.03
    c.net.channels = 256
    c.net.hidden = 1024
    c.meta.lr.ff = 1e-4
    c.oml.steps = 10
    c.oml.remember = 10
    c.oml.trajectory_classes = (0, 64) if imagenet else (481, 963)
    c.oml.remember_classes = (0, 64) if imagenet else (0, 481)
    c.oml.reset_row = True
    c.oml.clamp = 5.0
    c.oml.eval_rule = "adam"
    if imagenet:
      c.oml.eval_lrs = oml.MINI_IMAGENET_EVAL_LRS  # the 9 rates of OML's evaluation
  if a.scale == "reduced":
    for path, value in {**REDUCED, **(REDUCED_FLP if c.learner == "flp" else {})}.items():
      config_lib.set_field(c, path, value)
  if a.scale == "mini":
    flp = MINI_FLP if config_lib.build.reads(c, "flp") else {}
    for path, value in {**MINI, **flp}.items():
      config_lib.set_field(c, path, value)
    c.runs = MINI_SEEDS
    if a.row == "rule2m":
      c.learned_rule.hidden = MINI_MLP_HIDDEN
  if a.sweep and a.dataset == "omniglot":
    c.fewshot.validation_classes = VALIDATION_CLASSES
  sweep = None if c.estimator == "oml" else SWEEPS.get((c.learner, a.scale))
  config_lib.apply_run_args(c, a, sweep, a.row)
  return c
