"""Learned plasticity rules (learners/rules.py): exact special cases, meta-gradients, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import learners, lifetime, meta, nets, plasticity
from flpjax.estimators import full
from flpjax.learners import rules
from flpjax.tasks import sine
from flpjax.types import Episode, loss_fn

WIDTHS = (7, 5)  # layers 0 (3 -> 7), 1 (7 -> 5), 2 (5 -> 1)
IN = 3


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), tree)


def _bits(a):
  a = np.asarray(a)
  return a.view(np.int64 if a.dtype == np.float64 else np.int32)


def _randomize(params, rng):
  """Non-trivial shared meta-parameters: biases, alpha, feedback, beta (flp's groups)."""
  p = jax.tree.map(np.asarray, params)
  for layer in p["ff"]:
    layer["b"] = (rng.normal(size=layer["b"].shape) * 0.1).astype(layer["b"].dtype)
  for k, a in p["alpha"].items():
    p["alpha"][k] = rng.uniform(0.0, 0.05, size=a.shape).astype(a.dtype)
  for k, fb in p["fb"].items():
    fb["B"] = (fb["B"] + rng.normal(size=fb["B"].shape) * 0.3).astype(fb["B"].dtype)
    fb["c"] = (rng.normal(size=fb["c"].shape) * 0.2).astype(fb["c"].dtype)
  for k, b in p["beta"].items():
    p["beta"][k] = np.asarray(rng.uniform(0.2, 0.9), b.dtype)
  return jax.tree.map(jnp.asarray, p)


def _without_rule(params):
  return {k: v for k, v in params.items() if k != "rule"}


# ----------------------------------------------------------------------------- exact special cases


@pytest.mark.parametrize("per_synapse", [False, True], ids=["per_layer", "per_synapse"])
@pytest.mark.parametrize("preset", ["oja", "hebb"])
def test_hebbian_update_is_plasticity_rule_bit_for_bit(preset, per_synapse):
  rng = np.random.default_rng(0)
  c = jnp.asarray(rules.PRESETS[preset], jnp.float32)
  if per_synapse:
    c = jnp.broadcast_to(c[:, None, None], (rules.K, 5, 7))
  ours = jax.jit(rules.hebbian_update)
  theirs = jax.jit(plasticity.get_rule(preset))
  for _ in range(20):
    w = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    pre = jnp.asarray(rng.normal(size=(4, 7)), jnp.float32)
    post = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    alpha = jnp.asarray(rng.uniform(0, 0.1, size=(5, 7)), jnp.float32)
    np.testing.assert_array_equal(_bits(ours(c, w, pre, post, alpha)),
                                  _bits(theirs(w, pre, post, alpha)))
    np.testing.assert_array_equal(  # and without jit
        _bits(rules.hebbian_update(c, w, pre, post, alpha)),
        _bits(plasticity.get_rule(preset)(w, pre, post, alpha)))


def _lifetimes(learners_, params, xs, ys):
  """Final fast weights of every learner's lifetime, all in one jitted program."""
  return jax.jit(lambda ps: [lifetime.run(l, p, xs, ys)[0] for l, p in zip(learners_, ps)])(
      params)


@pytest.mark.parametrize("x64", [False, True], ids=["f32", "f64"])
@pytest.mark.parametrize("preset", ["oja", "hebb"])
def test_preset_lifetime_equals_flp_bit_for_bit(preset, x64):
  """With Oja's / Hebb's coefficients the lifetime is flp(rule=...)'s, bit for bit.

  n_plastic 1, 2, 3, with and without a clamped readout, per layer and per
  synapse (float64: three of these), and one case with flp's other options;
  each learner's lifetimes in one program, flp's in another (as separate runs
  would be).
  """
  layers = nets.regression_mlp(WIDTHS)
  rng = np.random.default_rng(1)
  cases = [(n, clamp, per_synapse, {}) for n in (1, 2, 3) for clamp in (False, True)
           for per_synapse in (False, True)]
  if x64:  # fewer in float64 (compile time)
    cases = [(3, False, False, {}), (3, True, True, {})]
  cases += [(3, False, True, {"presynaptic": "post", "signal": "target", "clip_beta": True})]
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    xs = jnp.asarray(rng.normal(size=(4, 5, IN)), dtype)
    ys = jnp.asarray(rng.normal(size=(4, 5, 1)), dtype)
    ours, theirs, params = [], [], []
    for i, (n_plastic, clamp, per_synapse, options) in enumerate(cases):
      ours.append(rules.learned_rule(layers, (IN,), n_plastic, init=preset,
                                     per_synapse=per_synapse, clamp_readout=clamp, **options))
      theirs.append(learners.flp(layers, (IN,), n_plastic, rule=preset, clamp_readout=clamp,
                                 **options))
      p = ours[-1].init_params(jax.random.key(i))
      same = jax.tree.map(np.array_equal, _without_rule(p),
                          theirs[-1].init_params(jax.random.key(i)))
      assert all(jax.tree.leaves(same))  # init_params: flp's, plus 'rule'
      params.append(_randomize(_f64(p) if x64 else p, rng))
    got = _lifetimes(ours, params, xs, ys)
    want = _lifetimes(theirs, [_without_rule(p) for p in params], xs, ys)
    for case, p, fast, fast_flp in zip(cases, params, got, want):
      for k in fast_flp:
        assert fast[k]["w"].dtype == dtype
        np.testing.assert_array_equal(_bits(fast[k]["w"]), _bits(fast_flp[k]["w"]),
                                      err_msg=f"layer {k}, (n_plastic, clamp_readout, "
                                              f"per_synapse, options)={case}")
        assert not np.allclose(fast[k]["w"], p["ff"][int(k)]["w"])  # it did learn


# ----------------------------------------------------------------------------- meta-gradients


def _fd_check(learner, params, episode, paths, eps=1e-6, rtol=1e-6):
  """Meta-gradient of the rule's parameters against central finite differences (float64)."""
  query_loss = loss_fn("regression")

  def loss(p):
    return lifetime.query_loss(learner, p, episode, query_loss)[0]

  loss = jax.jit(loss)
  grads = jax.jit(jax.grad(loss))(params)["rule"]
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads))
  assert scale > 1e-6  # the rule matters to the meta-loss
  checked = 0
  base = jax.tree.map(np.asarray, params)
  for layer, leaf, index in paths:
    def at(delta):
      p = jax.tree.map(np.copy, base)
      sub = p["rule"][layer] if leaf is None else p["rule"][layer][leaf]
      sub[index] += delta
      return float(loss(p))

    fd = (at(eps) - at(-eps)) / (2 * eps)
    g = np.asarray(grads[layer] if leaf is None else grads[layer][leaf])
    np.testing.assert_allclose(g[index], fd, rtol=rtol, atol=rtol * scale,
                               err_msg=f"rule[{layer}][{leaf}][{index}]")
    checked += 1
  return checked


def _episode(rng, steps=4, batch=3, queries=6):
  return Episode(jnp.asarray(rng.normal(size=(steps, batch, IN))),
                 jnp.asarray(rng.normal(size=(steps, batch, 1))),
                 jnp.asarray(rng.normal(size=(queries, IN))),
                 jnp.asarray(rng.normal(size=(queries, 1))))


@pytest.mark.parametrize("init", ["oja", "random"])
def test_hebbian_coefficient_meta_gradients_match_finite_differences(init):
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    learner = rules.learned_rule(nets.regression_mlp(WIDTHS), (IN,), 2, init=init)
    params = _randomize(_f64(learner.init_params(jax.random.key(0))), rng)
    params["rule"] = {k: c * 0.3 if init == "random" else c for k, c in params["rule"].items()}
    paths = [(k, None, (i,)) for k in params["rule"] for i in range(rules.K)]
    assert _fd_check(learner, params, _episode(rng), paths) == 2 * rules.K


def test_per_synapse_coefficient_meta_gradients_match_finite_differences():
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    learner = rules.learned_rule(nets.regression_mlp(WIDTHS), (IN,), 2, per_synapse=True,
                                 clamp_readout=True)
    params = _randomize(_f64(learner.init_params(jax.random.key(0))), rng)
    params["rule"] = {k: c + 0.1 * rng.normal(size=c.shape) for k, c in params["rule"].items()}
    shapes = {"1": (5, 7), "2": (1, 5)}
    paths = [(k, None, (t, int(rng.integers(s[0])), int(rng.integers(s[1]))))
             for k, s in shapes.items() for t in range(rules.K)]
    _fd_check(learner, params, _episode(rng), paths)


def test_mlp_rule_meta_gradients_match_finite_differences():
  rng = np.random.default_rng(4)
  with jax.enable_x64(True):
    learner = rules.learned_rule(nets.regression_mlp(WIDTHS), (IN,), 2, rule="mlp", hidden=4)
    params = _randomize(_f64(learner.init_params(jax.random.key(0))), rng)
    params["rule"] = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape), params["rule"])
    paths = []
    for k in ("1", "2"):
      paths += [(k, "w1", (i, int(rng.integers(4)))) for i in range(3)]
      paths += [(k, "b1", (int(rng.integers(4)),)), (k, "w2", (int(rng.integers(4)),)),
                (k, "b2", ())]
    _fd_check(learner, params, _episode(rng), paths)


# ----------------------------------------------------------------------------- behaviour


def test_random_init_gives_different_updates():
  layers = nets.regression_mlp(WIDTHS)
  h = jax.random.normal(jax.random.key(1), (4, IN))
  y = jax.random.normal(jax.random.key(2), (4, 1))
  oja = rules.learned_rule(layers, (IN,), 2, init_alpha=0.05)
  params = oja.init_params(jax.random.key(0))
  want = jax.jit(oja.step)(params, oja.init(params), (oja.encode(params, h), y))
  for kwargs in ({"init": "random"}, {"init": "random", "per_synapse": True}, {"rule": "mlp"}):
    learner = rules.learned_rule(layers, (IN,), 2, init_alpha=0.05, **kwargs)
    p = learner.init_params(jax.random.key(0))
    np.testing.assert_array_equal(p["alpha"]["1"], params["alpha"]["1"])  # only the rule differs
    got = jax.jit(learner.step)(p, learner.init(p), (learner.encode(p, h), y))
    for k in ("1", "2"):
      assert not np.allclose(got[k]["w"], want[k]["w"]), kwargs
    other = learner.init_params(jax.random.key(5))["rule"]
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(other),
                                                      jax.tree.leaves(p["rule"])))


def test_explicit_coefficients_and_groups():
  layers = nets.regression_mlp(WIDTHS)
  flp = learners.flp(layers, (IN,), 2)
  c = (0.5, 0.1, -0.2, -1.0, 0.03, 0.0)
  learner = rules.learned_rule(layers, (IN,), 2, init=c)
  params = learner.init_params(jax.random.key(0))
  np.testing.assert_array_equal(params["rule"]["2"], np.float32(c))
  per = rules.learned_rule(layers, (IN,), 2, per_synapse=True,
                           init={1: np.ones((rules.K, 5, 7)), "2": c})
  p = per.init_params(jax.random.key(0))
  assert p["rule"]["1"].shape == (rules.K, 5, 7) and p["rule"]["2"].shape == (rules.K, 1, 5)
  np.testing.assert_array_equal(p["rule"]["2"][:, 0, 3], np.float32(c))
  assert learners.group_names(learner) == learners.group_names(flp) + ("rule",)
  labels = learners.param_labels(params, learner)
  assert labels["rule"] == {"1": "rule", "2": "rule"}
  assert labels["alpha"] == {"1": "alpha", "2": "alpha_readout"}
  mlp = rules.learned_rule(layers, (IN,), 2, rule="mlp")
  assert set(jax.tree.leaves(learners.param_labels(mlp.init_params(jax.random.key(0)), mlp)
                             ["rule"])) == {"rule"}
  fast = learner.init(params)
  assert set(learner.plastic_weights(fast)) == {"1", "2"}


def test_a_rule_of_your_own():
  """A `LearnedRule` of one's own: Oja's rule with a meta-learned gain per layer."""
  gain_oja = rules.LearnedRule(
      init=lambda key, layer, shape: jnp.ones((), jnp.float32),
      update=lambda g, w, pre, post, alpha: plasticity.oja(w, pre, post, g * alpha),
      name="gain_oja")
  layers = nets.regression_mlp(WIDTHS)
  learner = rules.learned_rule(layers, (IN,), 2, rule=gain_oja, init_alpha=0.05)
  flp = learners.flp(layers, (IN,), 2, init_alpha=0.05)
  params = learner.init_params(jax.random.key(0))
  xs = jax.random.normal(jax.random.key(1), (3, 4, IN))
  ys = jax.random.normal(jax.random.key(2), (3, 4, 1))
  got, want = _lifetimes([learner, flp], [params, _without_rule(params)], xs, ys)
  for k in want:
    np.testing.assert_allclose(got[k]["w"], want[k]["w"], rtol=1e-6, atol=1e-7)
  g = jax.jit(jax.grad(lambda p: jnp.sum(lifetime.run(learner, p, xs, ys)[0]["2"]["w"] ** 2)))(
      params)
  assert all(float(jnp.abs(v)) > 0 for v in g["rule"].values())


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, message", [
    ({"rule": "bcm"}, r"unknown rule 'bcm'; expected one of \('hebbian', 'mlp'\)"),
    ({"init": "bcm"}, r"unknown init 'bcm' for the hebbian rule; expected 'oja', 'hebb', "),
    ({"init": (1.0, 0.0)}, r"init of shape \(2,\) for the hebbian rule: expected 6 coeff"),
    ({"init": {"1": np.zeros((6, 3, 3)), "2": np.zeros(6)}, "per_synapse": True},
     r"init\[1\] has shape \(6, 3, 3\), which does not fit layer 1's weights \(5, 7\); "
     r"expected \(6,\) or \(6, 5, 7\)"),
    ({"init": {"1": np.zeros((6, 5, 7)), "2": np.zeros(6)}},
     r"init\[1\] has shape \(6, 5, 7\).*needs per_synapse=True"),
    ({"init": {"2": np.zeros(6)}}, r"init has no coefficients for plastic layer 1"),
    ({"init": {"0": np.zeros(6), "1": np.zeros(6), "2": np.zeros(6)}},
     r"init has entries for layers \['0', '1', '2'\]; expected only the plastic layers"),
    ({"rule": "mlp", "init": "oja"}, r"init='oja' for rule='mlp': expected None or 'random'"),
    ({"rule": "mlp", "per_synapse": True}, r"per_synapse=True for rule='mlp': expected False"),
    ({"rule": "mlp", "hidden": 0}, r"hidden=0: expected a positive integer"),
    ({"rule": rules.mlp(), "init": "oja"}, r"init='oja', per_synapse=False with a LearnedRule"),
    ({"signal": "reward"}, r"unknown feedback signal"),  # flp's own checks
])
def test_bad_options_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    rules.learned_rule(nets.regression_mlp(WIDTHS), (IN,), 2, **kwargs)


def test_coefficients_of_the_wrong_shape_fail_at_the_step():
  layers = nets.regression_mlp(WIDTHS)
  learner = rules.learned_rule(layers, (IN,), 2, per_synapse=True)
  params = learner.init_params(jax.random.key(0))
  params["rule"]["1"] = jnp.zeros((rules.K, 7, 5))
  h = learner.encode(params, jnp.zeros((2, IN)))
  with pytest.raises(ValueError, match=r"shape \(6, 7, 5\) for weights \(5, 7\); expected "
                                       r"\(6, 5, 7\) \(per_synapse=True\)"):
    learner.step(params, learner.init(params), (h, jnp.zeros((2, 1))))


# ----------------------------------------------------------------------------- meta-training


def test_meta_training_is_finite_and_moves_the_rule():
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 50), order="continual",
                        n_functions=2, steps_per_function=4, batch_size=8,
                        queries_per_function=8)
  learner = rules.learned_rule(nets.regression_mlp((16, 16)), task.input_shape, 2,
                               init_alpha=1e-3)
  # The rule at 1e-3; the other groups at the paper's rates (alpha: 1e-5). With ff, fb and
  # beta at 1e-3 and alpha at 1e-4, flp itself reaches meta-gradient norms of 1e6 here and a
  # lifetime of the learned rule diverges at meta-step 61 (a step apply_if_finite skips).
  opt = meta.make_optimizer({"ff": 1e-4, "fb": 1e-4, "alpha": 1e-5, "beta": 1e-4,
                             "rule": 1e-3}, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  start = jax.tree.map(np.asarray, state.params["rule"])
  step = meta.make_meta_step(full.make(learner, task), opt)
  losses = []
  for i in range(100):
    state, metrics = step(state, jax.random.key(100 + i), task.data)
    assert bool(metrics["finite"]), i
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses))
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(state.params))
  moved = [float(np.max(np.abs(np.asarray(a) - b)))
           for a, b in zip(jax.tree.leaves(state.params["rule"]), jax.tree.leaves(start))]
  assert min(moved) > 1e-3, moved  # Adam at 1e-3: every rule parameter moved
