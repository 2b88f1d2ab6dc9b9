"""The settings schema: defaults and the checks that every run shares (config as data).

`base_config()` holds every field with its default: the fields every run has,
plus each registered plug-in's own sections (``CONFIG``) and a meta-learning
rate per meta-parameter group its learners declare (``meta.lr.<group>``),
both read from the plug-ins (`flpjax.config.registry`); experiment files in
``experiments/configs/`` start from it. `validate_common` checks the shared
fields; each plug-in checks its own sections (`flpjax.config.build.validate`
runs both). A failed check raises `checks.ConfigError` with a one-line message
that names the field, what it got and what is allowed. `load_file` reads a
config string (``experiments/configs/sine.py:row=flp3``); `parse_arg` and
`apply_run_args` are the config files' side of it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import types
from typing import Any, Iterable

import ml_collections

from flpjax import lifetime
from flpjax.config import checks, registry
from flpjax.config.checks import ConfigError

MATMUL_PRECISIONS = ("highest", "float32", "tensorfloat32", "bfloat16_3x", "default")


def base_config() -> ml_collections.ConfigDict:
  """Defaults: the paper's sine FLP (3) i.i.d. row (Table 1, Table 3), with every
  registered plug-in's sections (`plugin_sections`)."""
  c = ml_collections.ConfigDict()
  c.task = "sine"
  c.order = "iid"  # 'iid' or 'continual'
  c.seed = 0
  # float32 matmuls at full precision: GPUs otherwise use TF32, which changes long
  # Oja accumulations. 'default' or 'tensorfloat32' trade accuracy for speed.
  c.matmul_precision = "highest"
  c.learner = "flp"
  c.plastic_layers = 3
  c.init_ff_from = ""  # workdir whose meta-learned feed-forward weights seed this run (B.2)
  # Section 7.1: workdir of a feature-reuse run whose feed-forward initialisation
  # (and readout plasticity/feedback) this run starts from, with more plastic layers;
  # meta.lr.ff must be 0 so that the feed-forward initialisation stays frozen.
  c.extend_from = ""
  # The meta-gradient estimator (flpjax.config.registry.ESTIMATORS): 'full' (backprop
  # through the whole lifetime, every row but one), 'oml' (the original OML procedure,
  # flpjax/protocols/oml.py; the 'Original OML' rows), 'truncated' (backprop through
  # truncated.window-step windows of a lifetime), 'es' (antithetic evolution strategies,
  # forward passes only), 'pes' (persistent ES over truncated.window-step windows).
  c.estimator = "full"
  for section, fields in plugin_sections().items():
    c[section] = ml_collections.ConfigDict(fields)
  # The frozen trunk (flpjax.trunks): '' = the network's own frozen layers; 'mlp' / 'conv' =
  # flax modules of the same layers; 'package.module:attr' = your flax module.
  c.net.trunk = ""

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
  # 'alpha_readout'): plasticities of one sign); nonfinite_backoff: groups multiplied by
  # backoff_factor at every skipped (non-finite) meta-step (e.g. ('alpha', 'alpha_readout'):
  # a network whose first lifetimes explode lowers its plasticity until they do not;
  # () = skip the step and change nothing, the paper's procedure); max_loss: a meta-step
  # whose loss is above it counts as skipped (non-finite) too: a lifetime that diverged
  # but stayed finite (its huge meta-gradient would otherwise fill Adam's second moment
  # and freeze the run), e.g. 10x the task's no-learning level; 0 = no bound.
  c.meta.clip_norm = 0.0
  c.meta.warmup_steps = 0
  c.meta.nonnegative = ()
  c.meta.nonfinite_backoff = ()
  c.meta.backoff_factor = 0.5
  c.meta.max_loss = 0.0
  c.meta.ff_milestones = ()
  c.meta.ff_decay = 0.3
  # The meta-learning rate of every group a registered learner declares (its GROUPS);
  # None: the group's fallback's rate (e.g. the readout's plasticity takes alpha's).
  c.meta.lr = ml_collections.ConfigDict(group_rates())
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


def _plugins():
  for kind in registry.KINDS:
    for name in registry.names(kind):
      yield f"{kind} {name!r}", registry.get(kind, name)


def plugin_sections() -> dict[str, dict[str, Any]]:
  """Every registered plug-in's config sections (``CONFIG``), merged: two plug-ins may own
  the same section (dfa and fa: 'alignment'; the tasks: 'net') if they agree on the
  defaults of the fields they share. A default given as a type (``float``) is None of
  that type (an ml_collections placeholder, fresh in every config)."""
  out, owner = {}, {}
  for who, plugin in _plugins():
    for section, fields in getattr(plugin, "CONFIG", {}).items():
      merged = out.setdefault(section, {})
      for k, v in fields.items():
        if k in merged and merged[k] != v:
          raise ValueError(f"{who}: config.{section}.{k} defaults to {v!r}, but "
                           f"{owner[section, k]} sets {merged[k]!r}")
        merged.setdefault(k, v)
        owner.setdefault((section, k), who)
  placeholder = ml_collections.config_dict.placeholder
  return {section: {k: placeholder(v) if isinstance(v, type) else v for k, v in fields.items()}
          for section, fields in out.items()}


def group_rates() -> dict[str, Any]:
  """``{group: default meta-learning rate}`` over every registered learner's ``GROUPS`` and
  the flax trunk's (`flpjax.trunks`); a group with a ``fallback`` defaults to None: its
  fallback's rate."""
  from flpjax import trunks  # pylint: disable=g-import-not-at-top  # flax
  out, owner = {}, {}
  plugins = [(n, registry.get("learner", n)) for n in registry.names("learner")]
  for name, plugin in plugins + [("(the trunk)", trunks)]:
    for g in getattr(plugin, "GROUPS", ()):
      rate = (ml_collections.config_dict.placeholder(float) if g.fallback is not None
              else g.default_lr)
      if g.name in out and owner[g.name][1] != g.default_lr:
        raise ValueError(f"learner {name!r}: group {g.name!r} defaults to {g.default_lr}, "
                         f"but learner {owner[g.name][0]!r} declares {owner[g.name][1]}")
      out.setdefault(g.name, rate)
      owner.setdefault(g.name, (name, g.default_lr))
  return out


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
  """The plasticity meta-learning-rate group a sweep of ``config``'s row varies (B.1): the
  learner plug-in's ``plasticity_group(config)``. Raises `ConfigError` for a learner
  without one (nothing to sweep)."""
  rule = getattr(registry.get("learner", config.learner), "plasticity_group", None)
  if rule is None:
    raise ConfigError(f"config.learner={config.learner!r}: it has no plasticity group to "
                      "sweep or set (plasticity_lr)")
  return rule(config)


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


def set_field(config, path: str, value: Any) -> None:
  """Sets the field ``'a.b.c'`` of ``config`` (as ``--config.a.b.c=value`` would)."""
  node = config
  *parents, last = path.split(".")
  for p in parents:
    node = node[p]
  node[last] = value


def validate_common(config) -> None:
  """Checks the fields that every task, learner and estimator shares (``meta.lr.<group>``:
  a rate in [0, 1] or None for every group)."""
  checks.check_int(config, "seed", 0)
  checks.check_choice(config, "matmul_precision", MATMUL_PRECISIONS)
  checks.check_int(config, "meta.steps", 0)
  checks.check_int(config, "meta.batch_size", 1)
  checks.check_choice(config, "meta.remat", lifetime.REMATS)
  checks.check_int(config, "meta.chunk", 0)
  checks.check_int(config, "meta.max_nonfinite", 1)
  checks.check_int(config, "meta.warmup_steps", 0)
  for field, zero in (("clip_norm", "no clipping"), ("max_loss", "no bound")):
    value = config.meta.get(field, 0.0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
      raise ConfigError(f"config.meta.{field}={value!r}: expected a number >= 0 (0: {zero})")
  for group, rate in config.meta.lr.items():  # every group's rate; None: its fallback's
    if rate is not None:
      checks.check_float(config, f"meta.lr.{group}", 0.0, 1.0)
  checks.check_int(config, "eval.lifetimes", 1)
  checks.check_int(config, "eval.batch", 1)
  checks.check_int(config, "eval.seed", 0)
  checks.check_int(config, "eval.validation_seed", 0)
  checks.check_int(config, "runs", 1)
  checks.check_rates(config, "sweep.lrs")
  orders = config.get("run_orders", ())
  if orders and (not isinstance(orders, (tuple, list)) or len(orders) != config.runs
                 or any(o not in ("iid", "continual") for o in orders)):
    checks.fail("run_orders", orders, f"() or a tuple of config.runs={config.runs} orders, each "
          "'iid' or 'continual'")
  if config.sweep.lrs and config.runs != len(config.sweep.lrs):
    checks.fail("runs", config.runs, f"len(sweep.lrs) = {len(config.sweep.lrs)} (one run per swept rate)")
  checks.check_bool(config, "eval.at_start")
  checks.check_int(config, "eval.curve_every", 0)
  checks.check_int(config, "eval.curve_lifetimes", 2)
  checks.check_int(config, "meta.max_nonfinite_total", 0)
  checks.check_float(config, "meta.backoff_factor", 0.0, 1.0)
  if config.meta.get("backoff_factor", 0.5) == 0.0:
    checks.fail("meta.backoff_factor", 0.0, "a number in (0, 1] (1: no back-off)")
  checks.check_int(config, "checkpoint_every", 1)
  checks.check_int(config, "keep_checkpoints", 1)
  checks.check_int(config, "log_every", 1)
  if not isinstance(config.init_ff_from, str):
    checks.fail("init_ff_from", config.init_ff_from, "a workdir path or ''")
  if not isinstance(config.extend_from, str):
    checks.fail("extend_from", config.extend_from, "a workdir path or ''")
  if config.extend_from:
    if config.init_ff_from:
      checks.fail("extend_from", config.extend_from, "'' when config.init_ff_from is set (one source)")
    if config.meta.lr.ff != 0:
      checks.fail("meta.lr.ff", config.meta.lr.ff, "0 with config.extend_from (section 7.1: the "
            "feed-forward initialisation stays frozen)")
  milestones = config.meta.ff_milestones
  if (not isinstance(milestones, (tuple, list))
      or any(isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1
             for m in milestones)
      or list(milestones) != sorted(set(milestones))):
    checks.fail("meta.ff_milestones", milestones, "a tuple of increasing positive integers")
  checks.check_float(config, "meta.ff_decay", 0.0, 1.0)
  checks.check_int(config, "meta.max_lifetime_bytes", 0)


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
