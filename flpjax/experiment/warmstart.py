"""Where a run's meta-parameters start: fresh, or from other runs (B.2's init, section 7.1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from absl import logging

from flpjax import meta, parallel
from flpjax.config import build
from flpjax.config.checks import ConfigError
from flpjax.experiment.checkpoints import load_run, run_keys
from flpjax.reporting.errors import WorkdirError


def initial_state(config, learner, optimizer, estimator=None) -> meta.TrainState:
  """Fresh meta-parameters (one set per run), optimizer and estimator states, sweep rates applied."""
  if config.runs == 1:
    state = meta.init_state(learner, optimizer, jax.random.key(config.seed), estimator=estimator)
  else:
    state = meta.init_states(learner, optimizer, run_keys(config), estimator=estimator)
  if config.extend_from:
    state = state._replace(params=_extended_from(config, learner, state.params))
  if config.init_ff_from or config.extend_from:
    if config.init_ff_from:
      state = state._replace(params=_ff_from(config, state.params))
    state = state._replace(opt_state=optimizer.init(state.params) if config.runs == 1 else
                           jax.vmap(optimizer.init)(state.params))
  if config.sweep.lrs:
    # the swept group, and the groups that take its rate (e.g. the readout's plasticity)
    groups = [config.sweep.group] + [
        g.name for g in learner.groups
        if g.fallback == config.sweep.group and config.meta.lr.get(g.name) is None]
    rates = jnp.asarray(config.sweep.lrs, jnp.float32)
    if config.runs == 1:
      rates = rates[0]
    try:
      state = state._replace(opt_state=meta.set_learning_rates(
          state.opt_state, {g: rates for g in groups}))
    except ValueError:
      raise ConfigError(
          f"config.sweep.group={config.sweep.group!r}: that group is frozen "
          f"(config.meta.lr.{config.sweep.group} is 0); expected a trained group") from None
  return parallel.shard_runs(state) if config.runs > 1 else state


def _extended_from(config, learner, params):
  """Section 7.1: ``params`` built from a feature-reuse run (`analysis.extend_plasticity`)."""
  from flpjax import analysis  # pylint: disable=g-import-not-at-top
  try:
    source_config, source, _ = load_run(config.extend_from)
  except WorkdirError as e:
    raise ConfigError(f"config.extend_from={config.extend_from!r}: {e}") from None
  lrs = build.meta_lrs(config, learner)
  runs = config.runs
  try:
    if source_config.runs == runs > 1:  # run r from run r
      out = [analysis.extend_plasticity(learner, jax.tree.map(lambda a, r=r: a[r], source),
                                        jax.random.key(config.seed + r), lrs)[0]
             for r in range(runs)]
      return jax.tree.map(lambda *a: jnp.stack(a), *out)
    if source_config.runs > 1:  # one source network: its run 0
      source = jax.tree.map(lambda a: a[0], source)
    out = analysis.extend_plasticity(learner, source, jax.random.key(config.seed), lrs)[0]
  except ValueError as e:
    raise ConfigError(f"config.extend_from={config.extend_from!r}: {e}") from None
  logging.info("section 7.1: starting from the feature-reuse run %s", config.extend_from)
  if runs > 1:
    return jax.tree.map(lambda a, p: jnp.broadcast_to(a, p.shape), out, params)
  return out


def _ff_from(config, params):
  """``params`` with the feed-forward weights of the run in ``config.init_ff_from`` (B.2)."""
  try:
    _, other, _ = load_run(config.init_ff_from)
  except WorkdirError as e:
    raise ConfigError(f"config.init_ff_from={config.init_ff_from!r}: {e}") from None
  same_tree = jax.tree.structure(params["ff"]) == jax.tree.structure(other["ff"])
  mine = [p.shape for p in jax.tree.leaves(params["ff"])]
  theirs = [a.shape for a in jax.tree.leaves(other["ff"])]
  if not same_tree:
    mine = None
  if config.runs > 1 and mine is not None and theirs == [s[1:] for s in mine]:
    other_ff = jax.tree.map(lambda a, p: jnp.broadcast_to(a, p.shape), other["ff"], params["ff"])
  elif theirs == mine:
    other_ff = other["ff"]  # same number of runs: run r from run r
  else:
    raise ConfigError(
        f"config.init_ff_from={config.init_ff_from!r}: its network (or number of runs) does "
        "not match this one")
  logging.info("feed-forward initialisation from %s", config.init_ff_from)
  return dict(params, ff=other_ff)
