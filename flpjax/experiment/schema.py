"""The settings schema: defaults and field-by-field checks (config as data).

`base_config()` holds every field with its default; experiment files in
``experiments/configs/`` start from it. The checks here are those that do not
depend on which task, learner or estimator is named: each plug-in's own
section is checked by its entry in `flpjax.experiment.registry`, and
`registry.validate` runs both. A failed check raises `ConfigError` with a
one-line message that names the field, what it got and what is allowed.
`load_file` reads a config string (``experiments/configs/sine.py:row=flp3``);
`parse_arg` and `apply_run_args` are the config files' side of it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import types
from typing import Any, Iterable

import ml_collections

from flpjax import lifetime, nets

MATMUL_PRECISIONS = ("highest", "float32", "tensorfloat32", "bfloat16_3x", "default")


class ConfigError(ValueError):
  """A config field (or flag) has a bad value; the message names it."""


def base_config() -> ml_collections.ConfigDict:
  """Defaults: the paper's sine FLP (3) i.i.d. row (Table 1, Table 3)."""
  c = ml_collections.ConfigDict()
  c.task = "sine"
  c.order = "iid"  # 'iid' or 'continual'
  c.seed = 0
  # float32 matmuls at full precision: GPUs otherwise use TF32, which changes long
  # Oja accumulations. 'default' or 'tensorfloat32' trade accuracy for speed.
  c.matmul_precision = "highest"

  c.sine = ml_collections.ConfigDict(dict(
      n_functions=10, steps_per_function=40, batch_size=32, queries_per_function=32,
      pool_size=400,  # fixed pool of training functions; 0 draws fresh functions per episode
      pool_seed=1000,  # the pool's functions (shared by every run and seed, as the reference's)
      mixed_batches=False,  # i.i.d. order: shuffle points instead of batches
  ))
  c.fewshot = ml_collections.ConfigDict(dict(
      ways=5, shots=5, queries_per_class=5, image_size=84, data_dir="",
      query_overlap=False,  # reference meta-training: query images may repeat support images
      # >0: the last N meta-training classes are held out of meta-training and serve as
      # validation classes (sweeps); mini-ImageNet validates on its own 'val' split.
      validation_classes=0,
      # Meta-testing: support from each class's images [0, support_pool), queries the
      # next test_pool images. 0 = the data set's (Omniglot 15 and 5, mini-ImageNet 30
      # and 30, task 'custom': the first half and the rest).
      support_pool=0, test_pool=0,
  ))
  # task='custom': a few-shot data set of your own (flpjax.datasets.folder). Each split
  # is a folder of class subfolders (<split>/<class>/<image>) or a .npy/.npz array file;
  # relative paths are under fewshot.data_dir. val: validation classes for sweeps ('' =
  # none: fewshot.validation_classes holds meta-training classes out instead).
  # channels: of every image (1 grey, 3 RGB; others are refused, never converted);
  # inputs are (x / 255 - mean) / std, one value per channel or one for all.
  c.custom = ml_collections.ConfigDict(dict(
      train="train", test="test", val="", channels=3, mean=(0.0,), std=(1.0,),
  ))
  c.net = ml_collections.ConfigDict(dict(
      widths=nets.REGRESSION_WIDTHS,  # sine MLP hidden widths
      channels=128, hidden=128, readout=1000,  # classification conv net
      strides=(2, 1, 2, 1, 2, 2),  # one 3x3 'VALID' convolution per entry
  ))

  c.learner = "flp"
  c.plastic_layers = 3
  c.flp = ml_collections.ConfigDict(dict(
      rule="oja", signal="error", presynaptic="pre", clip_beta=False, clamp_readout=False,
      init_alpha=0.0, init_beta=0.5,
      # A fed readout's feedback weights start at |B| (a divergence/trap remedy; off =
      # the reference's kaiming-normal B of either sign).
      positive_readout_feedback=False,
      # Initial plasticity of the readout (None: init_alpha).
      init_alpha_readout=ml_collections.config_dict.placeholder(float),
  ))
  c.gradient = ml_collections.ConfigDict(dict(
      lr=0.003, learn_lr=False, second_order=False, reset_readout=False,
  ))
  # dfa / fa (feedback alignment learners, Figure 1): inner SGD along the feedback's
  # credit signal; learn_feedback meta-learns B (dfa) / R (fa) and needs second_order.
  c.alignment = ml_collections.ConfigDict(dict(
      lr=0.003, second_order=False, learn_feedback=False, reset_readout=False,
  ))
  # plastic_feedback (section 8.1): B learns within the lifetime at a meta-learned
  # per-layer rate (init_fb_rate at birth of meta-training; 0 = fixed feedback);
  # hidden_feedback adds feedback from the next plastic layer's activity.
  c.plastic_feedback = ml_collections.ConfigDict(dict(
      feedback_rule="hebb", hidden_feedback=False, init_fb_rate=0.0))
  # learned_rule (section 8.1): FLP with a meta-learned local rule (group 'rule'); the flp
  # options are read from config.flp (flp.rule unused). init '' = the rule's default.
  c.learned_rule = ml_collections.ConfigDict(dict(
      rule="hebbian", init="", per_synapse=False, hidden=8))
  c.init_ff_from = ""  # workdir whose meta-learned feed-forward weights seed this run (B.2)
  # Section 7.1: workdir of a feature-reuse FLP run whose feed-forward initialisation
  # (and readout plasticity/feedback) this run starts from, with more plastic layers;
  # meta.lr.ff must be 0 so that the feed-forward initialisation stays frozen.
  c.extend_from = ""

  # The meta-gradient estimator (flpjax/estimators, registry.ESTIMATORS): 'full'
  # (backprop through the whole lifetime, every row but one), 'oml' (the original OML
  # procedure, docs/fidelity.md (part II, OML); needs learner='gradient'; the 'Original OML' rows),
  # 'truncated' (backprop through truncated.window-step windows of a lifetime), 'es'
  # (antithetic evolution strategies, forward passes only), 'pes' (persistent ES over
  # truncated.window-step windows).
  c.estimator = "full"
  c.truncated = ml_collections.ConfigDict(dict(window=10))  # also PES's window
  c.es = ml_collections.ConfigDict(dict(population=16, sigma=0.01, antithetic=True, chunk=0))
  c.oml = ml_collections.ConfigDict(dict(
      # Sine: stream order of meta-training. '' = config.order (default: the i.i.d.
      # column meta-trains on i.i.d. streams as every other row, docs/fidelity.md OML 5);
      # 'continual' = OML's only training order, evaluated on config.order.
      train_order="",
      # Few-shot proxy task (docs/fidelity.md OML 2.3, 3): S single-image inner steps on one
      # trajectory class; a remember batch from other classes; [lo, hi) class ranges
      # of the meta-training split (Omniglot defaults; mini-ImageNet (0, 64) twice).
      steps=10, remember=10, trajectory_classes=(481, 963), remember_classes=(0, 481),
      reset_row=True,  # re-initialise the trajectory class's readout row every episode
      clamp=5.0,  # elementwise meta-gradient clamp; 0 = none (regression, docs/fidelity.md OML 1.4)
      # Few-shot evaluation: 'adam' = OML's rule (readout reset, fc1 kept, inner Adam at
      # the rate its search picks on support images); 'sgd' = FLP's gradient evaluation
      # (no reset, SGD at gradient.lr). Regression always uses the shared protocol.
      eval_rule="adam",
      eval_lrs=(0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7),
      lr_searches=5,
  ))

  c.meta = ml_collections.ConfigDict(dict(
      steps=20000, batch_size=1, remat="step", chunk=0, max_nonfinite=10,
      # A run with this many skipped (non-finite) meta-steps in all is stopped and
      # counted as diverged (0: never).
      max_nonfinite_total=100,
  ))
  # MultiStepLR of the 'ff' group: its rate is multiplied by ff_decay at each
  # milestone (meta-steps). () = constant (FLP's runs; OML regression: (1500, 2500, 3500), 0.3).
  # estimator 'full' and 'oml': stop before compiling when the stored lifetime (the
  # carried fast state of every step) would exceed this many bytes; 0 = the
  # device's memory (host RAM on a CPU).
  c.meta.max_lifetime_bytes = 0
  # Divergence remedies (BUILD_NOTES "Why networks diverge"); off = the paper's plain
  # Adam. clip_norm: per-group meta-gradient clip (global norm; 0 = none); warmup_steps:
  # linear warm-up of every group's rate; nonnegative: groups kept >= 0 (e.g. ('alpha',
  # 'alpha_readout'): plasticities of one sign).
  c.meta.clip_norm = 0.0
  c.meta.warmup_steps = 0
  c.meta.nonnegative = ()
  c.meta.ff_milestones = ()
  c.meta.ff_decay = 0.3
  c.meta.lr = ml_collections.ConfigDict(dict(
      ff=1e-4, fb=1e-4, alpha=1e-8, beta=1e-4,
      alpha_readout=ml_collections.config_dict.placeholder(float),  # None: same as alpha
      lr=1e-4,  # the gradient learner's per-parameter inner rates (gradient.learn_lr)
      fb_rate=1e-4,  # plastic_feedback's per-layer feedback plasticity rates
      rule=1e-3,  # learned_rule's rule coefficients
  ))
  c.eval = ml_collections.ConfigDict(dict(
      lifetimes=50, batch=10, seed=103450, at_start=False,
      # Learning curve: every curve_every meta-steps (0: none) each network's mean metric
      # over the first curve_lifetimes meta-test lifetimes ('curve' records, eval.json).
      curve_every=0, curve_lifetimes=10,
      validation_seed=7,  # lifetimes of held-out functions / validation classes (sweeps)
  ))
  # Independent runs meta-trained together as one vmapped program (sharded over the
  # devices when there are several): run r uses seed + r. With sweep.lrs, run r
  # uses sweep.lrs[r] as the meta-learning rate of group sweep.group.
  c.runs = 1
  # One stream order per run ('iid' / 'continual', len = runs; () = config.order for
  # every run): the i.i.d. and continual cells of a row as one program (full estimator).
  c.run_orders = ()
  c.sweep = ml_collections.ConfigDict(dict(group="alpha", lrs=()))
  c.checkpoint_every = 100
  c.keep_checkpoints = 3
  c.log_every = 10
  return c


def load_file(path: str) -> ml_collections.ConfigDict:
  """``get_config()`` of an experiment config file (``experiments/configs/*.py``).

  ``path`` may end in ``:arg`` (``experiments/configs/sine.py:row=flp3,scale=reduced``):
  ``get_config(arg)``, as ``config_flags.DEFINE_config_file`` calls it.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, *arg = path.split(":", 1)
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or not os.path.exists(path):
    raise ConfigError(f"{path}: no such config file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*arg)


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_arg(arg: str | None, choices: dict[str, Iterable[Any]] | None = None,
              **defaults: Any) -> types.SimpleNamespace:
  """The ``key=value,...`` argument of a config file's ``get_config(arg)`` (big_vision's).

  ``defaults`` names every key and its default; the default's type converts
  the value (``bool``: true/false, 1/0; a bare ``key`` is ``key=true``). A
  default given as a type (``runs=int``) means no default (``None``) and
  that type. ``choices`` restricts a key to a few values. An unknown key, a
  repeated one or a bad value raises `ConfigError` naming the key and what
  is allowed, before anything is built.
  """
  choices = {k: tuple(v) for k, v in (choices or {}).items()}
  out = {k: None if isinstance(v, type) else v for k, v in defaults.items()}
  seen = set()
  for item in (arg or "").split(","):
    if not item.strip():
      continue
    key, has_value, text = (s.strip() for s in item.partition("="))
    if key not in defaults:
      raise ConfigError(f"config arg {key!r}: unknown; expected keys "
                        + ", ".join(defaults))
    if key in seen:
      raise ConfigError(f"config arg {key!r}: given twice")
    seen.add(key)
    kind = defaults[key] if isinstance(defaults[key], type) else type(defaults[key])
    allowed = choices.get(key)
    if kind is bool:
      text = text.lower() if has_value else "true"
      if text not in _TRUE + _FALSE:
        raise ConfigError(f"config arg {key}={text!r}: expected true or false")
      value = text in _TRUE
    else:
      try:
        value = kind(text)
      except ValueError:
        value = None
      if value is None or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"config arg {key}={text!r}: expected "
                          + ("one of " + ", ".join(repr(a) for a in allowed) if allowed
                             else {int: "an integer", float: "a finite number"}.get(
                                 kind, kind.__name__)))
    if allowed is not None and value not in allowed:
      raise ConfigError(f"config arg {key}={text!r}: expected one of "
                        + ", ".join(repr(a) for a in allowed))
    out[key] = value
  return types.SimpleNamespace(**out)


#: Keys of the experiment protocol that every parameterised config file takes
#: (`apply_run_args`): the plasticity sweep, the number of networks, the chosen
#: plasticity meta-learning rate and the runs a network starts from.
RUN_ARGS = dict(sweep=False, runs=int, plasticity_lr=float, init_ff_from="", extend_from="",
                both_orders=False)


def plasticity_group(config) -> str:
  """The plasticity meta-learning-rate group swept (B.1): the readout's alone when only
  the readout is plastic and has its own rate, else ``'alpha'``."""
  if config.plastic_layers == 1 and config.meta.lr.alpha_readout is not None:
    return "alpha_readout"
  return "alpha"


def apply_run_args(config, args: types.SimpleNamespace, sweep_lrs: Iterable[float] | None,
                   row: str = "") -> None:
  """Applies `RUN_ARGS` (parsed by `parse_arg`) to ``config``.

  ``sweep=true``: one run per rate of ``sweep_lrs`` in the `plasticity_group`
  (``None``: the row has no sweep). ``runs=N``: N independent networks.
  ``plasticity_lr=X``: that group's meta-learning rate (the one a sweep chose).
  ``init_ff_from=W`` (B.2) / ``extend_from=W`` (section 7.1): the run
  whose meta-parameters this one starts from. ``both_orders=true``: the i.i.d. and
  the continual cell as one program, ``runs`` networks of each (``config.run_orders``:
  runs 0..N-1 i.i.d., N..2N-1 continual; ``order`` is ignored).
  """
  if args.sweep:
    if not sweep_lrs:
      raise ConfigError(f"config arg sweep=true: row {row!r} has no plasticity sweep")
    if args.runs is not None or args.plasticity_lr is not None:
      raise ConfigError("config arg sweep=true: expected without runs and plasticity_lr "
                        "(the sweep meta-trains one network per rate)")
    config.runs = len(tuple(sweep_lrs))
    config.sweep.group = plasticity_group(config)
    config.sweep.lrs = tuple(sweep_lrs)
  if args.runs is not None:
    config.runs = args.runs
  if args.plasticity_lr is not None:
    config.meta.lr[plasticity_group(config)] = args.plasticity_lr
  if args.both_orders:
    if args.sweep:
      raise ConfigError("config arg both_orders=true: expected without sweep=true (each "
                        "order's sweep chooses its own rate; run the two sweeps apart)")
    config.run_orders = ("iid",) * config.runs + ("continual",) * config.runs
    config.runs *= 2
    config.order = "iid"
  if args.init_ff_from:
    config.init_ff_from = args.init_ff_from
  if args.extend_from:
    config.extend_from = args.extend_from


def parse_set(items: Iterable[str]) -> dict[str, Any]:
  """``['path=value', ...]`` (a binary's ``--set`` flags) as ``{path: value}``: values are
  Python literals where they parse (``(8,8)``, ``1e-6``, ``True``), else strings.
  Raises `ConfigError` for an item without ``=``."""
  import ast  # pylint: disable=g-import-not-at-top
  out = {}
  for item in items:
    path, eq, text = item.partition("=")
    if not eq or not path.strip():
      raise ConfigError(f"--set={item}: expected path=value, e.g. --set=meta.steps=100")
    try:
      out[path.strip()] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[path.strip()] = text
  return out


def set_field(config, path: str, value: Any) -> None:
  """Sets the field ``'a.b.c'`` of ``config`` (as ``--config.a.b.c=value`` would)."""
  node = config
  *parents, last = path.split(".")
  for p in parents:
    node = node[p]
  node[last] = value


def _field(config, path: str) -> Any:
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def _fail(path: str, value: Any, expected: str) -> None:
  raise ConfigError(f"config.{path}={value!r}: expected {expected}")


def _check_choice(config, path: str, allowed: Iterable[str]) -> None:
  value = _field(config, path)
  allowed = tuple(allowed)
  if value not in allowed:
    _fail(path, value, "one of " + ", ".join(repr(a) for a in allowed))


def _check_int(config, path: str, low: int | None = None, high: int | None = None) -> None:
  value = _field(config, path)
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    _fail(path, value, "an integer")
  if low is not None and value < low:
    _fail(path, value, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""))
  if high is not None and value > high:
    _fail(path, value, f"an integer <= {high}" + (f" and >= {low}" if low is not None else ""))


def _check_float(config, path: str, low: float | None = None, high: float | None = None) -> None:
  value = _field(config, path)
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
    _fail(path, value, "a finite number")
  if (low is not None and value < low) or (high is not None and value > high):
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    _fail(path, value, f"a number in [{lo}, {hi}]")


def _check_bool(config, path: str) -> None:
  value = _field(config, path)
  if not isinstance(value, bool):
    _fail(path, value, "True or False")


def _check_rates(config, path: str, allow_empty: bool = True) -> None:
  values = _field(config, path)
  if (not isinstance(values, (tuple, list)) or (not values and not allow_empty)
      or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1
             for v in values)):
    _fail(path, values, "a tuple of learning rates in (0, 1]")


def validate_common(config) -> None:
  """Checks the fields that every task, learner and estimator shares."""
  _check_int(config, "seed", 0)
  _check_choice(config, "matmul_precision", MATMUL_PRECISIONS)
  _check_int(config, "meta.steps", 0)
  _check_int(config, "meta.batch_size", 1)
  _check_choice(config, "meta.remat", lifetime.REMATS)
  _check_int(config, "meta.chunk", 0)
  _check_int(config, "meta.max_nonfinite", 1)
  _check_int(config, "meta.warmup_steps", 0)
  clip = config.meta.get("clip_norm", 0.0)
  if not isinstance(clip, (int, float)) or isinstance(clip, bool) or clip < 0:
    raise ConfigError(f"config.meta.clip_norm={clip!r}: expected a number >= 0 (0: no clipping)")
  for group in ("ff", "fb", "alpha", "beta", "lr", "fb_rate", "rule"):
    _check_float(config, f"meta.lr.{group}", 0.0, 1.0)
  if config.meta.lr.alpha_readout is not None:
    _check_float(config, "meta.lr.alpha_readout", 0.0, 1.0)
  _check_int(config, "eval.lifetimes", 1)
  _check_int(config, "eval.batch", 1)
  _check_int(config, "eval.seed", 0)
  _check_int(config, "eval.validation_seed", 0)
  _check_int(config, "runs", 1)
  _check_rates(config, "sweep.lrs")
  orders = config.get("run_orders", ())
  if orders and (not isinstance(orders, (tuple, list)) or len(orders) != config.runs
                 or any(o not in ("iid", "continual") for o in orders)):
    _fail("run_orders", orders, f"() or a tuple of config.runs={config.runs} orders, each "
          "'iid' or 'continual'")
  if config.sweep.lrs and config.runs != len(config.sweep.lrs):
    _fail("runs", config.runs, f"len(sweep.lrs) = {len(config.sweep.lrs)} (one run per swept rate)")
  _check_bool(config, "eval.at_start")
  _check_int(config, "eval.curve_every", 0)
  _check_int(config, "eval.curve_lifetimes", 2)
  _check_int(config, "meta.max_nonfinite_total", 0)
  _check_int(config, "checkpoint_every", 1)
  _check_int(config, "keep_checkpoints", 1)
  _check_int(config, "log_every", 1)
  if not isinstance(config.init_ff_from, str):
    _fail("init_ff_from", config.init_ff_from, "a workdir path or ''")
  if not isinstance(config.extend_from, str):
    _fail("extend_from", config.extend_from, "a workdir path or ''")
  if config.extend_from:
    if config.init_ff_from:
      _fail("extend_from", config.extend_from, "'' when config.init_ff_from is set (one source)")
    if config.meta.lr.ff != 0:
      _fail("meta.lr.ff", config.meta.lr.ff, "0 with config.extend_from (section 7.1: the "
            "feed-forward initialisation stays frozen)")
    if config.learner != "flp":
      _fail("learner", config.learner, "'flp' with config.extend_from")
  milestones = config.meta.ff_milestones
  if (not isinstance(milestones, (tuple, list))
      or any(isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1
             for m in milestones)
      or list(milestones) != sorted(set(milestones))):
    _fail("meta.ff_milestones", milestones, "a tuple of increasing positive integers")
  _check_float(config, "meta.ff_decay", 0.0, 1.0)
  _check_int(config, "meta.max_lifetime_bytes", 0)


#: Renamed fields of configs saved by earlier versions: old path -> (new path, value map).
RENAMED = {"procedure": ("estimator", {"standard": "full", "oml": "oml"})}


def migrate(saved: dict) -> dict:
  """A config saved by an earlier version (a JSON dict) in today's field names.

  ``procedure='standard'|'oml'`` became ``estimator='full'|'oml'``; the
  gradient learner's meta-learned inner rates, the ``'alpha'`` group, became
  ``'lr'`` (no committed run used them).
  """
  saved = dict(saved)
  for old, (new, values) in RENAMED.items():
    if old in saved:
      value = saved.pop(old)
      saved.setdefault(new, values.get(value, value))
  return saved


def with_defaults(saved: dict) -> dict:
  """A saved config over today's defaults: fields added since then take their defaults."""

  def merge(default, value):
    if not (isinstance(default, dict) and isinstance(value, dict)):
      return value
    return {**default, **{k: merge(default.get(k), v) for k, v in value.items()}}

  return merge(json.loads(base_config().to_json_best_effort()), migrate(saved))
