"""The library from a user's JAX code: what `import flpjax` gives, any optax optimizer,
donation, input shapes, parameter labels, flax trunks, array-valued evaluation.

Each of the problems a first user met is reproduced as it was and checked to be
gone. Most checks trace without compiling (`jax.eval_shape`); the two that run
a step use a two-parameter estimator, so the suite pays no lifetime compilation.
"""

import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flpjax
from flpjax import estimators, evaluate, learners, lifetime, meta, nets, types
from flpjax.tasks import sine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 20), n_functions=2,
                      steps_per_function=3, batch_size=4, queries_per_function=4)


def _learner(shape=TASK.input_shape):
  return flpjax.flp(nets.regression_mlp((8, 8)), shape, 2, init_alpha=1e-3)


def _shapes(tree):
  return jax.tree.map(lambda a: a.shape, tree)


def test_import_flpjax_gives_the_public_names():
  """Was: ``dir(flpjax) == []``, no ``__version__``, ``estimators.full`` an AttributeError."""
  version = re.search(r'^version = "(.+)"', open(os.path.join(REPO, "pyproject.toml")).read(),
                      re.M).group(1)
  assert flpjax.__version__ == version
  for name in flpjax.__all__:
    assert getattr(flpjax, name) is not None, name
  for name in ("flp", "make_meta_step", "make_optimizer", "lifetime", "estimators", "Task",
               "train", "datasets", "analysis"):
    assert name in dir(flpjax)
  assert flpjax.train.train_and_evaluate  # imported on first use
  for name in ("full", "truncated", "es"):
    assert callable(getattr(flpjax.estimators, name).make)
  assert callable(flpjax.protocols.oml.make)  # the original OML's estimator, in its protocol
  with pytest.raises(AttributeError, match="has no attribute 'nope'"):
    flpjax.nope  # pylint: disable=pointless-statement


def _tiny_step(optimizer, **kwargs):
  """A meta-step of a two-parameter problem: loss ``sum((w - 1)^2)``, NaN when ``data``."""

  def meta_grad(params, key, data):
    del key
    loss = jnp.sum((params["w"] - 1.0) ** 2) + jnp.where(data, jnp.nan, 0.0)
    return {"w": 2.0 * (params["w"] - 1.0)}, {"loss": loss}

  state = meta.TrainState(jnp.zeros((), jnp.int32), {"w": jnp.zeros(2)},
                          optimizer.init({"w": jnp.zeros(2)}))
  return meta.make_meta_step(estimators.stateless(meta_grad), optimizer, **kwargs), state


def test_any_optax_optimizer_in_the_meta_step():
  """Was: ``AttributeError: 'tuple' object has no attribute 'last_finite'`` for a chain."""
  learner = _learner()
  params = jax.eval_shape(learner.init_params, jax.random.key(0))
  labels = flpjax.param_labels(params, learner)
  mine = optax.chain(optax.clip_by_global_norm(1.0), optax.multi_transform(
      {g: optax.adamw(1e-3) for g in flpjax.group_names(learner)}, labels))
  state = jax.eval_shape(lambda: meta.init_state(learner, mine, jax.random.key(0)))
  step = meta.make_meta_step(estimators.full.make(learner, TASK), mine, jit=False)
  new, metrics = jax.eval_shape(step, state, jax.random.key(1), TASK.data)
  assert _shapes(new.params) == _shapes(params)
  assert {"loss", "finite", "grad_norm"} <= set(metrics)
  assert "nonfinite_total" not in metrics  # counters only where the optimizer keeps them
  guarded = meta.make_optimizer(meta.PAPER_REGRESSION_LRS, learner)
  _, metrics = jax.eval_shape(meta.make_meta_step(estimators.full.make(learner, TASK), guarded,
                                                  jit=False),
                              jax.eval_shape(lambda: meta.init_state(learner, guarded,
                                                                     jax.random.key(0))),
                              jax.random.key(1), TASK.data)
  assert {"nonfinite_total", "nonfinite_in_row"} <= set(metrics)


def test_a_plain_optimizer_skips_nonfinite_steps_itself():
  step, state = _tiny_step(optax.sgd(0.25))
  state, metrics = step(state, jax.random.key(0), jnp.asarray(False))
  np.testing.assert_allclose(state.params["w"], [0.5, 0.5])
  assert bool(metrics["finite"])
  state, metrics = step(state, jax.random.key(0), jnp.asarray(True))  # NaN loss: skipped
  np.testing.assert_allclose(state.params["w"], [0.5, 0.5])
  assert not bool(metrics["finite"]) and int(state.step) == 2


def test_donation_is_documented_and_switchable():
  """Was: the old state silently consumed (``RuntimeError: Array has been deleted``)."""
  assert "donate" in meta.make_meta_step.__doc__
  step, state = _tiny_step(optax.sgd(0.25))
  new, _ = step(state, jax.random.key(0), jnp.asarray(False))
  assert state.params["w"].is_deleted() and not new.params["w"].is_deleted()
  step, state = _tiny_step(optax.sgd(0.25), donate=False)
  new, _ = step(state, jax.random.key(0), jnp.asarray(False))
  np.testing.assert_array_equal(state.params["w"], [0.0, 0.0])  # still readable
  np.testing.assert_allclose(new.params["w"], [0.5, 0.5])


def test_a_wrong_optimizer_is_one_line_before_compiling():
  learner = _learner()
  est = estimators.full.make(learner, TASK)
  with pytest.raises(TypeError, match=r"^optimizer: expected an optax.GradientTransformation "
                                      r"\(e.g. optax.adam\(1e-3\).*got function$"):
    meta.make_meta_step(est, optax.adam)  # the factory, not a transformation
  opt = meta.make_optimizer(meta.PAPER_REGRESSION_LRS, learner)
  other = jax.eval_shape(lambda: meta.init_state(learner, optax.adam(1e-3), jax.random.key(0)))
  with pytest.raises(ValueError, match="^state.opt_state does not have the structure of this "
                                       "optimizer's state"):
    jax.eval_shape(meta.make_meta_step(est, opt, jit=False), other, jax.random.key(1), TASK.data)
  with pytest.raises(ValueError, match=r"unknown meta-parameter groups \['gamma'\]"):
    meta.make_optimizer({"gamma": 1.0}, learner)


def test_a_learner_refuses_a_task_of_another_input_shape_in_one_line():
  """Was: ``dot_general requires contracting dimensions to have the same shape`` deep in the
  scan, for a learner built for ``(11,)`` on a task whose input is ``(3,)``."""
  learner = _learner((11,))
  assert learner.input_shape == (11,) and _learner().input_shape == TASK.input_shape
  opt = meta.make_optimizer(meta.PAPER_REGRESSION_LRS, learner)
  state = jax.eval_shape(lambda: meta.init_state(learner, opt, jax.random.key(0)))
  step = meta.make_meta_step(estimators.full.make(learner, TASK), opt, jit=False)
  expected = r"examples of shape \(3,\) do not fit this learner, built for input shape \(11,\)"
  with pytest.raises(ValueError, match=r"^episode.xs \(T, B, \*input_shape\): " + expected):
    jax.eval_shape(step, state, jax.random.key(1), TASK.data)
  with pytest.raises(ValueError, match=r"^task.input_shape: " + expected):
    evaluate.lifetime_metrics(learner, TASK, state.params, jax.random.split(jax.random.key(0), 2),
                              TASK.data)
  episode = jax.eval_shape(TASK.sample, jax.random.key(0), TASK.data)
  with pytest.raises(ValueError, match=r"^xs \(T, B, \*input_shape\): " + expected):
    lifetime.run(learner, state.params, episode.xs, episode.ys)
  for make in (flpjax.gradient, flpjax.dfa, flpjax.fa, flpjax.learned_rule,
               flpjax.plastic_feedback):
    assert make(nets.regression_mlp((8, 8)), (5,), 2).input_shape == (5,), make.__name__


def test_every_leaf_has_a_group_label_from_one_function():
  """Was: ``params['alpha']['2']`` in the group 'alpha_readout', found only by reading flp.py."""
  learner = _learner()
  params = jax.eval_shape(learner.init_params, jax.random.key(0))
  labels = flpjax.param_labels(params, learner)
  assert jax.tree.structure(labels) == jax.tree.structure(params)
  assert set(jax.tree.leaves(labels)) == set(flpjax.group_names(learner)) == {
      "ff", "fb", "alpha", "alpha_readout", "beta"}
  assert labels["alpha"] == {"1": "alpha", "2": "alpha_readout"}
  assert jax.tree.leaves(labels["ff"]) == ["ff"] * 6
  assert "alpha_readout" in learners.param_labels.__doc__
  opt = optax.multi_transform({g: optax.sgd(1.0) for g in flpjax.group_names(learner)}, labels)
  jax.eval_shape(opt.init, params)


class _BatchNormTrunk(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.BatchNorm(use_running_average=False)(nn.Dense(8)(x)))


def test_a_stateful_flax_trunk_works():
  """Was: ``Cannot update variable "mean" ... collection "batch_stats" is immutable``."""
  trunk = _BatchNormTrunk()
  width = learners.trunk_features(trunk, TASK.input_shape)
  learner = learners.with_trunk(_learner((width,)), trunk, TASK.input_shape)
  assert learner.input_shape == TASK.input_shape and "trunk" in flpjax.group_names(learner)
  params = jax.eval_shape(learner.init_params, jax.random.key(0))
  assert set(params["trunk"]) == {"params", "batch_stats"}
  episode = jax.eval_shape(TASK.sample, jax.random.key(0), TASK.data)
  grads = jax.eval_shape(jax.grad(lambda p, e: lifetime.query_loss(
      learner, p, e, types.loss_fn("regression"))[0]), params, episode)
  assert _shapes(grads) == _shapes(params)
  assert set(jax.tree.leaves(flpjax.param_labels(params, learner)["trunk"])) == {"trunk"}


def test_evaluation_is_jittable_and_vmappable_over_runs():
  learner = _learner()
  params = jax.eval_shape(jax.vmap(learner.init_params),
                          jax.random.split(jax.random.key(0), 3))  # 3 runs
  keys = jax.random.split(jax.random.key(1), 5)
  out = jax.eval_shape(jax.jit(jax.vmap(
      lambda p: evaluate.lifetime_metrics(learner, TASK, p, keys, TASK.data))), params)
  assert {k: v.shape for k, v in out.items()} == {"mse": (3, 5)}
  summary = jax.eval_shape(evaluate.mean_and_stderr, {"mse": jnp.zeros(5)})
  assert {k: v.shape for k, v in summary.items()} == {"mse": (), "mse_stderr": ()}
  values = {"mse": np.array([1.0, 2.0, 3.0])}
  np.testing.assert_allclose(
      [float(v) for v in evaluate.mean_and_stderr(values).values()],
      [evaluate.summarize(values)["mse"], evaluate.summarize(values)["mse_stderr"]], rtol=1e-6)


def test_user_facing_text_of_the_library_surface_names_no_issue_numbers():
  paths = [os.path.join(REPO, "flpjax", "__init__.py"), os.path.join(REPO, "CHANGELOG.md"),
           os.path.join(REPO, "CITATION.cff")]
  for folder in ("examples", "docs"):
    for root, _, files in os.walk(os.path.join(REPO, folder)):
      paths += [os.path.join(root, f) for f in files if f.endswith((".py", ".md"))]
  for path in paths:
    text = open(path).read()
    assert not re.search(r"\bissues? \d+", text, re.I), path
    assert "../shared" not in text, path
