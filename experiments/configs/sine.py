r"""Table 1 (incremental sine waves): every row and column, at paper or reduced scale.

  python experiments/train.py --config=experiments/configs/sine.py:row=flp3,order=iid \
      --workdir=workdirs/sine_flp3_iid
  python experiments/train.py --config=experiments/configs/sine.py:row=quick \
      --workdir=workdirs/sine_quick

The argument after ``:`` is ``key=value,...`` (defaults in brackets):

* ``row`` [flp3]: ``reuse1`` Feature reuse (1), ``flp2`` / ``flp3`` FLP (2) / (3),
  ``grad3`` Gradient-based (3), ``oml3`` Original OML (3), ``dfa3`` / ``fa3`` direct /
  layer-wise feedback alignment with the last 3 layers plastic (Figure 1's learners;
  inner SGD at grad3's rate along the fixed random feedback's credit
  signal, feed-forward meta-learning rate 1e-4 as grad3), ``rule3`` / ``rule3r`` FLP (3)
  with a meta-learned generalised Hebbian rule per layer started from Oja's
  coefficients / random ones, ``rule3m`` with a small MLP rule per layer, ``pfb3`` / ``pfb3h`` FLP (3) with plastic feedback
  (output-only / also from the next plastic layer's activity; section 8.1, issue
  12), ``flp9`` FLP with all 9
  layers plastic (the authors' published example command; not a table row),
  ``section71`` section 7.1 (continual only), ``quick`` the quick start (reduced only).
* ``order`` [iid]: ``iid`` or ``continual``, the table's two columns.
* ``scale`` [paper; reduced for quick]: ``paper``, ``reduced`` (`REDUCED`, CPU-sized), or
  ``mini`` (`MINI`: the CPU miniature of ``reproduce.py --scale=mini``, `MINI_SEEDS`
  networks per cell, no sweep).
* ``sweep`` [false]: one network per plasticity meta-learning rate of `SWEEPS`,
  compared on held-out functions (B.1); not for oml3.
* ``runs`` [1]: independent networks meta-trained together (``config.runs``).
* ``plasticity_lr``: the plasticity meta-learning rate (the one a sweep chose).
* ``both_orders`` [false]: the i.i.d. and continual columns together, ``runs``
  networks of each in one program (``config.run_orders``; ``order`` is ignored).
* ``init_ff_from`` / ``extend_from``: the workdir a run starts from (grad3, B.2;
  section71), as below.

Paper scale: 20,000 meta-steps of one 400-step lifetime (10 functions x 40
batches of 32), the 9-layer MLP (widths 300, sixth layer 900), meta-learning
rates of Table 3; evaluation over 50 lifetimes of fresh functions.

FLP rows (reuse1, flp2, flp3, flp9: the last 1, 2, 3, 9 layers plastic):
plasticity meta-learning rate 1e-8 (the published command; the paper swept
1e-6..1e-9 per network), initial plasticity 0, initial feedback strength 0.5,
error feedback, Oja's rule, pre-feedback presynaptic activity, output layer
not clamped (docs/fidelity.md 2).

grad3: inner SGD on the plastic layers' weights and biases with one learned
learning rate per parameter (initialised at 0.003, the reference's fixed rate;
meta-learning rate 1e-6), first-order meta-gradient as the reference
(docs/fidelity.md 4). The paper initialises this baseline with the feed-forward
weights of the matching FLP run (B.2):

  python experiments/train.py \
      --config=experiments/configs/sine.py:row=grad3,order=continual,init_ff_from=workdirs/sine_flp3_continual \
      --workdir=workdirs/sine_grad3_continual

oml3: OML's regression meta-training (docs/fidelity.md OML 1.3-1.4, 5;
flpjax/protocols/oml.py): the last 3 layers plastic (OML's ``--rln 6``); inner
plain SGD at 0.003 on their weights and biases, first-order meta-gradient, 400
steps of 32 points; meta-loss on the 320 query points; Adam 1e-4 on every
tensor with MultiStepLR([1500, 2500, 3500], 0.3) in one run of 20,000
meta-steps; a pool of 400 functions; seed 1000; no clipping, no row reset.
The i.i.d. column meta-trains on i.i.d. (batch-shuffled) streams, as every
other row (docs/fidelity.md OML 5's default); OML's own driver only has the
continual order: ``--config.oml.train_order=continual`` meta-trains as OML and
evaluates on i.i.d. streams. Evaluation: the shared protocol (docs/fidelity.md (part II, OML)
1.5), one SGD pass at 0.003, plastic layers not reset; mean query MSE.

  python experiments/train.py --config=experiments/configs/sine.py:row=oml3,order=continual \
      --workdir=workdirs/oml_sine_continual

section71: FLP (3) continual starting from a network meta-trained for feature
reuse (row reuse1), feedback and plasticity enabled in the two layers below the
readout, the feed-forward initialisation frozen at the feature-reuse one
(``meta.lr.ff = 0``), feedback, plasticity and feedback strengths meta-trained
further (`flpjax.analysis.extend_plasticity`). The paper reports that this
does not improve on feature reuse. Without ``extend_from`` it trains FLP (3)
with a frozen random initialisation.

  python experiments/train.py \
      --config=experiments/configs/sine.py:row=section71,order=continual,extend_from=workdirs/sine_reuse1_continual \
      --workdir=workdirs/sine_section71_continual

quick: a small FLP (3) i.i.d. meta-training on a CPU in a few minutes: the
reduced scale (hidden widths 64, 5 functions x 8 batches of 16 points per
lifetime, plasticity and feedback meta-learning rates raised) with 3,000
meta-steps and plasticity meta-learning rate 1e-6; it evaluates before and
after meta-training and prints both.

``python experiments/reproduce.py`` runs these strings for Tables 1 and 2 and
records each in its results.
"""

from flpjax import config as config_lib

ROWS = ("reuse1", "flp2", "flp3", "flp9", "grad3", "oml3", "dfa3", "fa3", "rule3", "rule3r",
        "rule3m", "pfb3", "pfb3h", "section71", "quick")
SCALES = ("paper", "reduced", "mini")
CHOICES = dict(row=ROWS, order=("iid", "continual"), scale=SCALES)
PLASTIC_LAYERS = dict(reuse1=1, flp2=2, flp3=3, flp9=9, grad3=3, oml3=3, dfa3=3, fa3=3,
                      rule3=3, rule3r=3, rule3m=3, pfb3=3, pfb3h=3, section71=3, quick=3)

#: Reduced scale (CPU-sized), every row; grad3 and oml3 keep their feed-forward
#: meta-learning rate (1e-4) and section71 its frozen one (0).
REDUCED = {
    "net.widths": (64,) * 8, "sine.n_functions": 5, "sine.steps_per_function": 8,
    "sine.batch_size": 16, "sine.queries_per_function": 32, "sine.pool_size": 200,
    "meta.steps": 4000, "meta.lr.ff": 1e-3, "meta.lr.fb": 1e-3, "meta.lr.beta": 1e-3,
    "eval.lifetimes": 50, "checkpoint_every": 500, "log_every": 250,
}
#: The CPU miniature in the paper's regime (BUILD_NOTES "The CPU miniature in the
#: paper's regime"): the reduced 64-wide network, lifetimes of 5 functions x 20 batches
#: of 16 points (the lever the calibration probes found: 8 batches per function left
#: feature reuse at the family-mean level), 4,000 meta-steps, a learning curve every
#: 500. FLP rows (`MINI_REMEDY`): plasticity initialised at 1e-3 (the authors' argparse
#: default; 0 is a trap: no meta-gradient towards reuse until alpha > 0; 3e-4 left 2 of
#: 6 networks at the family-mean level, 1e-3 explodes the first lifetimes of 1 of 6, which
#: then counts as diverged: BUILD_NOTES), plasticities
#: kept >= 0, and the readout's feedback initialised positive (a negative initial B
#: moves the readout away from the target; the seeds that drew one stayed at the
#: family-mean level), each measured in BUILD_NOTES. A network whose lifetimes are
#: not finite halves its plasticities at every such skipped meta-step
#: (``meta.nonfinite_backoff``; the gradient row its inner rates, `MINI_GRAD_BACKOFF`) instead
#: of skipping steps for ever; a network that never has a non-finite step is untouched
#: by it, bit for bit. `MINI_SEEDS` networks per cell.
MINI = {**REDUCED, "sine.steps_per_function": 20, "eval.curve_every": 500,
        "eval.curve_lifetimes": 10}
#: A meta-step whose loss is above 10x the sine family-mean level (3.126, the
#: expectation over the family; `statistics.DIVERGED_FACTOR`) is skipped like a
#: non-finite one, and backs off (``meta.max_loss``): a lifetime that exploded but stayed
#: finite otherwise updates the network with a meta-gradient of norm up to 1e13 that fills
#: Adam's second moment, and the network's later steps are ~0 for thousands of meta-steps
#: (the networks that exploded at birth and never learned; BUILD_NOTES). FLP rows only.
MINI_MAX_LOSS = 31.26
MINI_REMEDY = {"meta.nonnegative": ("alpha", "alpha_readout"), "flp.init_alpha": 1e-3,
               "flp.positive_readout_feedback": True,
               "meta.nonfinite_backoff": ("alpha", "alpha_readout"),
               "meta.max_loss": MINI_MAX_LOSS}
#: The feature-reuse row's readout feedback starts at |B| >= 1 (``flp.readout_feedback_floor``;
#: its draw is kaiming-normal with std sqrt(2), and the networks that stayed at the
#: family-mean level in both sets of seeds had drawn 0.016 and 0.12: their readout got
#: almost no feedback, and meta-training did not grow it; BUILD_NOTES).
MINI_REUSE = {"flp.readout_feedback_floor": 1.0}
#: The back-off of the gradient-based row at the mini scale: its learned inner rates.
MINI_GRAD_BACKOFF = ("lr",)
#: The gradient-based row's feed-forward meta-learning rate decays 0.3x at these
#: meta-steps at the mini scale: the authors' code's `MultiStepLR([1500, 2500, 3500],
#: gamma=0.3)` on the feed-forward optimiser (REFERENCE.md 5.3; their recipe's restarts
#: every 1,000 steps keep it from firing, so the paper's rows do without). Without it, one
#: first-seed network's meta-test error rose from 0.029 (step 3,000) to a non-finite
#: lifetime (its inner SGD diverged); with it that cell had no non-finite step (BUILD_NOTES).
MINI_GRAD_MILESTONES = (1500, 2500, 3500)
MINI_RATES = {"flp": {"meta.lr.alpha": 1e-5}}
#: Initial readout plasticity of the FLP rows with more than one plastic layer (their
#: other layers start at the paper's 0): at 1e-3 the first lifetimes of 3 of 6 FLP (3)
#: networks were non-finite at every meta-step (BUILD_NOTES).
MINI_READOUT_ALPHA = 3e-4
#: Section 7.1's plasticity meta-learning rate at the mini scale (the other FLP rows': 1e-5).
#: The extension freezes the feed-forward weights, so plasticity is its only lever: at 1e-5
#: Adam drove it back to the edge of stability after every back-off (first seeds: 4-336
#: skipped meta-steps per network, 3 of 6 stopped at 100); at 1e-6 no network had a skipped
#: step (BUILD_NOTES "A third remedy").
MINI_SECTION71_ALPHA_RATE = 1e-6
#: Independent networks per miniature cell (claims at 2 standard errors).
MINI_SEEDS = 6
#: The MLP rule's hidden width at the mini scale: its cost is linear in the width, and
#: with the default 8 one meta-step of the 6 networks took 1.4 s on the dev CPU (94
#: minutes for the cell; 40x the Hebbian rule's), with 2 it takes 0.36 s.
MINI_MLP_HIDDEN = 2
#: Plasticity meta-learning rates swept per network (B.1), by learner and scale.
#: The gradient rows have no sweep: the gradient learner has no plasticity group
#: (its inner SGD rate is fixed). Before learners declared their groups, the
#: reduced cells "swept" `alpha` on it, a group with no leaves: the runs differed
#: only by seed, and the sweep picked a seed on validation lifetimes.
SWEEPS = {
    ("flp", "paper"): (1e-6, 1e-7, 1e-8, 1e-9),  # Table 3
    ("flp", "reduced"): (1e-6, 3e-7, 1e-7),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, CHOICES, row="flp3", order="iid", scale=str,
                           **config_lib.RUN_ARGS)
  scale = a.scale or ("reduced" if a.row == "quick" else "paper")
  if a.row == "quick" and scale != "reduced":
    raise config_lib.ConfigError(f"config arg scale={scale!r}: expected 'reduced' for row=quick")
  if a.row == "section71" and a.order != "continual":
    raise config_lib.ConfigError(
        f"config arg order={a.order!r}: expected 'continual' for row=section71")
  c = config_lib.base_config()
  c.order = a.order
  c.plastic_layers = PLASTIC_LAYERS[a.row]
  if a.row == "grad3":
    c.learner = "gradient"
    c.gradient.lr = 0.003
    c.gradient.learn_lr = True
    c.meta.lr.lr = 1e-6  # the learned inner rates' group (Table 3)
  elif a.row in ("dfa3", "fa3"):  # Figure 1's feedback-alignment learners (not table rows)
    c.learner = a.row[:-1]
    c.alignment.lr = 0.003  # grad3's inner rate
  elif a.row in ("rule3", "rule3r", "rule3m"):  # section 8.1: a meta-learned local rule
    c.learner = "learned_rule"
    c.learned_rule.rule = "mlp" if a.row == "rule3m" else "hebbian"
    c.learned_rule.init = {"rule3": "oja", "rule3r": "random", "rule3m": ""}[a.row]
  elif a.row in ("pfb3", "pfb3h"):  # section 8.1: plastic (and multi-layer) feedback
    c.learner = "plastic_feedback"
    c.plastic_feedback.hidden_feedback = a.row == "pfb3h"
  elif a.row == "oml3":
    c.estimator = "oml"
    c.seed = 1000
    c.learner = "gradient"
    c.gradient.lr = 0.003
    c.meta.ff_milestones = (1500, 2500, 3500)
    c.meta.ff_decay = 0.3
    c.oml.reset_row = False
    c.oml.clamp = 0.0
  if scale == "reduced":
    for path, value in REDUCED.items():
      config_lib.set_field(c, path, value)
    if c.learner == "gradient":
      c.meta.lr.ff = 1e-4
  if scale == "mini":
    plastic = config_lib.build.reads(c, "flp")  # FLP learners: the flp options and alphas
    remedy = MINI_REMEDY if plastic else {}
    if remedy and c.plastic_layers > 1:  # the readout at MINI_READOUT_ALPHA, the others at 0
      remedy = {**remedy, "flp.init_alpha": 0.0, "flp.init_alpha_readout": MINI_READOUT_ALPHA}
    if remedy and a.row == "reuse1":
      remedy = {**remedy, **MINI_REUSE}
    rates = MINI_RATES["flp"] if remedy else MINI_RATES.get(c.learner, {})
    for path, value in {**MINI, **remedy, **rates}.items():
      config_lib.set_field(c, path, value)
    if not plastic:  # the inner-SGD learners keep the paper's feed-forward rate
      c.meta.lr.ff = 1e-4
    if a.row == "grad3":  # the only inner-SGD row with learned rates (oml3's are fixed)
      c.meta.nonfinite_backoff = MINI_GRAD_BACKOFF
      c.meta.ff_milestones = MINI_GRAD_MILESTONES
    c.runs = MINI_SEEDS
    if a.row == "rule3m":
      c.learned_rule.hidden = MINI_MLP_HIDDEN
  if a.row == "section71":
    c.meta.lr.ff = 0.0
    if scale == "mini":
      c.meta.lr.alpha = MINI_SECTION71_ALPHA_RATE
  if a.row == "quick":
    c.meta.steps = 3000
    c.meta.lr.alpha = 1e-6
    c.eval.at_start = True
  sweep = None if c.estimator == "oml" else SWEEPS.get((c.learner, scale))
  config_lib.apply_run_args(c, a, sweep, a.row)
  return c
