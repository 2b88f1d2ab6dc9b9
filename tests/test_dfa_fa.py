"""Direct feedback alignment and feedback alignment (Figure 1's family) against NumPy float64."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import learners, lifetime, meta, nets
from flpjax.estimators import full
from flpjax.tasks import sine

IN = 3
WIDTHS = (7, 5)  # 3 dense layers: 7 relu, 5 relu, linear readout
KINDS = {"dfa": learners.dfa, "fa": learners.fa}


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), tree)


def _layers(output):
  return nets.regression_mlp(WIDTHS, outputs=2 if output == "regression" else 6)


def _targets(rng, output, shape):
  if output == "classification":
    return rng.integers(0, 4, size=shape)  # labels below the readout width 6
  return rng.normal(size=shape + (2,))


def _randomize(params, rng):
  """Float64 meta-parameters with non-zero biases and perturbed feedback."""
  p = jax.tree.map(np.asarray, params)
  for layer in p["ff"]:
    layer["b"] = rng.normal(size=layer["b"].shape) * 0.2
  p["fb"] = jax.tree.map(lambda a: a + 0.3 * rng.normal(size=a.shape), p["fb"])
  return _f64(p)


# ---------------------------------------------------------------- NumPy reference

def _np_step(kind, layers, params, fast, x, y, lr, output):
  """One DFA or FA step in float64 NumPy: the trunk, forward, error, deltas, updates."""
  n = len(layers)
  plastic = [l for l in range(n) if str(l) in fast]
  acts = [l.activation for l in layers]
  h = x
  for l in range(plastic[0]):  # frozen trunk
    z = h @ params["ff"][l]["w"].T + params["ff"][l]["b"]
    h = np.maximum(z, 0) if acts[l] == "relu" else z
  hs, zs = [h], []
  for l in plastic:
    z = hs[-1] @ fast[str(l)]["w"].T + fast[str(l)]["b"]
    zs.append(z)
    hs.append(np.maximum(z, 0) if acts[l] == "relu" else z)
  y_hat = hs[-1]
  if output == "classification":
    s = np.exp(y_hat - y_hat.max(-1, keepdims=True))
    e = (s / s.sum(-1, keepdims=True) - np.eye(y_hat.shape[1])[y]) / y_hat.shape[0]
  else:
    e = 2.0 * (y_hat - y) / y.size
  fprime = [(z > 0).astype(np.float64) if acts[l] == "relu" else np.ones_like(z)
            for l, z in zip(plastic, zs)]
  deltas = [None] * len(plastic)
  deltas[-1] = e * fprime[-1]
  for i in range(len(plastic) - 2, -1, -1):
    if kind == "dfa":
      deltas[i] = (e @ params["fb"][str(plastic[i])]["B"].T) * fprime[i]
    else:
      deltas[i] = (deltas[i + 1] @ params["fb"][str(plastic[i + 1])]["R"]) * fprime[i]
  return {str(l): {"w": fast[str(l)]["w"] - lr * d.T @ hs[i],
                   "b": fast[str(l)]["b"] - lr * d.sum(0)}
          for i, (l, d) in enumerate(zip(plastic, deltas))}


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("n_plastic", [1, 2, 3])
@pytest.mark.parametrize("output", ["regression", "classification"])
@pytest.mark.parametrize("kind", ["dfa", "fa"])
def test_step_and_lifetime_match_numpy(kind, output, n_plastic):
  layers = _layers(output)
  rng = np.random.default_rng(n_plastic)
  with jax.enable_x64(True):
    learner = KINDS[kind](layers, (IN,), n_plastic, output=output, lr=0.1)
    params = _randomize(learner.init_params(jax.random.key(0)), rng)
    xs = rng.normal(size=(3, 5, IN))
    ys = _targets(rng, output, (3, 5))
    fast0 = learner.init(params)
    # One step.
    new = learner.step(params, fast0, (learner.encode(params, jnp.asarray(xs[0])),
                                       jnp.asarray(ys[0])))
    want = _np_step(kind, layers, _np(params), _np(fast0), xs[0], ys[0], 0.1, output)
    for l in learner.plastic_layers:
      for k in ("w", "b"):
        np.testing.assert_allclose(new[str(l)][k], want[str(l)][k], rtol=1e-12, atol=1e-14)
        assert not np.allclose(want[str(l)][k], fast0[str(l)][k])  # it did learn
    # A lifetime of three steps: the same fixed feedback at every step.
    fast, _ = lifetime.run(learner, params, jnp.asarray(xs), jnp.asarray(ys))
    want = _np(fast0)
    for x, y in zip(xs, ys):
      want = _np_step(kind, layers, _np(params), want, x, y, 0.1, output)
    assert set(fast) == {str(l) for l in learner.plastic_layers}
    for l in learner.plastic_layers:
      assert set(fast[str(l)]) == {"w", "b"}
      for k in ("w", "b"):
        np.testing.assert_allclose(fast[str(l)][k], want[str(l)][k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["dfa", "fa"])
def test_feedback_layout_and_groups(kind):
  layers = nets.regression_mlp(WIDTHS, outputs=2)
  learner = KINDS[kind](layers, (IN,), 3)
  params = learner.init_params(jax.random.key(0))
  if kind == "dfa":  # B_l (out_l, m) for every non-readout plastic layer
    assert jax.tree.map(jnp.shape, params["fb"]) == {"0": {"B": (7, 2)}, "1": {"B": (5, 2)}}
  else:  # R_l of W_l's shape for every plastic layer after the first
    assert jax.tree.map(jnp.shape, params["fb"]) == {"1": {"R": (5, 7)}, "2": {"R": (2, 5)}}
  assert [g.name for g in learner.groups] == ["ff", "fb"]
  assert learner.groups[1].default_lr == 0.0
  learned = KINDS[kind](layers, (IN,), 3, learn_feedback=True, second_order=True)
  assert learned.groups[1].default_lr == 1e-4
  labels = learned.labels(params)
  assert set(jax.tree.leaves(labels["fb"])) == {"fb"}
  assert set(KINDS[kind](layers, (IN,), 1).init_params(jax.random.key(0))["fb"]) == set()
  fast = learner.init(params)
  assert jax.tree.map(jnp.shape, learner.plastic_weights(fast)) == {
      "0": (7, IN), "1": (5, 7), "2": (2, 5)}


@pytest.mark.parametrize("n_plastic", [1, 2, 3])
@pytest.mark.parametrize("output", ["regression", "classification"])
def test_fa_with_the_forward_weights_is_the_gradient_learner(output, n_plastic):
  """R_l = W_l (the current fast weights): FA's step is backprop's, i.e. `gradient`'s."""
  layers = _layers(output)
  rng = np.random.default_rng(10 + n_plastic)
  with jax.enable_x64(True):
    fa = learners.fa(layers, (IN,), n_plastic, output=output, lr=0.1)
    grad = learners.gradient(layers, (IN,), n_plastic, output=output, lr=0.1)
    params = _randomize(fa.init_params(jax.random.key(1)), rng)
    xs = jnp.asarray(rng.normal(size=(3, 6, IN)))
    ys = jnp.asarray(_targets(rng, output, (3, 6)))
    fast, _ = lifetime.run(fa, params, xs[:2], ys[:2])  # away from the initial weights
    params["fb"] = {k: {"R": fast[k]["w"]} for k in params["fb"]}
    example = (fa.encode(params, xs[2]), ys[2])
    a, b = fa.step(params, fast, example), grad.step(params, fast, example)
    for l in fa.plastic_layers:
      for k in ("w", "b"):
        np.testing.assert_allclose(a[str(l)][k], b[str(l)][k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("output", ["regression", "classification"])
def test_dfa_with_only_the_readout_plastic_is_the_gradient_learner(output):
  layers = _layers(output)
  rng = np.random.default_rng(4)
  with jax.enable_x64(True):
    dfa = learners.dfa(layers, (IN,), 1, output=output, lr=0.1)
    grad = learners.gradient(layers, (IN,), 1, output=output, lr=0.1)
    params = _randomize(dfa.init_params(jax.random.key(2)), rng)
    xs = jnp.asarray(rng.normal(size=(4, 6, IN)))
    ys = jnp.asarray(_targets(rng, output, (4, 6)))
    a, _ = lifetime.run(dfa, params, xs, ys)
    b, _ = lifetime.run(grad, params, xs, ys)
    for k in ("w", "b"):
      np.testing.assert_allclose(a["2"][k], b["2"][k], rtol=1e-12, atol=1e-15)


def _meta_loss(learner, xs, ys, xq, yq):
  """``params -> query loss after a lifetime on (xs, ys)`` (what `full` differentiates)."""

  def loss(params):
    fast, _ = lifetime.run(learner, params, xs, ys, remat="none")
    return jnp.mean((lifetime.predict(learner, params, fast, xq) - yq) ** 2)

  return jax.jit(loss)


def _stream(rng, t=4, b=5):
  return tuple(jnp.asarray(a) for a in (rng.normal(size=(t, b, IN)), rng.normal(size=(t, b, 2)),
                                        rng.normal(size=(7, IN)), rng.normal(size=(7, 2))))


@pytest.mark.parametrize("kind", ["dfa", "fa"])
def test_fixed_feedback_has_zero_meta_gradient(kind):
  """Without learn_feedback the feedback is a constant, first or second order."""
  rng = np.random.default_rng(7)
  with jax.enable_x64(True):
    data = _stream(rng)
    for second_order in (False, True):
      learner = KINDS[kind](_layers("regression"), (IN,), 3, lr=0.05, second_order=second_order)
      params = _randomize(learner.init_params(jax.random.key(0)), rng)
      grads = jax.grad(_meta_loss(learner, *data))(params)
      for g in jax.tree.leaves(grads["fb"]):
        np.testing.assert_array_equal(g, 0.0)
      assert np.abs(np.asarray(grads["ff"][1]["w"])).max() > 0


@pytest.mark.parametrize("kind", ["dfa", "fa"])
def test_learned_feedback_meta_gradient_matches_finite_difference(kind):
  rng = np.random.default_rng(8)
  with jax.enable_x64(True):
    learner = KINDS[kind](_layers("regression"), (IN,), 3, lr=0.05, learn_feedback=True,
                          second_order=True)
    params = _randomize(learner.init_params(jax.random.key(0)), rng)
    loss = _meta_loss(learner, *_stream(rng))
    grads = jax.grad(loss)(params)
    layer, name = ("1", "B") if kind == "dfa" else ("1", "R")
    idx = (2, 1)
    g = float(grads["fb"][layer][name][idx])
    assert abs(g) > 1e-6

    def at(delta):
      p = dict(params, fb={k: dict(v) for k, v in params["fb"].items()})
      p["fb"][layer][name] = params["fb"][layer][name].at[idx].add(delta)
      return float(loss(p))

    eps = 1e-6
    np.testing.assert_allclose(g, (at(eps) - at(-eps)) / (2 * eps), rtol=1e-6)
    # The optimizer with the learner's default rates (fb: 1e-4) moves the feedback.
    opt = meta.make_optimizer({gr.name: gr.default_lr for gr in learner.groups}, learner)
    updates, _ = opt.update(grads, opt.init(params), params)
    assert np.abs(np.asarray(updates["fb"][layer][name])).max() > 0


@pytest.mark.parametrize("kind", ["dfa", "fa"])
def test_rejects_inconsistent_options(kind):
  layers = nets.regression_mlp(WIDTHS)
  with pytest.raises(ValueError, match="learn_feedback=True needs second_order=True"):
    KINDS[kind](layers, (IN,), 2, learn_feedback=True)
  with pytest.raises(ValueError, match="lr must be >= 0"):
    KINDS[kind](layers, (IN,), 2, lr=-1.0)
  with pytest.raises(ValueError, match="unknown output"):
    KINDS[kind](layers, (IN,), 2, output="ranking")
  with pytest.raises(ValueError, match="plastic_layers must be in"):
    KINDS[kind](layers, (IN,), 4)


def test_meta_training_lowers_the_dfa_meta_loss():
  """150 meta-steps on a tiny sine task; the fixed feedback (rate 0) does not move."""
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 50), order="iid",
                        n_functions=2, steps_per_function=5, batch_size=8,
                        queries_per_function=8)
  learner = learners.dfa(nets.regression_mlp((32, 32)), task.input_shape, 2, lr=0.01)
  opt = meta.make_optimizer({"ff": 3e-3, "fb": learner.groups[1].default_lr}, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  fb0 = jax.tree.map(np.asarray, state.params["fb"])  # the step donates the state
  step = meta.make_meta_step(full.make(learner, task), opt)
  losses = []
  for i in range(150):
    state, metrics = step(state, jax.random.key(100 + i), task.data)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), (losses[:10], losses[-10:])
  chex.assert_trees_all_equal(state.params["fb"], fb0)
