"""Objects from a config: a registry from name to constructor, for tasks, learners and estimators.

A config names its task (``config.task``), learner (``config.learner``) and
meta-gradient estimator (``config.estimator``); each name is a key of
`TASKS`, `LEARNERS` or `ESTIMATORS`, whose entry checks that plug-in's own
config section and builds it. `validate` runs the shared checks
(`schema.validate_common`) and then the named entries' checks, so every bad
value stops with one line naming the field before anything is compiled.

Adding a plug-in is one new module plus one line here:

* a task: ``flpjax/tasks/<name>.py`` with a `types.Task` constructor; a
  `TaskEntry` in `TASKS`;
* a learner: ``flpjax/learners/<name>.py`` returning a `Learner`; a
  `LearnerEntry` in `LEARNERS`;
* an estimator: ``flpjax/estimators/<name>.py`` returning an `Estimator`; an
  `EstimatorEntry` in `ESTIMATORS`.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, NamedTuple

import jax
import optax

from flpjax import feedback, learners, meta, nets, plasticity
from flpjax.estimators import es as es_lib
from flpjax.estimators import full as full_lib
from flpjax.estimators import oml as oml_lib
from flpjax.estimators import truncated as truncated_lib
from flpjax.experiment import schema
from flpjax.experiment.schema import (ConfigError, _check_bool, _check_choice, _check_float,
                                      _check_int, _fail)
from flpjax.learners import rules
from flpjax.learners.base import Learner, group_names
from flpjax.tasks import fewshot, oml_proxy, sine
from flpjax.types import Task


class TaskEntry(NamedTuple):
  """A task family: its output kind, checks, network and tasks.

  Attributes:
    output: ``'regression'`` or ``'classification'``.
    validate: ``validate(config)``: checks the task's own section.
    network: ``network(config) -> (layers, input_shape)``.
    make_train: ``make_train(config) -> Task``: meta-training lifetimes.
    make_test: ``make_test(config) -> Task``: meta-test lifetimes.
    make_validation: ``make_validation(config) -> Task``: lifetimes for
      choosing hyper-parameters, never from the meta-test classes.
    check_inputs: ``check_inputs(config)``: checks every data file a run
      will read (validation data included when it sweeps), from stats
      alone; `make_tasks` calls it before loading anything. None: no files.
  """

  output: str
  validate: Callable[[Any], None]
  network: Callable[[Any], tuple[tuple[nets.Layer, ...], tuple[int, ...]]]
  make_train: Callable[[Any], Task]
  make_test: Callable[[Any], Task]
  make_validation: Callable[[Any], Task]
  check_inputs: Callable[[Any], None] | None = None


class LearnerEntry(NamedTuple):
  """A learner: ``validate(config)`` and ``make(config, layers, input_shape, output)``."""

  validate: Callable[[Any], None]
  make: Callable[[Any, tuple, tuple, str], Learner]


class EstimatorEntry(NamedTuple):
  """A meta-gradient estimator.

  Attributes:
    validate: ``validate(config)``: checks the estimator's own section.
    make: ``make(config, learner, train_task) -> Estimator``.
    learners: the learners it can be combined with (None: every learner).
    train_task: ``train_task(config) -> Task`` when the estimator meta-trains
      on a task of its own (OML's proxy task); None: the task's.
    evaluate: ``evaluate(config, params, lifetimes) -> results`` when the
      estimator's rows are evaluated with a rule of their own (OML's inner
      Adam); None: `flpjax.evaluate.evaluate` with the config's learner.
  """

  validate: Callable[[Any], None]
  make: Callable[..., Any]
  learners: tuple[str, ...] | None = None
  train_task: Callable[[Any], Task] | None = None
  evaluate: Callable[..., dict] | None = None


# ----------------------------------------------------------------------------- tasks


def _validate_sine(config) -> None:
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


def _sine_network(config):
  return nets.regression_mlp(tuple(config.net.widths)), (config.sine.n_functions + 1,)


def _sine_kwargs(config, order: str | None = None) -> dict:
  s = config.sine
  return dict(order=order or config.order, mixed_batches=s.mixed_batches,
              n_functions=s.n_functions, steps_per_function=s.steps_per_function,
              batch_size=s.batch_size, queries_per_function=s.queries_per_function)


def _sine_train(config, order: str | None = None) -> Task:
  """Meta-training draws from a fixed pool of ``sine.pool_size`` functions (``sine.pool_seed``)."""
  s = config.sine
  pool = sine.sample_functions(jax.random.key(s.pool_seed), s.pool_size) if s.pool_size else None
  kwargs = _sine_kwargs(config, order)
  if config.get("run_orders") and order is None:  # one order per run (`Task.data_axes`)
    kwargs["order"] = tuple(config.run_orders)
  return sine.make_task(pool=pool, **kwargs)


def _sine_test(config) -> Task:
  """Meta-testing (and validation) draws fresh functions."""
  return sine.make_task(pool=None, **_sine_kwargs(config))


def _validate_fewshot(config) -> None:
  for f in ("ways", "shots", "queries_per_class"):
    _check_int(config, f"fewshot.{f}", 1)
  _check_int(config, "fewshot.ways", 2, config.net.readout)
  _check_int(config, "fewshot.image_size", 8, 512)
  _check_bool(config, "fewshot.query_overlap")
  _check_int(config, "fewshot.validation_classes", 0)
  _check_int(config, "fewshot.support_pool", 0)
  _check_int(config, "fewshot.test_pool", 0)
  f = config.fewshot
  if config.task == "custom":  # counts are checked against the data (fewshot.check_inputs)
    _validate_custom(config)
  else:
    per_class = fewshot.SHAPES[config.task][0]
    pool, held = fewshot.pools(config.task, per_class, f.support_pool, f.test_pool)
    if f.shots > pool:
      _fail("fewshot.shots", f.shots, f"at most {pool} (the meta-test support pool per class)")
    if pool + held > per_class:
      _fail("fewshot.test_pool", f.test_pool, f"at most {per_class - pool} (support pool "
            f"{pool} + test pool <= {per_class} images per class)")
    if not f.query_overlap and f.shots + f.queries_per_class > per_class:
      _fail("fewshot.queries_per_class", f.queries_per_class,
            f"at most {per_class - f.shots} (fewshot.shots + queries <= {per_class} images "
            "per class; or fewshot.query_overlap=True)")
    if config.sweep.lrs and fewshot.SPLITS[config.task][2] is None and not f.validation_classes:
      _fail("fewshot.validation_classes", 0, f"> 0 with a sweep: {config.task} has no "
            "validation split, so the sweep compares its runs on held-out meta-training classes")
  if not isinstance(config.fewshot.data_dir, str):
    _fail("fewshot.data_dir", config.fewshot.data_dir, "a directory path or ''")
  for f in ("channels", "hidden", "readout"):
    _check_int(config, f"net.{f}", 1)
  strides = config.net.strides
  if (not isinstance(strides, (tuple, list)) or not strides
      or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in strides)):
    _fail("net.strides", strides, "a non-empty tuple of positive integers")


def _validate_custom(config) -> None:
  """``config.custom``: a few-shot data set of your own (task 'custom')."""
  c = config.custom
  for split in ("train", "test"):
    if not isinstance(c[split], str) or not c[split]:
      _fail(f"custom.{split}", c[split], "a folder of class subfolders or a .npy/.npz file "
            "(relative: under fewshot.data_dir)")
  if not isinstance(c.val, str):
    _fail("custom.val", c.val, "a folder of class subfolders, a .npy/.npz file or ''")
  _check_int(config, "custom.channels", 1, 4)
  for name, low in (("mean", None), ("std", 1e-12)):
    values = c[name]
    if (not isinstance(values, (tuple, list)) or len(values) not in (1, c.channels)
        or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
               or (low is not None and v < low) for v in values)):
      _fail(f"custom.{name}", values, f"a tuple of 1 or custom.channels={c.channels} finite "
            "numbers" + (" > 0" if low else ""))
  if config.sweep.lrs and not c.val and not config.fewshot.validation_classes:
    _fail("custom.val", c.val, "validation classes for the sweep (a folder or array file), "
          "or set fewshot.validation_classes > 0")
  if config.estimator == "oml":
    _fail("task", config.task, "'omniglot' or 'mini_imagenet' with estimator='oml' (its proxy "
          "task's class ranges are theirs)")


def _fewshot_network(config):
  size = config.fewshot.image_size
  return (nets.conv_classifier(config.net.channels, config.net.hidden, config.net.readout,
                               tuple(config.net.strides)),
          (size, size, fewshot.channels(config)))


def _load(config, split: str):
  return fewshot.load(config, split)  # tfds is imported only here, when needed


def _fewshot_test_task(config, images=None) -> Task:
  f = config.fewshot
  test_split = fewshot.SPLITS[config.task][1]
  images = _load(config, test_split) if images is None else images
  return fewshot.make_test_task(images, dataset=fewshot.config_dataset(config),
                                ways=f.ways, shots=f.shots, support_pool=f.support_pool or None,
                                test_pool=f.test_pool or None, order=config.order)


def _fewshot_train_task(config) -> Task:
  f = config.fewshot
  train_split = fewshot.SPLITS[config.task][0]
  train_images = _load(config, train_split)
  if f.validation_classes:
    train_images = train_images[:-f.validation_classes]
  return fewshot.make_train_task(train_images, dataset=fewshot.config_dataset(config),
                                 ways=f.ways, shots=f.shots,
                                 queries=f.queries_per_class,
                                 order=tuple(config.get("run_orders", ())) or config.order,
                                 query_overlap=f.query_overlap)


def _fewshot_validation_task(config) -> Task:
  """Omniglot: the ``fewshot.validation_classes`` last meta-training classes; mini-ImageNet: 'val';
  'custom': ``custom.val`` if set, else as Omniglot."""
  f = config.fewshot
  train_split = fewshot.SPLITS[config.task][0]
  val_split = fewshot.validation_split(config)
  if val_split is not None:
    images = _load(config, val_split)
  elif f.validation_classes:
    images = _load(config, train_split)[-f.validation_classes:]
  else:
    raise ConfigError(f"config.fewshot.validation_classes=0: {config.task} has no validation "
                      "split; expected > 0 to hold out meta-training classes")
  return _fewshot_test_task(config, images)


_FEWSHOT = dict(output="classification", validate=_validate_fewshot, network=_fewshot_network,
                make_train=_fewshot_train_task, make_test=_fewshot_test_task,
                make_validation=_fewshot_validation_task, check_inputs=fewshot.check_inputs)

TASKS: dict[str, TaskEntry] = {
    "sine": TaskEntry("regression", _validate_sine, _sine_network, _sine_train, _sine_test,
                      _sine_test),
    "omniglot": TaskEntry(**_FEWSHOT),
    "mini_imagenet": TaskEntry(**_FEWSHOT),
    "custom": TaskEntry(**_FEWSHOT),  # a data set of your own: config.custom
}


# ----------------------------------------------------------------------------- learners


def _validate_flp(config) -> None:
  _check_choice(config, "flp.rule", plasticity.RULES)
  _check_choice(config, "flp.signal", feedback.SIGNALS)
  _check_choice(config, "flp.presynaptic", ("pre", "post"))
  _check_bool(config, "flp.clip_beta")
  _check_bool(config, "flp.clamp_readout")
  _check_float(config, "flp.init_alpha", 0.0)
  _check_float(config, "flp.init_beta", 0.0, 1.0)
  _check_bool(config, "flp.positive_readout_feedback")
  if config.flp.init_alpha_readout is not None:
    _check_float(config, "flp.init_alpha_readout", 0.0)


def _make_flp(config, layers, input_shape, output) -> Learner:
  f = config.flp
  return learners.flp(layers, input_shape, config.plastic_layers, output=output, rule=f.rule,
                      signal=f.signal, presynaptic=f.presynaptic, clip_beta=f.clip_beta,
                      clamp_readout=f.clamp_readout, init_alpha=f.init_alpha,
                      init_beta=f.init_beta,
                      positive_readout_feedback=f.positive_readout_feedback,
      init_alpha_readout=f.init_alpha_readout)


def _validate_gradient(config) -> None:
  _check_float(config, "gradient.lr", 0.0)
  for f in ("learn_lr", "second_order", "reset_readout"):
    _check_bool(config, f"gradient.{f}")


def _make_gradient(config, layers, input_shape, output) -> Learner:
  g = config.gradient
  return learners.gradient(layers, input_shape, config.plastic_layers, output=output, lr=g.lr,
                           learn_lr=g.learn_lr, second_order=g.second_order,
                           reset_readout=g.reset_readout)


def _validate_alignment(config) -> None:
  _check_float(config, "alignment.lr", 0.0)
  for f in ("second_order", "learn_feedback", "reset_readout"):
    _check_bool(config, f"alignment.{f}")
  if config.alignment.learn_feedback and not config.alignment.second_order:
    _fail("alignment.learn_feedback", True, "False, or alignment.second_order=True (the "
          "feedback reaches the meta-loss only through the update direction)")


def _alignment(make):
  def build(config, layers, input_shape, output) -> Learner:
    a = config.alignment
    return make(layers, input_shape, config.plastic_layers, output=output, lr=a.lr,
                second_order=a.second_order, learn_feedback=a.learn_feedback,
                reset_readout=a.reset_readout)
  return build


def _validate_plastic_feedback(config) -> None:
  _validate_flp(config)  # the flp options are read from config.flp
  _check_choice(config, "plastic_feedback.feedback_rule", plasticity.RULES)
  _check_bool(config, "plastic_feedback.hidden_feedback")
  _check_float(config, "plastic_feedback.init_fb_rate")


def _make_plastic_feedback(config, layers, input_shape, output) -> Learner:
  f, p = config.flp, config.plastic_feedback
  return learners.plastic_feedback(
      layers, input_shape, config.plastic_layers, output=output,
      feedback_rule=p.feedback_rule, hidden_feedback=p.hidden_feedback,
      init_fb_rate=p.init_fb_rate, rule=f.rule, signal=f.signal, presynaptic=f.presynaptic,
      clip_beta=f.clip_beta, clamp_readout=f.clamp_readout, init_alpha=f.init_alpha,
      init_beta=f.init_beta,
      positive_readout_feedback=f.positive_readout_feedback,
      init_alpha_readout=f.init_alpha_readout)


def _validate_learned_rule(config) -> None:
  _validate_flp(config)  # the flp options are read from config.flp (flp.rule is not used)
  r = config.learned_rule
  _check_choice(config, "learned_rule.rule", rules.RULE_NAMES)
  _check_choice(config, "learned_rule.init", ("",) + rules.INITS)
  _check_bool(config, "learned_rule.per_synapse")
  _check_int(config, "learned_rule.hidden", 1)
  if r.rule == "mlp" and r.init not in ("", "random"):
    _fail("learned_rule.init", r.init, "'' or 'random' with learned_rule.rule='mlp'")
  if r.rule == "mlp" and r.per_synapse:
    _fail("learned_rule.per_synapse", True, "False with learned_rule.rule='mlp'")


def _make_learned_rule(config, layers, input_shape, output) -> Learner:
  f, r = config.flp, config.learned_rule
  return rules.learned_rule(
      layers, input_shape, config.plastic_layers, output=output, rule=r.rule,
      init=r.init or None, per_synapse=r.per_synapse, hidden=r.hidden, signal=f.signal,
      presynaptic=f.presynaptic, clip_beta=f.clip_beta, clamp_readout=f.clamp_readout,
      init_alpha=f.init_alpha, init_beta=f.init_beta,
      positive_readout_feedback=f.positive_readout_feedback,
      init_alpha_readout=f.init_alpha_readout)


LEARNERS: dict[str, LearnerEntry] = {
    "flp": LearnerEntry(_validate_flp, _make_flp),
    "gradient": LearnerEntry(_validate_gradient, _make_gradient),
    "dfa": LearnerEntry(_validate_alignment, _alignment(learners.dfa)),
    "fa": LearnerEntry(_validate_alignment, _alignment(learners.fa)),
    "plastic_feedback": LearnerEntry(_validate_plastic_feedback, _make_plastic_feedback),
    "learned_rule": LearnerEntry(_validate_learned_rule, _make_learned_rule),
}


# ----------------------------------------------------------------------------- estimators


def _no_checks(config) -> None:
  del config


def _make_full(config, learner, task):
  return full_lib.make(learner, task, meta_batch=config.meta.batch_size,
                       remat=config.meta.remat, chunk=config.meta.chunk or None)


def _validate_oml(config) -> None:
  """The ``oml`` section (docs/fidelity.md OML 5)."""
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
  _check_choice(config, "oml.eval_rule", ("adam", "sgd"))
  lrs = config.oml.eval_lrs
  if (not isinstance(lrs, (tuple, list)) or not lrs
      or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < float("inf")
             for v in lrs)):
    _fail("oml.eval_lrs", lrs, "a non-empty tuple of positive numbers")
  _check_int(config, "oml.lr_searches", 1)


def _make_oml(config, learner, task):
  return oml_lib.make(learner, task, clamp=config.oml.clamp or None,
                      reset_row=config.oml.reset_row, meta_batch=config.meta.batch_size,
                      remat=config.meta.remat, chunk=config.meta.chunk or None)


def _oml_train_task(config) -> Task:
  """Sine: the sine task in ``oml.train_order``; few-shot: OML's proxy task over the training split."""
  if config.task == "sine":
    return _sine_train(config, order=config.oml.train_order or None)
  images = _load(config, fewshot.SPLITS[config.task][0])
  o = config.oml
  try:
    return oml_proxy.make_train_task(images, dataset=config.task, steps=o.steps,
                                     trajectory_classes=tuple(o.trajectory_classes),
                                     remember_classes=tuple(o.remember_classes),
                                     remember=o.remember)
  except ValueError as e:
    raise ConfigError(f"config.oml: {e}") from None


def _oml_evaluate(config, params, lifetimes: int) -> dict:
  """OML's rows (docs/fidelity.md OML 5): few-shot with ``oml.eval_rule='adam'`` uses OML's inner Adam."""
  from flpjax import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from flpjax import oml  # pylint: disable=g-import-not-at-top
  task = TASKS[config.task].make_test(config)
  key = jax.random.key(config.eval.seed)
  if config.task == "sine" or config.oml.eval_rule == "sgd":
    return evaluate_lib.evaluate(make_learner(config), task, params, key, lifetimes=lifetimes,
                                 batch=config.eval.batch)
  layers, input_shape = network(config)

  def adam(lr):
    return oml.adam_learner(layers, input_shape, config.plastic_layers,
                            output=output_kind(config), lr=lr)

  return oml.evaluate_adam(adam, task, params, key, lrs=tuple(config.oml.eval_lrs),
                           searches=config.oml.lr_searches, lifetimes=lifetimes,
                           batch=config.eval.batch)


def lifetime_steps(config) -> int:
  """``T``, the support steps of one meta-training lifetime, from the config alone."""
  if config.estimator == "oml" and config.task != "sine":
    return config.oml.steps
  if config.task == "sine":
    return config.sine.n_functions * config.sine.steps_per_function
  return config.fewshot.ways * config.fewshot.shots


def _check_window(config) -> None:
  _check_int(config, "truncated.window", 1)
  t = lifetime_steps(config)
  if t % config.truncated.window:
    divisors = [d for d in range(1, t + 1) if t % d == 0]
    _fail("truncated.window", config.truncated.window,
          f"a divisor of the lifetime's {t} steps: one of {divisors}")


def _check_es(config) -> None:
  _check_int(config, "es.population", 1)
  _check_float(config, "es.sigma", 1e-12)
  _check_bool(config, "es.antithetic")
  _check_int(config, "es.chunk", 0)
  if config.es.chunk and config.es.population % config.es.chunk:
    _fail("es.chunk", config.es.chunk, f"0 or a divisor of es.population={config.es.population}")


def _make_truncated(config, learner, task):
  return truncated_lib.make(learner, task, window=config.truncated.window,
                            meta_batch=config.meta.batch_size, remat=config.meta.remat,
                            chunk=config.meta.chunk or None)


def frozen_groups(config, learner: Learner) -> tuple[str, ...]:
  """The learner's groups whose meta-learning rate is 0 (ES and PES do not perturb them)."""
  lrs = meta_lrs(config, learner)
  rate = lambda g: lrs.get(g.name, lrs.get(g.fallback))  # noqa: E731
  return tuple(g.name for g in learner.groups
               if isinstance(rate(g), (int, float)) and rate(g) == 0)


def _make_es(config, learner, task):
  e = config.es
  return es_lib.make(learner, task, population=e.population, sigma=e.sigma,
                     meta_batch=config.meta.batch_size, antithetic=e.antithetic,
                     chunk=e.chunk or None, frozen=frozen_groups(config, learner))


def _validate_pes(config) -> None:
  _check_window(config)
  _check_es(config)


def _make_pes(config, learner, task):
  e = config.es
  return es_lib.make_pes(learner, task, window=config.truncated.window, population=e.population,
                         sigma=e.sigma, meta_batch=config.meta.batch_size,
                         frozen=frozen_groups(config, learner))


ESTIMATORS: dict[str, EstimatorEntry] = {
    "full": EstimatorEntry(_no_checks, _make_full),
    "oml": EstimatorEntry(_validate_oml, _make_oml, learners=("gradient",),
                          train_task=_oml_train_task, evaluate=_oml_evaluate),
    "truncated": EstimatorEntry(_check_window, _make_truncated),
    "es": EstimatorEntry(_check_es, _make_es),
    "pes": EstimatorEntry(_validate_pes, _make_pes),
}

#: Estimators that store the whole lifetime for reverse-mode differentiation.
FULL_LIFETIME = ("full", "oml")


def _memory_limit(config) -> int:
  if config.meta.max_lifetime_bytes:
    return config.meta.max_lifetime_bytes
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  import os  # pylint: disable=g-import-not-at-top
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_lifetime_memory(config, learner: Learner) -> None:
  """Full backprop stores the fast state of every step (``meta.remat='step'``): stop early if
  that cannot fit, and say what would (lifetimes longer than memory allows)."""
  if config.estimator not in FULL_LIFETIME or config.meta.remat == "nested":
    return
  key = jax.random.key(0)
  fast = jax.eval_shape(lambda: learner.init(learner.init_params(key), key))
  fast_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(fast))
  t = lifetime_steps(config)
  need = t * fast_bytes * config.meta.batch_size * config.runs
  limit = _memory_limit(config)
  if need > limit:
    _fail("estimator", config.estimator,
          f"an estimator whose memory does not grow with the lifetime: the {t}-step lifetime "
          f"stores about {need / 2**30:.1f} GiB of fast weights for backprop, more than the "
          f"{limit / 2**30:.1f} GiB available; use estimator='truncated' (truncated.window=K), "
          "'es' or 'pes', or meta.remat='nested'")


# ----------------------------------------------------------------------------- the config


def network(config) -> tuple[tuple[nets.Layer, ...], tuple[int, ...]]:
  """The network and the shape of one input example, from the config."""
  return TASKS[config.task].network(config)


def output_kind(config) -> str:
  """``'regression'`` or ``'classification'``: the task's."""
  return TASKS[config.task].output


def make_learner(config) -> Learner:
  """The learner of a validated config."""
  layers, input_shape = network(config)
  return LEARNERS[config.learner].make(config, layers, input_shape, output_kind(config))


def make_tasks(config) -> tuple[Task, Task]:
  """``(meta-train task, meta-test task)`` of a validated config (the estimator's own
  meta-training task where it has one, e.g. OML's proxy task).

  Every data file the run reads is checked first (`TaskEntry.check_inputs`):
  a split needed only later, as the validation split of a sweep, stops the run
  here, before anything is loaded or compiled.
  """
  task = TASKS[config.task]
  if task.check_inputs is not None:
    task.check_inputs(config)
  own = ESTIMATORS[config.estimator].train_task
  return (own or task.make_train)(config), task.make_test(config)


def make_validation_task(config) -> Task:
  """Lifetimes for choosing hyper-parameters, never from the meta-test classes.

  Sine: fresh functions (drawn with ``eval.validation_seed`` by the caller).
  Omniglot: the ``fewshot.validation_classes`` last meta-training classes
  (held out of meta-training when > 0). mini-ImageNet: the 'val' split.
  """
  return TASKS[config.task].make_validation(config)


def check_source_runs(config) -> None:
  """The runs a new run starts from (``init_ff_from``, ``extend_from``) exist, with a config
  and a checkpoint; `train.train_and_evaluate` checks them before anything is compiled
  when it starts a run (a resumed run reads its own checkpoint, not them)."""
  from flpjax.experiment import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from flpjax.experiment.errors import WorkdirError  # pylint: disable=g-import-not-at-top
  for field in ("init_ff_from", "extend_from"):
    path = config[field]
    if not path:
      continue
    where = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(where):
      _fail(field, path, f"a trained run's workdir; {where}: no such directory")
    try:
      workdir_lib.read_config(where)
    except WorkdirError as e:
      _fail(field, path, f"a trained run's workdir; {e}")
    checkpoints = os.path.join(where, "checkpoints")
    steps = [d for d in (os.listdir(checkpoints) if os.path.isdir(checkpoints) else [])
             if d.isdigit()]
    if not steps:
      _fail(field, path, f"a trained run's workdir; no checkpoint in {checkpoints} (train "
            "that run first)")


def make_estimator(config, learner: Learner, task: Task):
  """The meta-gradient estimator of a validated config, over ``task`` (the meta-train task)."""
  return ESTIMATORS[config.estimator].make(config, learner, task)


def meta_lrs(config, learner: Learner | None = None) -> dict[str, Any]:
  """Learning rate of every meta-parameter group (an optax schedule with ``meta.ff_milestones``).

  The standard groups always (`meta.STANDARD_GROUPS`, frozen where the learner
  lacks them), plus the learner's other groups (``meta.lr.<group>``).
  """
  learner = learner or make_learner(config)
  lr = config.meta.lr
  out = {"ff": lr.ff, "fb": lr.fb, "alpha": lr.alpha, "beta": lr.beta}
  if lr.alpha_readout is not None:
    out["alpha_readout"] = lr.alpha_readout
  for g in learner.groups:
    if g.name not in out and g.name != "alpha_readout":
      out[g.name] = lr[g.name] if g.name in lr else g.default_lr
  if config.meta.ff_milestones and lr.ff > 0:
    # torch's MultiStepLR stepped once per meta-step: optax evaluates the schedule
    # at the count of earlier updates, and scales from count >= milestone on.
    out["ff"] = optax.piecewise_constant_schedule(
        lr.ff, {int(m): config.meta.ff_decay for m in config.meta.ff_milestones})
  return out


def make_optimizer(config, learner: Learner | None = None) -> optax.GradientTransformation:
  """The meta-optimizer of a config: `meta.make_optimizer` with `meta_lrs` and the
  ``meta.clip_norm`` / ``warmup_steps`` / ``nonnegative`` options."""
  learner = learner or make_learner(config)
  return meta.make_optimizer(
      meta_lrs(config, learner), learner, clip_norm=float(config.meta.clip_norm),
      warmup_steps=int(config.meta.warmup_steps), nonnegative=tuple(config.meta.nonnegative))


def validate(config) -> None:
  """Checks every field; raises `ConfigError` naming the first bad one."""
  _check_choice(config, "task", TASKS)
  _check_choice(config, "learner", LEARNERS)
  _check_choice(config, "estimator", ESTIMATORS)
  _check_choice(config, "order", sine.ORDERS)
  schema.validate_common(config)
  TASKS[config.task].validate(config)
  layers, input_shape = network(config)
  try:
    nets.output_shapes(layers, input_shape)
  except ValueError as e:
    raise ConfigError(f"config.fewshot.image_size={config.fewshot.image_size!r}: {e}"
                      f" (config.net.strides={tuple(config.net.strides)!r})") from None
  n_dense = sum(isinstance(l, nets.Dense) for l in layers)
  _check_int(config, "plastic_layers", 1, n_dense)
  LEARNERS[config.learner].validate(config)
  entry = ESTIMATORS[config.estimator]
  if entry.learners is not None and config.learner not in entry.learners:
    _fail("learner", config.learner, f"one of {', '.join(map(repr, entry.learners))} with "
          f"estimator={config.estimator!r}")
  entry.validate(config)
  if config.run_orders and config.estimator != "full":
    _fail("run_orders", tuple(config.run_orders), f"() with estimator={config.estimator!r} "
          "(one stream order per run needs estimator='full')")
  try:
    learner = make_learner(config)
  except ValueError as e:
    raise ConfigError(f"config.learner={config.learner!r}: {e}") from None
  _check_lifetime_memory(config, learner)
  bad = [g for g in config.meta.nonnegative if g not in group_names(learner)]
  if bad or isinstance(config.meta.nonnegative, str):
    _fail("meta.nonnegative", tuple(config.meta.nonnegative) if not isinstance(
        config.meta.nonnegative, str) else config.meta.nonnegative,
          f"a tuple of this learner's groups {group_names(learner)}")
  if config.sweep.lrs:  # the swept group must be one of the learner's
    _check_choice(config, "sweep.group", group_names(learner))
