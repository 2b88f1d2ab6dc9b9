"""Plastic feedback and hidden feedback (`learners.plastic_feedback`, paper section 8.1)."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import learners, lifetime, meta, nets
from flpjax.estimators import full
# The module (flpjax.learners re-exports its constructor under the module's name).
pf_lib = importlib.import_module("flpjax.learners.plastic_feedback")
from flpjax.learners.plastic_feedback import plastic_feedback
from flpjax.tasks import sine

IN = 3
WIDTHS = (7, 5)


def _randomize(params, rng, *, eta=None, h_scale=0.0):
  """Non-trivial meta-parameters (biases, alpha, B, c, beta; optionally eta and H)."""
  p = jax.tree.map(np.asarray, params)
  for layer in p["ff"]:
    layer["b"] = (rng.normal(size=layer["b"].shape) * 0.1).astype(layer["b"].dtype)
  for k in p["alpha"]:
    p["alpha"][k] = rng.uniform(0, 0.05, size=p["alpha"][k].shape).astype(p["alpha"][k].dtype)
  for k, fb in p["fb"].items():
    fb["B"] = (fb["B"] + rng.normal(size=fb["B"].shape) * 0.3).astype(fb["B"].dtype)
    fb["c"] = (rng.normal(size=fb["c"].shape) * 0.2).astype(fb["c"].dtype)
    if "H" in fb and h_scale:
      fb["H"] = (rng.normal(size=fb["H"].shape) * h_scale).astype(fb["H"].dtype)
  for k in p["beta"]:
    p["beta"][k] = np.asarray(rng.uniform(0.2, 0.9), p["beta"][k].dtype)
  if eta is not None:
    for k in p.get("fb_rate", {}):
      p["fb_rate"][k] = np.asarray(eta * rng.uniform(0.5, 1.5), p["fb_rate"][k].dtype)
  return jax.tree.map(jnp.asarray, p)


def _run(learner, params, xs, ys):
  return jax.jit(lambda p: lifetime.run(learner, p, xs, ys)[0])(params)


# ----------------------------------------------------------------------------- (a) flp exactly


CASES = [
    (1, {}),
    (2, {"hidden_feedback": True, "rule": "hebb", "feedback_rule": "oja", "presynaptic": "post"}),
    (3, {"hidden_feedback": True, "signal": "target", "clip_beta": True}),
]


@pytest.mark.parametrize("n_plastic, options", CASES)
def test_zero_rate_and_zero_hidden_feedback_is_flp_bit_for_bit(n_plastic, options):
  layers = nets.regression_mlp(WIDTHS, outputs=2)
  flp_options = {k: v for k, v in options.items() if k not in ("feedback_rule", "hidden_feedback")}
  learner = plastic_feedback(layers, (IN,), n_plastic, **options)
  reference = learners.flp(layers, (IN,), n_plastic, **flp_options)
  params = _randomize(learner.init_params(jax.random.key(0)), np.random.default_rng(n_plastic))
  for k, v in params["fb_rate"].items():
    assert v == 0.0
  flp_params = reference.init_params(jax.random.key(0))
  # The same draws as flp's (ff, B, c, alpha, beta).
  np.testing.assert_array_equal(learner.init_params(jax.random.key(0))["fb"]["2"]["B"],
                                flp_params["fb"]["2"]["B"])
  xs = jax.random.normal(jax.random.key(1), (6, 4, IN))
  ys = jax.random.normal(jax.random.key(2), (6, 4, 2))
  fast = _run(learner, params, xs, ys)
  fast_flp = _run(reference, params, xs, ys)  # flp reads only the keys it knows
  for l in learner.plastic_layers:
    np.testing.assert_array_equal(fast[str(l)]["w"], fast_flp[str(l)]["w"])
    assert not np.array_equal(fast[str(l)]["w"], params["ff"][l]["w"])  # it did learn
  for k, b in pf_lib.feedback_weights(params, fast).items():
    np.testing.assert_array_equal(b, params["fb"][k]["B"])
  xq = jax.random.normal(jax.random.key(3), (5, IN))
  np.testing.assert_array_equal(lifetime.predict(learner, params, fast, xq),
                                lifetime.predict(reference, params, fast_flp, xq))
  hidden = {k for k, v in params["fb"].items() if "H" in v}
  assert hidden == ({str(l) for l in learner.plastic_layers[:-1]}
                    if options.get("hidden_feedback") else set())


def test_zero_rate_classification_clamped_readout_is_flp_bit_for_bit():
  layers = nets.regression_mlp(WIDTHS, outputs=6)
  options = dict(output="classification", signal="target", clamp_readout=True, init_beta=1.0)
  learner = plastic_feedback(layers, (IN,), 3, hidden_feedback=True, **options)
  reference = learners.flp(layers, (IN,), 3, **options)
  params = _randomize(learner.init_params(jax.random.key(0)), np.random.default_rng(7))
  assert set(params["fb"]) == {"0", "1"} and set(params["fb_rate"]) == {"0", "1"}
  assert params["fb"]["1"]["H"].shape == (5, 6)  # from the readout's logits
  xs = jax.random.normal(jax.random.key(1), (5, 3, IN))
  ys = jax.random.randint(jax.random.key(2), (5, 3), 0, 6)
  fast, fast_flp = _run(learner, params, xs, ys), _run(reference, params, xs, ys)
  for l in learner.plastic_layers:
    np.testing.assert_array_equal(fast[str(l)]["w"], fast_flp[str(l)]["w"])
  assert set(pf_lib.feedback_weights(params, fast)) == {"0", "1"}


# ----------------------------------------------------------------------------- (b) by hand


def _relu(x):
  return np.maximum(x, 0.0)


def _numpy_step(p, ws, bs_fast, x, y, plastic, *, feedback_rule, hidden):
  """One step in float64 NumPy: regression, error signal, oja for W, pre-feedback pre."""
  ff = p["ff"]
  hs = [x]
  for l in range(len(ff)):
    w = ws[l] if l in plastic else ff[l]["w"]
    z = hs[-1] @ w.T + ff[l]["b"]
    hs.append(z if l == len(ff) - 1 else _relu(z))
  s = y - hs[-1]
  new_ws, new_bs = dict(ws), dict(bs_fast)
  for l in plastic:
    k = str(l)
    drive = s @ bs_fast[l].T + p["fb"][k]["c"]
    if hidden and l < plastic[-1]:
      drive = drive + hs[l + 2] @ p["fb"][k]["H"].T
    f = _relu(drive)
    beta = p["beta"][k]
    post = beta * f + (1 - beta) * hs[l + 1]
    pre = hs[l]
    new_ws[l] = ws[l] + p["alpha"][k] * (post.T @ pre - (post ** 2).sum(0)[:, None] * ws[l])
    d_b = post.T @ s
    if feedback_rule == "oja":
      d_b = d_b - (post ** 2).sum(0)[:, None] * bs_fast[l]
    new_bs[l] = bs_fast[l] + p["fb_rate"][k] * d_b
  return new_ws, new_bs


@pytest.mark.parametrize("feedback_rule", ["hebb", "oja"])
def test_two_steps_match_numpy_float64(feedback_rule):
  layers = nets.regression_mlp(WIDTHS, outputs=2)
  rng = np.random.default_rng(11)
  with jax.enable_x64(True):
    learner = plastic_feedback(layers, (IN,), 3, feedback_rule=feedback_rule,
                               hidden_feedback=True)
    params = learner.init_params(jax.random.key(0))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    params = _randomize(params, rng, eta=0.05, h_scale=0.5)
    assert all(v != 0 for v in params["fb_rate"].values())
    xs = rng.normal(size=(2, 4, IN))
    ys = rng.normal(size=(2, 4, 2))
    fast, _ = lifetime.run(learner, params, jnp.asarray(xs), jnp.asarray(ys))
    p = jax.tree.map(np.asarray, params)
    plastic = learner.plastic_layers
    ws = {l: p["ff"][l]["w"] for l in plastic}
    bs_fast = {l: p["fb"][str(l)]["B"] for l in plastic}
    for x, y in zip(xs, ys):
      ws, bs_fast = _numpy_step(p, ws, bs_fast, x, y, plastic, feedback_rule=feedback_rule,
                                hidden=True)
    for l in plastic:
      np.testing.assert_allclose(fast[str(l)]["w"], ws[l], rtol=1e-12, atol=1e-14)
      np.testing.assert_allclose(pf_lib.feedback_weights(params, fast)[str(l)], bs_fast[l],
                                 rtol=1e-12, atol=1e-14)
      assert not np.allclose(bs_fast[l], p["fb"][str(l)]["B"])
    # Without the H term the numbers differ: the hidden feedback did something.
    ws_no, _ = _numpy_step(p, {l: p["ff"][l]["w"] for l in plastic},
                           {l: p["fb"][str(l)]["B"] for l in plastic}, xs[0], ys[0], plastic,
                           feedback_rule=feedback_rule, hidden=False)
    ws_h, _ = _numpy_step(p, {l: p["ff"][l]["w"] for l in plastic},
                          {l: p["fb"][str(l)]["B"] for l in plastic}, xs[0], ys[0], plastic,
                          feedback_rule=feedback_rule, hidden=True)
    assert not np.allclose(ws_no[0], ws_h[0])


# ----------------------------------------------------------------------------- (c) B moves


def test_feedback_changes_within_a_lifetime_only_with_a_rate():
  layers = nets.regression_mlp(WIDTHS)
  xs = jax.random.normal(jax.random.key(1), (4, 3, IN))
  ys = jax.random.normal(jax.random.key(2), (4, 3, 1))
  for eta, moves in ((0.0, False), (0.01, True)):
    learner = plastic_feedback(layers, (IN,), 2, init_fb_rate=eta)
    params = learner.init_params(jax.random.key(0))
    fast = learner.init(params, None)
    assert set(learner.plastic_weights(fast)) == {"1", "2"}
    births = pf_lib.feedback_weights(params, fast)
    fast = _run(learner, params, xs, ys)
    for k, b in pf_lib.feedback_weights(params, fast).items():
      if moves:
        assert not np.allclose(b, births[k])
      else:
        np.testing.assert_array_equal(b, births[k])


def test_groups_and_labels():
  layers = nets.regression_mlp(WIDTHS)
  learner = plastic_feedback(layers, (IN,), 2, hidden_feedback=True)
  assert learners.group_names(learner) == ("ff", "fb", "alpha", "alpha_readout", "beta",
                                           "fb_rate")
  params = learner.init_params(jax.random.key(0))
  labels = learners.param_labels(params, learner)
  assert labels["fb_rate"] == {"1": "fb_rate", "2": "fb_rate"}
  assert labels["fb"]["1"] == {"B": "fb", "c": "fb", "H": "fb"}
  assert labels["alpha"] == {"1": "alpha", "2": "alpha_readout"}
  np.testing.assert_array_equal(params["fb"]["1"]["H"], 0.0)
  reuse = plastic_feedback(layers, (IN,), 1, output="classification", clamp_readout=True)
  assert learners.group_names(reuse) == ("ff", "alpha", "alpha_readout")  # nothing fed


# ----------------------------------------------------------------------------- (d) gradients


def _numpy_meta_loss(p, xs, ys, xq, yq, plastic):
  """Query MSE after a lifetime, all in float64 NumPy (`_numpy_step`, hebb feedback)."""
  ws = {l: p["ff"][l]["w"] for l in plastic}
  bs_fast = {l: p["fb"][str(l)]["B"] for l in plastic}
  for x, y in zip(xs, ys):
    ws, bs_fast = _numpy_step(p, ws, bs_fast, x, y, plastic, feedback_rule="hebb", hidden=True)
  h = xq
  for l, layer in enumerate(p["ff"]):
    z = h @ (ws[l] if l in plastic else layer["w"]).T + layer["b"]
    h = z if l == len(p["ff"]) - 1 else _relu(z)
  return np.mean((h - yq) ** 2)


def test_meta_gradients_of_rate_and_hidden_feedback_match_finite_differences():
  """Autodiff through the JAX lifetime against central differences of the NumPy one."""
  layers = nets.regression_mlp(WIDTHS)
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    learner = plastic_feedback(layers, (IN,), 3, hidden_feedback=True)
    params = learner.init_params(jax.random.key(0))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    params = _randomize(params, rng, eta=0.02, h_scale=0.3)
    xs, ys = rng.normal(size=(4, 3, IN)), rng.normal(size=(4, 3, 1))
    xq, yq = rng.normal(size=(6, IN)), rng.normal(size=(6, 1))

    def meta_loss(p):
      fast, _ = lifetime.run(learner, p, jnp.asarray(xs), jnp.asarray(ys), remat="none")
      return jnp.mean((lifetime.predict(learner, p, fast, jnp.asarray(xq)) - yq) ** 2)

    grad = jax.jit(jax.grad(meta_loss))
    grads = grad(params)
    p = jax.tree.map(np.asarray, params)
    eps = 1e-6

    def central(path, direction):
      def at(sign):
        q = jax.tree.map(np.copy, p)
        leaf = q
        for key in path[:-1]:
          leaf = leaf[key]
        leaf[path[-1]] = leaf[path[-1]] + sign * eps * direction
        return _numpy_meta_loss(q, xs, ys, xq, yq, learner.plastic_layers)
      return (at(1) - at(-1)) / (2 * eps)

    for k in p["fb_rate"]:
      np.testing.assert_allclose(grads["fb_rate"][k], central(("fb_rate", k), 1.0), rtol=1e-6)
      assert abs(grads["fb_rate"][k]) > 1e-8
    for k in ("0", "1"):
      direction = rng.normal(size=p["fb"][k]["H"].shape)
      np.testing.assert_allclose(np.vdot(grads["fb"][k]["H"], direction),
                                 central(("fb", k, "H"), direction), rtol=1e-6)
      assert np.abs(grads["fb"][k]["H"]).max() > 1e-8
    # At the starting point (eta = 0, H = 0) the gradients are not zero: both can move.
    start = jax.tree.map(lambda a: a, params)
    start["fb_rate"] = jax.tree.map(jnp.zeros_like, params["fb_rate"])
    for k in ("0", "1"):
      start["fb"][k]["H"] = jnp.zeros_like(params["fb"][k]["H"])
    g0 = grad(start)
    assert all(abs(v) > 1e-8 for v in g0["fb_rate"].values())
    assert all(jnp.abs(g0["fb"][k]["H"]).max() > 1e-8 for k in ("0", "1"))


# ----------------------------------------------------------------------------- (e) meta-training


def test_meta_training_on_continual_sine_stays_finite_and_moves_the_rate():
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 50), order="continual",
                        n_functions=2, steps_per_function=4, batch_size=8,
                        queries_per_function=8)
  learner = plastic_feedback(nets.regression_mlp((16, 16)), task.input_shape, 2,
                             hidden_feedback=True, init_alpha=1e-3)
  opt = meta.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-4, "beta": 1e-3,
                             "fb_rate": 1e-3}, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  start = jax.tree.map(np.asarray, state.params)
  step = meta.make_meta_step(full.make(learner, task), opt)
  losses, applied = [], []
  for i in range(100):
    state, metrics = step(state, jax.random.fold_in(jax.random.key(2), i), task.data)
    losses.append(float(metrics["loss"]))
    applied.append(bool(metrics["finite"]))
  # A meta-step that overshoots eta into the explosive range of the Hebbian feedback loop
  # (B grows with post, post with B) gives a non-finite gradient; `meta` skips it.
  assert sum(applied) >= 95, np.flatnonzero(~np.array(applied))
  assert np.all(np.isfinite(np.array(losses)[np.array(applied)]))
  assert np.isfinite(losses[-1]) and applied[-1]
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(state.params))
  for k, eta in state.params["fb_rate"].items():
    assert start["fb_rate"][k] == 0.0 and abs(float(eta)) > 1e-3, (k, eta)
  assert np.abs(state.params["fb"]["1"]["H"]).max() > 1e-3


# ----------------------------------------------------------------------------- (f) bad input


@pytest.mark.parametrize("kwargs, message", [
    ({"feedback_rule": "bcm"}, "feedback_rule"),
    ({"hidden_feedback": "yes"}, "hidden_feedback"),
    ({"init_fb_rate": float("nan")}, "init_fb_rate"),
    ({"init_fb_rate": "0.1"}, "init_fb_rate"),
    ({"rule": "bcm"}, "unknown plasticity rule"),
    ({"signal": "reward"}, "unknown feedback signal"),
    ({"presynaptic": "during"}, "presynaptic"),
    ({"n_plastic": 4}, "plastic_layers"),
])
def test_rejects_bad_arguments(kwargs, message):
  kwargs = {"n_plastic": 2, **kwargs}
  with pytest.raises(ValueError, match=message):
    plastic_feedback(nets.regression_mlp(WIDTHS), (IN,), **kwargs)
