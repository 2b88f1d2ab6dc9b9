"""Experiment configuration: defaults, validation, and the objects built from it.

Experiment files in ``experiments/configs/`` start from `base_config()` and
change what their table row needs. `validate` checks every field before
anything is compiled and raises `ConfigError` with a one-line message that
names the field, what it got and what is allowed.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Iterable

import ml_collections
import optax

from flpjax import feedback, learners, lifetime, nets, plasticity
from flpjax.tasks import sine

TASKS = ("sine", "omniglot", "mini_imagenet")
LEARNERS = ("flp", "gradient")
FEWSHOT_TASKS = ("omniglot", "mini_imagenet")
MATMUL_PRECISIONS = ("highest", "float32", "tensorfloat32", "bfloat16_3x", "default")
PROCEDURES = ("standard", "oml")
EVAL_RULES = ("adam", "sgd")  # oml.eval_rule


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
  ))
  c.gradient = ml_collections.ConfigDict(dict(
      lr=0.003, learn_lr=False, second_order=False, reset_readout=False,
  ))
  c.init_ff_from = ""  # workdir whose meta-learned feed-forward weights seed this run (B.2)
  # Section 7.1: workdir of a feature-reuse FLP run whose feed-forward initialisation
  # (and readout plasticity/feedback) this run starts from, with more plastic layers;
  # meta.lr.ff must be 0 so that the feed-forward initialisation stays frozen.
  c.extend_from = ""

  # The meta-training procedure: 'standard' (FLP's episodes, every row but one) or
  # 'oml' (the original OML procedure, flpjax/oml.py, REFERENCE-OML.md; needs
  # learner='gradient'). The 'Original OML' rows: experiments/configs/oml_*.py.
  c.procedure = "standard"
  c.oml = ml_collections.ConfigDict(dict(
      # Sine: stream order of meta-training. '' = config.order (default: the i.i.d.
      # column meta-trains on i.i.d. streams as every other row, REFERENCE-OML 5);
      # 'continual' = OML's only training order, evaluated on config.order.
      train_order="",
      # Few-shot proxy task (REFERENCE-OML 2.3, 3): S single-image inner steps on one
      # trajectory class; a remember batch from other classes; [lo, hi) class ranges
      # of the meta-training split (Omniglot defaults; mini-ImageNet (0, 64) twice).
      steps=10, remember=10, trajectory_classes=(481, 963), remember_classes=(0, 481),
      reset_row=True,  # re-initialise the trajectory class's readout row every episode
      clamp=5.0,  # elementwise meta-gradient clamp; 0 = none (regression, REFERENCE-OML 1.4)
      # Few-shot evaluation: 'adam' = OML's rule (readout reset, fc1 kept, inner Adam at
      # the rate its search picks on support images); 'sgd' = FLP's gradient evaluation
      # (no reset, SGD at gradient.lr). Regression always uses the shared protocol.
      eval_rule="adam",
      eval_lrs=(0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7),
      lr_searches=5,
  ))

  c.meta = ml_collections.ConfigDict(dict(
      steps=20000, batch_size=1, remat="step", chunk=0, max_nonfinite=10,
  ))
  # MultiStepLR of the 'ff' group: its rate is multiplied by ff_decay at each
  # milestone (meta-steps). () = constant (FLP's runs; OML regression: (1500, 2500, 3500), 0.3).
  c.meta.ff_milestones = ()
  c.meta.ff_decay = 0.3
  c.meta.lr = ml_collections.ConfigDict(dict(
      ff=1e-4, fb=1e-4, alpha=1e-8, beta=1e-4,
      alpha_readout=ml_collections.config_dict.placeholder(float),  # None: same as alpha
  ))
  c.eval = ml_collections.ConfigDict(dict(
      lifetimes=50, batch=10, seed=103450, at_start=False,
      validation_seed=7,  # lifetimes of held-out functions / validation classes (sweeps)
  ))
  # Independent runs meta-trained together as one vmapped program (sharded over the
  # devices when there are several): run r uses seed + r. With sweep.lrs, run r
  # uses sweep.lrs[r] as the meta-learning rate of group sweep.group.
  c.runs = 1
  c.sweep = ml_collections.ConfigDict(dict(group="alpha", lrs=()))
  c.checkpoint_every = 100
  c.keep_checkpoints = 3
  c.log_every = 10
  return c


def load_file(path: str) -> ml_collections.ConfigDict:
  """``get_config()`` of an experiment config file (``experiments/configs/*.py``)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or not os.path.exists(path):
    raise ConfigError(f"{path}: no such config file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


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


def network(config) -> tuple[tuple[nets.Layer, ...], tuple[int, ...]]:
  """The network and the shape of one input example, from the config."""
  if config.task == "sine":
    return (nets.regression_mlp(tuple(config.net.widths)),
            (config.sine.n_functions + 1,))
  size = config.fewshot.image_size
  channels = 1 if config.task == "omniglot" else 3
  return (nets.conv_classifier(config.net.channels, config.net.hidden, config.net.readout,
                               tuple(config.net.strides)),
          (size, size, channels))


def validate(config) -> None:
  """Checks every field; raises `ConfigError` naming the first bad one."""
  _check_choice(config, "task", TASKS)
  _check_choice(config, "order", sine.ORDERS)
  _check_int(config, "seed", 0)
  _check_choice(config, "matmul_precision", MATMUL_PRECISIONS)
  _check_choice(config, "learner", LEARNERS)
  _check_int(config, "meta.steps", 0)
  _check_int(config, "meta.batch_size", 1)
  _check_choice(config, "meta.remat", lifetime.REMATS)
  _check_int(config, "meta.chunk", 0)
  _check_int(config, "meta.max_nonfinite", 1)
  for group in ("ff", "fb", "alpha", "beta"):
    _check_float(config, f"meta.lr.{group}", 0.0, 1.0)
  if config.meta.lr.alpha_readout is not None:
    _check_float(config, "meta.lr.alpha_readout", 0.0, 1.0)
  _check_int(config, "eval.lifetimes", 1)
  _check_int(config, "eval.batch", 1)
  _check_int(config, "eval.seed", 0)
  _check_int(config, "eval.validation_seed", 0)
  _check_int(config, "runs", 1)
  _check_choice(config, "sweep.group", ("ff", "fb", "alpha", "alpha_readout", "beta"))
  values = config.sweep.lrs
  if (not isinstance(values, (tuple, list))
      or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1
             for v in values)):
    _fail("sweep.lrs", values, "a tuple of learning rates in (0, 1]")
  if values and config.runs != len(values):
    _fail("runs", config.runs, f"len(sweep.lrs) = {len(values)} (one run per swept rate)")
  _check_bool(config, "eval.at_start")
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

  if config.task == "sine":
    for f in ("n_functions", "steps_per_function", "batch_size", "queries_per_function"):
      _check_int(config, f"sine.{f}", 1)
    _check_int(config, "sine.pool_seed", 0)
    _check_bool(config, "sine.mixed_batches")
    _check_int(config, "sine.pool_size", 0)
    if 0 < config.sine.pool_size < config.sine.n_functions:
      _fail("sine.pool_size", config.sine.pool_size,
            f"0 (fresh functions) or at least sine.n_functions={config.sine.n_functions}")
    widths = config.net.widths
    if (not isinstance(widths, (tuple, list)) or not widths
        or any(isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1 for w in widths)):
      _fail("net.widths", widths, "a non-empty tuple of positive integers")
  else:
    for f in ("ways", "shots", "queries_per_class"):
      _check_int(config, f"fewshot.{f}", 1)
    _check_int(config, "fewshot.ways", 2, config.net.readout)
    _check_int(config, "fewshot.image_size", 8, 512)
    _check_bool(config, "fewshot.query_overlap")
    _check_int(config, "fewshot.validation_classes", 0)
    per_class, pool = {"omniglot": (20, 15), "mini_imagenet": (600, 30)}[config.task]
    f = config.fewshot
    if f.shots > pool:
      _fail("fewshot.shots", f.shots, f"at most {pool} (the meta-test support pool per class)")
    if not f.query_overlap and f.shots + f.queries_per_class > per_class:
      _fail("fewshot.queries_per_class", f.queries_per_class,
            f"at most {per_class - f.shots} (fewshot.shots + queries <= {per_class} images "
            "per class; or fewshot.query_overlap=True)")
    if not isinstance(config.fewshot.data_dir, str):
      _fail("fewshot.data_dir", config.fewshot.data_dir, "a directory path or ''")
    for f in ("channels", "hidden", "readout"):
      _check_int(config, f"net.{f}", 1)
    strides = config.net.strides
    if (not isinstance(strides, (tuple, list)) or not strides
        or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1
               for s in strides)):
      _fail("net.strides", strides, "a non-empty tuple of positive integers")

  layers, input_shape = network(config)
  try:
    nets.output_shapes(layers, input_shape)
  except ValueError as e:
    raise ConfigError(f"config.fewshot.image_size={config.fewshot.image_size!r}: {e}"
                      f" (config.net.strides={tuple(config.net.strides)!r})") from None
  n_dense = sum(isinstance(l, nets.Dense) for l in layers)
  _check_int(config, "plastic_layers", 1, n_dense)

  if config.learner == "flp":
    _check_choice(config, "flp.rule", plasticity.RULES)
    _check_choice(config, "flp.signal", feedback.SIGNALS)
    _check_choice(config, "flp.presynaptic", ("pre", "post"))
    _check_bool(config, "flp.clip_beta")
    _check_bool(config, "flp.clamp_readout")
    _check_float(config, "flp.init_alpha", 0.0)
    _check_float(config, "flp.init_beta", 0.0, 1.0)
  else:
    _check_float(config, "gradient.lr", 0.0)
    for f in ("learn_lr", "second_order", "reset_readout"):
      _check_bool(config, f"gradient.{f}")

  _check_choice(config, "procedure", PROCEDURES)
  if config.procedure == "oml":
    _validate_oml(config)


def _validate_oml(config) -> None:
  """The ``oml`` section (REFERENCE-OML 5), for ``procedure='oml'``."""
  if config.learner != "gradient":
    _fail("learner", config.learner, "'gradient' with procedure='oml' (OML's inner SGD)")
  _check_bool(config, "oml.reset_row")
  _check_float(config, "oml.clamp", 0.0)
  if config.task == "sine":
    _check_choice(config, "oml.train_order", ("",) + sine.ORDERS)
    if config.oml.reset_row:
      _fail("oml.reset_row", True, "False for sine (no class rows to reset)")
    return
  if config.oml.train_order:
    _fail("oml.train_order", config.oml.train_order, "'' (the proxy task has no stream order)")
  _check_int(config, "oml.steps", 2)
  _check_int(config, "oml.remember", 0)
  for f in ("trajectory_classes", "remember_classes"):
    r = config.oml[f]
    if (not isinstance(r, (tuple, list)) or len(r) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in r)
        or not 0 <= r[0] < r[1] <= config.net.readout):
      _fail(f"oml.{f}", r, f"(lo, hi) integers with 0 <= lo < hi <= net.readout="
            f"{config.net.readout} (raw class ids are readout rows)")
  _check_choice(config, "oml.eval_rule", EVAL_RULES)
  lrs = config.oml.eval_lrs
  if (not isinstance(lrs, (tuple, list)) or not lrs
      or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf
             for v in lrs)):
    _fail("oml.eval_lrs", lrs, "a non-empty tuple of positive numbers")
  _check_int(config, "oml.lr_searches", 1)


def output_kind(config) -> str:
  return "regression" if config.task == "sine" else "classification"


def make_learner(config) -> learners.Learner:
  """The learner of a validated config."""
  layers, input_shape = network(config)
  if config.learner == "flp":
    f = config.flp
    return learners.flp(
        layers, input_shape, config.plastic_layers, output=output_kind(config), rule=f.rule,
        signal=f.signal, presynaptic=f.presynaptic, clip_beta=f.clip_beta,
        clamp_readout=f.clamp_readout, init_alpha=f.init_alpha, init_beta=f.init_beta)
  g = config.gradient
  return learners.gradient(
      layers, input_shape, config.plastic_layers, output=output_kind(config), lr=g.lr,
      learn_lr=g.learn_lr, second_order=g.second_order, reset_readout=g.reset_readout)


def meta_lrs(config) -> dict[str, Any]:
  """Learning rate of every meta-parameter group (an optax schedule with ``meta.ff_milestones``)."""
  lr = config.meta.lr
  out = {"ff": lr.ff, "fb": lr.fb, "alpha": lr.alpha, "beta": lr.beta}
  if lr.alpha_readout is not None:
    out["alpha_readout"] = lr.alpha_readout
  if config.meta.ff_milestones and lr.ff > 0:
    # torch's MultiStepLR stepped once per meta-step: optax evaluates the schedule
    # at the count of earlier updates, and scales from count >= milestone on.
    out["ff"] = optax.piecewise_constant_schedule(
        lr.ff, {int(m): config.meta.ff_decay for m in config.meta.ff_milestones})
  return out


def make_tasks(config):
  """``(train_task, eval_task)`` of a validated config.

  Sine: meta-training draws from a fixed pool of ``sine.pool_size`` functions
  (from ``sine.pool_seed``), meta-testing from fresh functions.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if config.task == "sine":
    s = config.sine
    kwargs = dict(order=config.order, mixed_batches=s.mixed_batches, n_functions=s.n_functions,
                  steps_per_function=s.steps_per_function, batch_size=s.batch_size,
                  queries_per_function=s.queries_per_function)
    pool = None
    if s.pool_size:
      pool = sine.sample_functions(jax.random.key(s.pool_seed), s.pool_size)
    train_kwargs = dict(kwargs)
    if config.procedure == "oml" and config.oml.train_order:
      train_kwargs["order"] = config.oml.train_order
    return sine.make_task(pool=pool, **train_kwargs), sine.make_task(pool=None, **kwargs)
  if config.procedure == "oml":
    from flpjax import oml  # pylint: disable=g-import-not-at-top
    return oml.make_tasks(config)
  from flpjax.tasks import fewshot  # pylint: disable=g-import-not-at-top
  return fewshot.make_tasks(config)


def make_validation_task(config):
  """Lifetimes for choosing hyper-parameters, never from the meta-test classes.

  Sine: fresh functions (drawn with ``eval.validation_seed`` by the caller).
  Omniglot: the ``fewshot.validation_classes`` last meta-training classes
  (held out of meta-training when > 0). mini-ImageNet: the 'val' split.
  """
  if config.task == "sine":
    return make_tasks(config)[1]
  from flpjax.tasks import fewshot  # pylint: disable=g-import-not-at-top
  return fewshot.make_validation_task(config)
