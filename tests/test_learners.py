"""Learners against float64 NumPy transcriptions of the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
from flpjax import learners, lifetime, nets

WIDTHS = (7, 6, 9, 5)  # small regression MLP: 4 hidden layers + scalar output
IN = 4


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), tree)


def _randomize_flp(params, rng, plastic):
  """Non-trivial meta-parameters: random alpha, beta, B, c and biases."""
  p = jax.tree.map(np.asarray, params)
  for layer in p["ff"]:
    layer["b"] = rng.normal(size=layer["b"].shape) * 0.1
  for k in p["alpha"]:
    p["alpha"][k] = rng.uniform(0, 0.02, size=p["alpha"][k].shape)
  for k in p["fb"]:
    p["fb"][k]["B"] = p["fb"][k]["B"] + rng.normal(size=p["fb"][k]["B"].shape) * 0.3
    p["fb"][k]["c"] = rng.normal(size=p["fb"][k]["c"].shape) * 0.2
  for k in p["beta"]:
    p["beta"][k] = np.float64(rng.uniform(0.2, 0.9))
  return _f64(p)


def _ref_args(layers, params, plastic):
  ws = [np.asarray(l["w"]) for l in params["ff"]]
  bs = [np.asarray(l["b"]) for l in params["ff"]]
  acts = [l.activation for l in layers]
  alpha = {int(k): np.asarray(v) for k, v in params["alpha"].items()}
  fb = {int(k): (np.asarray(v["B"]), np.asarray(v["c"])) for k, v in params["fb"].items()}
  beta = {int(k): np.asarray(v) for k, v in params["beta"].items()}
  return ws, bs, acts, alpha, fb, beta


OPTIONS = [
    {},
    {"rule": "hebb"},
    {"clip_beta": True},
    {"presynaptic": "post"},
    {"signal": "target"},
    {"clamp_readout": True},
]


@pytest.mark.parametrize("n_plastic", [1, 3, 5])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_flp_lifetime_matches_reference(n_plastic, options):
  layers = nets.regression_mlp(WIDTHS, outputs=2)
  rng = np.random.default_rng(n_plastic)
  with jax.enable_x64(True):
    learner = learners.flp(layers, (IN,), n_plastic, **options)
    params = _randomize_flp(learner.init_params(jax.random.key(0)), rng, learner.plastic_layers)
    if options.get("clip_beta"):
      params["beta"] = {k: jnp.asarray(v * 3 - 1.0) for k, v in params["beta"].items()}
    xs = rng.normal(size=(6, 5, IN))
    ys = rng.normal(size=(6, 5, 2))
    fast, _ = jax.jit(lambda p: lifetime.run(learner, p, jnp.asarray(xs), jnp.asarray(ys)))(params)
    ws, bs, acts, alpha, fb, beta = _ref_args(layers, params, learner.plastic_layers)
    for x, y in zip(xs, ys):
      ws = ref.flp_step(ws, bs, acts, learner.plastic_layers, alpha, fb, beta, x, y, **options)
    for l in range(len(layers)):
      if l in learner.plastic_layers:
        np.testing.assert_allclose(fast[str(l)]["w"], ws[l], rtol=1e-12, atol=1e-13)
        assert not np.allclose(ws[l], params["ff"][l]["w"])  # it did learn
      else:
        np.testing.assert_array_equal(ws[l], params["ff"][l]["w"])


def test_flp_classification_clamped_readout_matches_reference():
  layers = nets.regression_mlp((6, 5), outputs=8)
  layers = layers[:-1] + (nets.Dense(8, "linear"),)
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    learner = learners.flp(layers, (IN,), 2, output="classification", signal="target",
                           clamp_readout=True, init_beta=1.0)
    params = _randomize_flp(learner.init_params(jax.random.key(1)), rng, learner.plastic_layers)
    assert set(params["fb"]) == {"1"} and set(params["beta"]) == {"1"}
    xs = rng.normal(size=(4, 1, IN))
    ys = rng.integers(0, 5, size=(4, 1))
    fast, _ = lifetime.run(learner, params, jnp.asarray(xs), jnp.asarray(ys))
    ws, bs, acts, alpha, fb, beta = _ref_args(layers, params, learner.plastic_layers)
    for x, y in zip(xs, ys):
      ws = ref.flp_step(ws, bs, acts, (1, 2), alpha, fb, beta, x, y, signal="target",
                        clamp_readout=True, output="classification")
    for l in (1, 2):
      np.testing.assert_allclose(fast[str(l)]["w"], ws[l], rtol=1e-12, atol=1e-13)


def test_clamped_readout_oja_closed_form():
  """Batch of one, clamped readout: only the target row moves, w_c += a_c (h - w_c)."""
  layers = (nets.Dense(6, "relu"), nets.Dense(10, "linear"))
  learner = learners.flp(layers, (3,), 1, output="classification", clamp_readout=True)
  params = learner.init_params(jax.random.key(0))
  alpha = jax.random.uniform(jax.random.key(1), (10, 6), maxval=0.5)
  params["alpha"]["1"] = alpha
  x = jax.random.normal(jax.random.key(2), (1, 3))
  h = learner.encode(params, x)
  w = params["ff"][1]["w"]
  new = learner.step(params, learner.init(params), (h, jnp.array([4])))["1"]["w"]
  expected = w.at[4].set(w[4] + alpha[4] * (h[0] - w[4]))
  np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-7)


def test_feature_reuse_changes_only_the_readout():
  layers = nets.regression_mlp(WIDTHS)
  learner = learners.flp(layers, (IN,), 1, init_alpha=0.01)
  params = learner.init_params(jax.random.key(0))
  assert learner.plastic_layers == (4,)
  xs = jax.random.normal(jax.random.key(1), (5, 3, IN))
  ys = jax.random.normal(jax.random.key(2), (5, 3, 1))
  fast, _ = lifetime.run(learner, params, xs, ys)
  assert set(fast) == {"4"}
  assert not np.allclose(fast["4"]["w"], params["ff"][4]["w"])
  # The network after the lifetime: trunk at its initial weights, new readout.
  x = jax.random.normal(jax.random.key(3), (7, IN))
  ws = [p["w"] for p in params["ff"]][:-1] + [fast["4"]["w"]]
  want = ref.forward([np.asarray(w) for w in ws], [np.asarray(p["b"]) for p in params["ff"]], np.asarray(x),
                     [l.activation for l in layers])[-1]
  np.testing.assert_allclose(lifetime.predict(learner, params, fast, x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("learn_lr", [False, True])
def test_gradient_learner_matches_hand_written_sgd(learn_lr):
  layers = nets.regression_mlp(WIDTHS)
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    learner = learners.gradient(layers, (IN,), 3, lr=0.05, learn_lr=learn_lr)
    params = _f64(learner.init_params(jax.random.key(0)))
    if learn_lr:
      params["lr"] = _f64(jax.tree.map(lambda a: rng.uniform(0.01, 0.1, a.shape), params["lr"]))
    xs = rng.normal(size=(5, 4, IN))
    ys = rng.normal(size=(5, 4, 1))
    fast, _ = lifetime.run(learner, params, jnp.asarray(xs), jnp.asarray(ys))
    ws = [np.asarray(p["w"]) for p in params["ff"]]
    bs = [np.asarray(p["b"]) for p in params["ff"]]
    lr = 0.05 if not learn_lr else {
        int(k): (np.asarray(v["w"]), np.asarray(v["b"])) for k, v in params["lr"].items()}
    for x, y in zip(xs, ys):
      ws, bs = ref.sgd_step(ws, bs, [l.activation for l in layers], learner.plastic_layers, lr, x, y)
    for l in learner.plastic_layers:
      np.testing.assert_allclose(fast[str(l)]["w"], ws[l], rtol=1e-11, atol=1e-13)
      np.testing.assert_allclose(fast[str(l)]["b"], bs[l], rtol=1e-11, atol=1e-13)


def test_first_order_meta_gradient_is_the_identity_path():
  """First-order: d loss / d W_init of a plastic layer equals d loss / d W_final."""
  layers = nets.regression_mlp(WIDTHS)
  with jax.enable_x64(True):
    learner = learners.gradient(layers, (IN,), 2, lr=0.05)
    params = _f64(learner.init_params(jax.random.key(0)))
    xs = jax.random.normal(jax.random.key(1), (4, 3, IN), jnp.float64)
    ys = jax.random.normal(jax.random.key(2), (4, 3, 1), jnp.float64)
    xq = jax.random.normal(jax.random.key(3), (6, IN), jnp.float64)
    yq = jax.random.normal(jax.random.key(4), (6, 1), jnp.float64)

    def meta_loss(p):
      fast, _ = lifetime.run(learner, p, xs, ys)
      return jnp.mean((lifetime.predict(learner, p, fast, xq) - yq) ** 2)

    g = jax.grad(meta_loss)(params)
    fast, _ = lifetime.run(learner, params, xs, ys)
    g_final = jax.grad(lambda f: jnp.mean((lifetime.predict(learner, params, f, xq) - yq) ** 2))(fast)
    for l in learner.plastic_layers:
      np.testing.assert_allclose(g["ff"][l]["w"], g_final[str(l)]["w"], rtol=1e-12)
    second = learners.gradient(layers, (IN,), 2, lr=0.05, second_order=True)
    g2 = jax.grad(lambda p: jnp.mean((lifetime.predict(second, p, lifetime.run(second, p, xs, ys)[0], xq) - yq) ** 2))(params)
    assert not np.allclose(g2["ff"][3]["w"], g["ff"][3]["w"])


def test_reset_readout_draws_a_fresh_readout():
  layers = nets.regression_mlp(WIDTHS)
  learner = learners.gradient(layers, (IN,), 2, reset_readout=True)
  params = learner.init_params(jax.random.key(0))
  a = learner.init(params, jax.random.key(1))
  b = learner.init(params, jax.random.key(2))
  assert not np.allclose(a["4"]["w"], params["ff"][4]["w"])
  assert not np.allclose(a["4"]["w"], b["4"]["w"])
  np.testing.assert_array_equal(a["3"]["w"], params["ff"][3]["w"])
  np.testing.assert_array_equal(a["4"]["b"], 0.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_plastic": 0}, "plastic_layers must be in"),
    ({"n_plastic": 6}, "plastic_layers must be in"),
    ({"n_plastic": 2, "rule": "bcm"}, "unknown plasticity rule"),
    ({"n_plastic": 2, "signal": "reward"}, "unknown feedback signal"),
    ({"n_plastic": 2, "presynaptic": "during"}, "presynaptic must be"),
    ({"n_plastic": 2, "readout_feedback_floor": -1.0}, "readout_feedback_floor: expected"),
])
def test_flp_rejects_bad_options(kwargs, message):
  with pytest.raises(ValueError, match=message):
    learners.flp(nets.regression_mlp(WIDTHS), (IN,), **kwargs)


def test_conv_layers_cannot_be_plastic():
  with pytest.raises(ValueError, match="only dense layers can be plastic"):
    learners.flp(nets.conv_classifier(8, 8, 10), (28, 28, 1), 3)


def test_param_labels_groups():
  learner = learners.flp(nets.regression_mlp(WIDTHS), (IN,), 2)
  labels = learners.param_labels(learner.init_params(jax.random.key(0)), learner.readout)
  assert labels["alpha"] == {"3": "alpha", "4": "alpha_readout"}
  assert set(jax.tree.leaves(labels["ff"])) == {"ff"}
  assert set(jax.tree.leaves(labels["fb"])) == {"fb"}
  assert labels["beta"] == {"3": "beta", "4": "beta"}


def test_learners_declare_their_groups_and_label_every_leaf():
  flp = learners.flp(nets.regression_mlp(WIDTHS), (IN,), 2)
  assert learners.group_names(flp) == ("ff", "fb", "alpha", "alpha_readout", "beta")
  assert learners.param_labels(flp.init_params(jax.random.key(0)), flp) == learners.param_labels(
      flp.init_params(jax.random.key(0)), flp.readout)
  reuse = learners.flp(nets.conv_classifier(8, 8, 10, (2, 2)), (12, 12, 1), 1,
                       output="classification", clamp_readout=True)
  assert learners.group_names(reuse) == ("ff", "alpha", "alpha_readout")  # no feedback at all
  grad = learners.gradient(nets.regression_mlp(WIDTHS), (IN,), 2, learn_lr=True)
  assert learners.group_names(grad) == ("ff", "lr")
  params = grad.init_params(jax.random.key(0))
  labels = learners.param_labels(params, grad)
  assert set(jax.tree.leaves(labels["lr"])) == {"lr"} and set(jax.tree.leaves(labels["ff"])) == {"ff"}
  for learner in (flp, grad):
    fast = learner.init(learner.init_params(jax.random.key(0)), None)
    weights = learner.plastic_weights(fast)
    assert set(weights) == {str(l) for l in learner.plastic_layers}
    assert all(w.ndim == 2 for w in weights.values())


@pytest.mark.parametrize("positive", [False, True])
def test_readout_feedback_floor_raises_small_readout_feedback_keeping_its_sign(positive):
  """Entries of the readout's B below the floor in magnitude start at it (with their sign,
  or positive), the others and every hidden layer's B are the reference's draw."""
  layers = nets.regression_mlp((8, 8, 6), outputs=4)  # B (4, 4): std 0.71
  plain = learners.flp(layers, (IN,), 3, positive_readout_feedback=positive)
  floored = learners.flp(layers, (IN,), 3, positive_readout_feedback=positive,
                         readout_feedback_floor=0.5)
  a = plain.init_params(jax.random.key(3))
  b = floored.init_params(jax.random.key(3))
  readout = str(len(layers) - 1)
  drawn, got = np.asarray(a["fb"][readout]["B"]), np.asarray(b["fb"][readout]["B"])
  assert np.any(np.abs(drawn) < 0.5) and np.any(np.abs(drawn) > 0.5)  # both cases occur
  np.testing.assert_array_equal(got, np.where(np.abs(drawn) < 0.5, np.where(drawn < 0, -0.5, 0.5),
                                              drawn))
  assert np.all(got >= 0.5) if positive else np.any(got < 0)
  for layer in a["fb"]:
    if layer != readout:
      np.testing.assert_array_equal(a["fb"][layer]["B"], b["fb"][layer]["B"])


def test_readout_rows_is_the_same_learner_when_every_label_is_below_it():
  """A clamped readout's rows that no label reaches get post-synaptic activity 0 and never
  move: storing only the first rows changes the cost, not the lifetime, the predictions
  (over every logit) or the meta-gradient (float64)."""
  layers = nets.regression_mlp((6, 5), outputs=12)
  layers = layers[:-1] + (nets.Dense(12, "linear"),)
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    kw = dict(output="classification", signal="target", clamp_readout=True, init_beta=1.0)
    full = learners.flp(layers, (IN,), 2, **kw)
    rows = learners.flp(layers, (IN,), 2, readout_rows=3, **kw)
    params = _randomize_flp(full.init_params(jax.random.key(1)), rng, full.plastic_layers)
    assert rows.init(params)["2"]["w"].shape == (3, 5)
    xs, ys = jnp.asarray(rng.normal(size=(6, 2, IN))), jnp.asarray(rng.integers(0, 3, (6, 2)))
    xq, yq = jnp.asarray(rng.normal(size=(9, IN))), jnp.asarray(rng.integers(0, 3, (9,)))

    def loss(learner, p):
      fast, _ = lifetime.run(learner, p, xs, ys)
      logits = lifetime.predict(learner, p, fast, xq)
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(9), yq]), (fast, logits)

    (l_full, (f_full, z_full)), g_full = jax.value_and_grad(
        lambda p: loss(full, p), has_aux=True)(params)
    (l_rows, (f_rows, z_rows)), g_rows = jax.value_and_grad(
        lambda p: loss(rows, p), has_aux=True)(params)
    assert z_rows.shape == (9, 12)
    np.testing.assert_allclose(z_rows, z_full, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(f_rows["2"]["w"], f_full["2"]["w"][:3], rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(f_full["2"]["w"][3:], params["ff"][2]["w"][3:])
    np.testing.assert_allclose(f_rows["1"]["w"], f_full["1"]["w"], rtol=1e-12, atol=1e-13)
    assert not np.allclose(f_rows["2"]["w"], params["ff"][2]["w"][:3])  # the rows do learn
    assert float(l_rows) == pytest.approx(float(l_full), rel=1e-12)
    for a, b in zip(jax.tree.leaves(g_rows), jax.tree.leaves(g_full)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    # A label at or above readout_rows is what the option excludes: its row is not learned.
    ys_far = ys.at[0, 0].set(7)
    z = [lifetime.predict(l, params, lifetime.run(l, params, xs, ys_far)[0], xq)
         for l in (rows, full)]
    assert not np.allclose(z[0][:, 7], z[1][:, 7])


@pytest.mark.parametrize("kwargs", [dict(readout_rows=3),  # not clamped
                                    dict(readout_rows=0, clamp_readout=True),
                                    dict(readout_rows=13, clamp_readout=True)])
def test_readout_rows_needs_a_clamped_readout_and_a_row_count_within_it(kwargs):
  layers = nets.regression_mlp((6, 5), outputs=12)
  with pytest.raises(ValueError, match="readout_rows="):
    learners.flp(layers, (IN,), 2, output="classification", **kwargs)
