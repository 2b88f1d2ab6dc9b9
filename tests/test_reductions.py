"""Learners with an "off" setting equal the learner they reduce to, meta-gradients included.

For every pair, both learners' meta-gradients of the meta-parameters they share
are compared under each estimator: full backprop, truncated backprop over
two consecutive windows of one lifetime (the second window is where a
meta-parameter copied into the fast state would lose its meta-gradient), and
PES over the same two windows at a fixed seed (the extended learner's extra
groups frozen, so that they are not perturbed). Float64, tiny sine lifetimes.

The bound: the meta-gradients agree to rounding, ``max |a - b| <= TOL * max |b|``
per group (TOL = 64 float64 ulp of the largest entry); the losses bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import learners, nets
from flpjax.estimators import es, full, truncated
from flpjax.tasks import sine

N_FUNCTIONS, STEPS_PER_FUNCTION = 2, 3
T = N_FUNCTIONS * STEPS_PER_FUNCTION
WINDOW = 3  # two windows per lifetime
IN = (N_FUNCTIONS + 1,)
LAYERS = nets.regression_mlp((6, 6, 6))
TOL = 64 * np.finfo(np.float64).eps
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

#: name -> (extended learner, the learner it reduces to, the extended learner's extra groups).
PAIRS = {
    "plastic_feedback_rate0=flp": (  # Oja's feedback rule: its decay term reads B
        lambda: learners.plastic_feedback(LAYERS, IN, 3, feedback_rule="oja", init_alpha=0.01),
        lambda: learners.flp(LAYERS, IN, 3, init_alpha=0.01), ("fb_rate",)),
    "plastic_feedback_hidden_H0_rate0=flp": (  # H is in the 'fb' group: not for PES
        lambda: learners.plastic_feedback(LAYERS, IN, 3, hidden_feedback=True, init_alpha=0.01),
        lambda: learners.flp(LAYERS, IN, 3, init_alpha=0.01), None),
    "learned_rule_oja=flp_oja": (
        lambda: learners.learned_rule(LAYERS, IN, 3, init="oja", init_alpha=0.01),
        lambda: learners.flp(LAYERS, IN, 3, rule="oja", init_alpha=0.01), ("rule",)),
    "learned_rule_hebb=flp_hebb": (
        lambda: learners.learned_rule(LAYERS, IN, 2, init="hebb", init_alpha=0.01),
        lambda: learners.flp(LAYERS, IN, 2, rule="hebb", init_alpha=0.01), ("rule",)),
    "dfa_readout_only=gradient": (
        lambda: learners.dfa(LAYERS, IN, 1, lr=0.01),
        lambda: learners.gradient(LAYERS, IN, 1, lr=0.01), ("fb",)),
}


def _task():
  return sine.make_task(pool=sine.sample_functions(jax.random.key(1), 8),
                        n_functions=N_FUNCTIONS, steps_per_function=STEPS_PER_FUNCTION,
                        batch_size=4, queries_per_function=4)


def _shared(tree, reference):
  """``tree`` restricted to the paths of ``reference`` (the shared meta-parameters)."""
  if isinstance(reference, dict):
    return {k: _shared(tree[k], v) for k, v in reference.items()}
  if isinstance(reference, (list, tuple)):
    return type(reference)(_shared(t, r) for t, r in zip(tree, reference))
  return tree


def _estimator(kind, learner, task, frozen):
  if kind == "full":
    return full.make(learner, task)
  if kind == "truncated":
    return truncated.make(learner, task, window=WINDOW)
  return es.make_pes(learner, task, window=WINDOW, population=2, sigma=1e-3, frozen=frozen)


@functools.cache
def _meta_grads(pair, kind, which):
  """Loss and meta-gradients of two consecutive meta-steps (one for `full`), in float64."""
  make_ext, make_red, extra = PAIRS[pair]
  with jax.enable_x64(True):
    task = _task()
    learner = make_ext() if which == "extended" else make_red()
    params = make_ext().init_params(jax.random.key(0))  # shared leaves are the reduced one's
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    if which == "reduced":
      params = _shared(params, make_red().init_params(jax.random.key(0)))
    est = _estimator(kind, learner, task, tuple(extra or ()) if which == "extended" else ())
    meta_grad = jax.jit(est.meta_grad, compiler_options=FAST)
    state = est.init(params, jax.random.key(5))
    out = []
    for s in range(1 if kind == "full" else 2):
      grads, state, metrics = meta_grad(params, state, jax.random.key(10 + s), task.data)
      out.append((float(metrics["loss"]), jax.tree.map(np.asarray, grads)))
    return out, params


@pytest.mark.parametrize("kind", ["full", "truncated", "pes"])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_reduced_learner_has_the_same_meta_gradients(pair, kind):
  if kind == "pes" and PAIRS[pair][2] is None:
    pytest.skip("the extra meta-parameters share a group with trained ones: PES perturbs them")
  ext, _ = _meta_grads(pair, kind, "extended")
  red, red_params = _meta_grads(pair, kind, "reduced")
  for window, ((loss_e, g_e), (loss_r, g_r)) in enumerate(zip(ext, red)):
    assert loss_e == loss_r, (pair, kind, window)  # the lifetimes are bit for bit the same
    shared = _shared(g_e, g_r)
    for path, a, b in zip(jax.tree_util.tree_leaves_with_path(g_r), jax.tree.leaves(shared),
                          jax.tree.leaves(g_r)):
      scale = max(float(np.max(np.abs(b))), 1e-300) if b.size else 1.0
      err = float(np.max(np.abs(a - b))) if b.size else 0.0
      assert err <= TOL * scale, (pair, kind, window, jax.tree_util.keystr(path[0]), err, scale)
    # Something was learned in every window: the comparison is not between zeros.
    assert any(np.any(b != 0) for b in jax.tree.leaves(g_r)), (pair, kind, window)
  if PAIRS[pair][2]:
    # The extended learner's extra groups get no PES estimate when frozen.
    if kind == "pes":
      for extra in PAIRS[pair][2]:
        for leaf in jax.tree.leaves(ext[-1][1].get(extra, {})):
          assert not np.any(leaf)


def test_plastic_feedback_B_gets_a_meta_gradient_in_every_truncated_window():
  """The defect this file guards against: B copied into the fast state was a constant
  (no meta-gradient) from the second window of truncated backprop on."""
  ext, _ = _meta_grads("plastic_feedback_rate0=flp", "truncated", "extended")
  for window, (_, grads) in enumerate(ext):
    for layer, fb in grads["fb"].items():
      assert np.max(np.abs(fb["B"])) > 0, (window, layer)
