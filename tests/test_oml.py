"""The original OML procedure (docs/fidelity.md (part II, OML)), flpjax/protocols/oml.py: proxy task,
row reset and clamp, evaluation:
clamp, schedule, the Adam evaluation learner and its learning-rate search, configs."""

import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flpjax import config as config_lib
from flpjax import datasets, learners, lifetime, meta, nets
from flpjax.estimators import full
from flpjax.protocols import oml
from flpjax.tasks import fewshot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OML_CONFIGS = ("oml_sine_iid", "oml_sine_continual", "oml_omniglot", "oml_omniglot_continual",
               "oml_mini_imagenet")
# The Original OML rows' config strings (experiments/configs/), by the rows' former file names.
OML_CONFIG_STRINGS = {
    "oml_sine_iid": "sine.py:row=oml3,order=iid",
    "oml_sine_continual": "sine.py:row=oml3,order=continual",
    "oml_omniglot": "fewshot.py:dataset=omniglot,order=iid,row=oml2",
    "oml_omniglot_continual": "fewshot.py:dataset=omniglot,order=continual,row=oml2",
    "oml_mini_imagenet": "fewshot.py:dataset=mini_imagenet,order=iid,row=oml2",
}
OMNIGLOT = datasets.dataset_dir("omniglot")
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT / "images_background.npz").is_file(),
    reason=f"Omniglot data not found in {OMNIGLOT} (set FLPJAX_DATA_DIR)")


def load_config(name):
  return config_lib.load_file(os.path.join(REPO, "experiments", "configs",
                                            OML_CONFIG_STRINGS[name]))


def _labelled_images(classes=24, per_class=20, size=4):
  """uint8 images whose pixel (0, 0) encodes the class and (0, 1) the image index."""
  x = np.zeros((classes, per_class, size, size, 1), np.uint8)
  x[:, :, 0, 0, 0] = np.arange(classes)[:, None]
  x[:, :, 0, 1, 0] = np.arange(per_class)[None, :]
  return x


def _decode(x):
  x = np.rint(np.asarray(x) * 255).astype(int)
  return x[..., 0, 0, 0], x[..., 0, 1, 0]  # class id, image index


# ----------------------------------------------------------------------------- proxy task


@pytest.mark.parametrize("steps,used,held", [(10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10], [9, 19]),
                                             (5, [0, 1, 2, 3, 5], [4, 9, 14, 19]),
                                             (15, list(range(14)) + [15], [14])])
def test_proxy_positions_follow_omls_counter(steps, used, held):
  """docs/fidelity.md OML 2.3's table: S=10 -> 10 used + 2 held out, S=5 -> 5 + 4, S=15 -> 15 + 1."""
  traj, h = oml.proxy_positions(20, steps)
  assert traj.tolist() == used and h.tolist() == held
  traj, h = oml.proxy_positions(600, 10)  # mini-ImageNet: 5 held out, meta set 10 + 5
  assert len(traj) == 10 and h.tolist() == [9, 19, 29, 39, 49]
  with pytest.raises(ValueError, match="steps=20"):  # OML's README S = 20 crashes
    oml.proxy_positions(20, 20)
  with pytest.raises(ValueError, match="S >= 2"):
    oml.proxy_positions(20, 1)


@pytest.mark.parametrize("steps,held", [(10, 2), (5, 4)])
def test_proxy_episode_structure(steps, held):
  """Scaled-down Omniglot ranges: trajectory classes 12..23, remember classes 0..11."""
  images = jnp.asarray(_labelled_images())
  sample = jax.jit(lambda k: oml.sample_oml_episode(
      k, images, steps=steps, trajectory_classes=(12, 24), remember_classes=(0, 12)))
  seen = set()
  for i in range(30):
    ep = sample(jax.random.key(i))
    assert ep.xs.shape == (steps, 1, 4, 4, 1) and ep.ys.shape == (steps, 1)
    assert ep.xq.shape == (10 + held, 4, 4, 1) and ep.yq.shape == (10 + held,)
    cls, idx = _decode(ep.xs[:, 0])
    c = int(cls[0])
    seen.add(c)
    assert 12 <= c < 24 and (cls == c).all() and (np.asarray(ep.ys) == c).all()
    assert len(set(idx)) == steps
    qcls, qidx = _decode(ep.xq)
    np.testing.assert_array_equal(qcls, np.asarray(ep.yq))  # raw class ids
    rem_cls, rem_idx = qcls[:10], qidx[:10]
    assert ((0 <= rem_cls) & (rem_cls < 12)).all()
    assert len(set(zip(rem_cls, rem_idx))) == 10  # without replacement
    assert (qcls[10:] == c).all()
    assert not set(qidx[10:]) & set(idx)  # held-out images never in the trajectory
    assert len(set(qidx[10:])) == held
  assert len(seen) > 6


def test_mini_imagenet_proxy_draws_both_from_all_classes():
  images = _labelled_images(classes=8, per_class=60)
  task = oml.make_train_task(images, dataset="mini_imagenet", trajectory_classes=(0, 8),
                             remember_classes=(0, 8))
  ep = task.sample(jax.random.key(0), task.data)
  assert ep.xs.shape[0] == 10 and ep.xq.shape[0] == 15  # S = 10: 5 held out
  with pytest.raises(ValueError, match="trajectory_classes"):
    oml.make_train_task(images, dataset="omniglot")  # 481..962 do not exist here


# ----------------------------------------------------------------------------- row reset


def _small_classifier(readout=12, hidden=64, size=12):
  layers = nets.conv_classifier(4, hidden, readout, strides=(2, 2))
  return learners.gradient(layers, (size, size, 1), 2, output="classification", lr=0.03)


def test_reset_readout_row_only_touches_that_row_and_is_kaiming():
  learner = _small_classifier()
  params = learner.init_params(jax.random.key(0))
  params["ff"][-1]["b"] = jnp.arange(12.0)
  new = oml.reset_readout_row(params, learner.readout, jnp.int32(5), jax.random.key(1))
  w, w0 = np.asarray(new["ff"][-1]["w"]), np.asarray(params["ff"][-1]["w"])
  assert not np.array_equal(w[5], w0[5])
  np.testing.assert_array_equal(np.delete(w, 5, 0), np.delete(w0, 5, 0))
  np.testing.assert_array_equal(new["ff"][-1]["b"], params["ff"][-1]["b"])
  for a, b in zip(jax.tree.leaves(new["ff"][:-1]), jax.tree.leaves(params["ff"][:-1])):
    np.testing.assert_array_equal(a, b)
  rows = jax.jit(jax.vmap(
      lambda k: oml.reset_readout_row(params, learner.readout, 5, k)["ff"][-1]["w"][5]))(
          jax.random.split(jax.random.key(2), 2000))                  # (2000, 64)
  assert abs(float(jnp.std(rows)) / math.sqrt(2 / 64) - 1) < 0.02
  assert abs(float(jnp.mean(rows))) < 0.01


def test_meta_step_resets_the_trajectory_class_row():
  """With a frozen optimizer, the step changes exactly the episode's class row."""
  images = _labelled_images(classes=12, per_class=20, size=12)
  task = oml.make_train_task(images, trajectory_classes=(6, 12), remember_classes=(0, 6))
  learner = _small_classifier()
  opt = meta.make_optimizer({"ff": 0.0}, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  before = jax.tree.map(np.asarray, state.params)
  key = jax.random.key(3)
  c = int(task.sample(jax.random.split(key)[0], task.data).ys[0, 0])
  state, metrics = meta.make_meta_step(oml.make(learner, task), opt)(state, key, task.data)
  assert bool(metrics["finite"])
  w = np.asarray(state.params["ff"][-1]["w"])
  changed = np.flatnonzero((w != before["ff"][-1]["w"]).any(axis=1))
  assert changed.tolist() == [c] and 6 <= c < 12
  np.testing.assert_array_equal(state.params["ff"][-1]["b"], before["ff"][-1]["b"])
  # A non-finite step is skipped whole: the reset is not kept either.
  state.params["ff"][-2]["b"] = state.params["ff"][-2]["b"].at[0].set(jnp.nan)
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = meta.make_meta_step(oml.make(learner, task), opt)(state, key, task.data)
  assert not bool(metrics["finite"])
  chex.assert_trees_all_equal(state.params, before)


# ----------------------------------------------------------------------------- clamp, schedule


def test_meta_gradient_is_clamped_elementwise():
  images = _labelled_images(classes=12, per_class=20, size=12)
  images[..., 1:, :, 0] = np.random.default_rng(0).integers(0, 256, images[..., 1:, :, 0].shape)
  task = oml.make_train_task(images, trajectory_classes=(6, 12), remember_classes=(0, 6))
  learner = _small_classifier()
  params = learner.init_params(jax.random.key(0))
  for l in (-2, -1):  # large activations and logits: gradients well above 5
    params["ff"][l]["w"] = 30.0 * params["ff"][l]["w"]
  sgd = optax.apply_if_finite(optax.sgd(1.0), 10)
  key = jax.random.key(4)
  g = jax.grad(full.make_loss(learner, task))(params, key, task.data)
  leaves = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
  assert (np.abs(leaves) > 5).sum() > 10 and ((np.abs(leaves) > 0) & (np.abs(leaves) < 5)).any()
  for clamp, expect in ((5.0, jax.tree.map(lambda x: jnp.clip(x, -5, 5), g)), (None, g)):
    est = oml.make(learner, task, clamp=clamp, reset_row=False)
    step = jax.jit(meta.make_meta_step(est, sgd, jit=False))
    state, _ = step(meta.TrainState(jnp.int32(0), params, sgd.init(params)), key, task.data)
    jax.tree.map(lambda new, p, e: np.testing.assert_allclose(new, p - e, rtol=1e-5, atol=1e-5),
                 state.params, params, expect)


def test_multistep_schedule_of_the_ff_group():
  """MultiStepLR([1500, 2500, 3500], 0.3): Adam's update on a constant gradient is the rate."""
  c = load_config("oml_sine_iid")
  c.net.widths = (2,) * 8
  learner = config_lib.make_learner(c)
  opt = meta.make_optimizer(config_lib.meta_lrs(c), learner)
  params = learner.init_params(jax.random.key(0))
  ones = jax.tree.map(jnp.ones_like, params)

  def body(state, _):
    updates, state = opt.update(ones, state, params)
    return state, updates["ff"][0]["w"][0, 0]

  _, updates = jax.jit(lambda s: jax.lax.scan(body, s, None, length=3600))(opt.init(params))
  expected = {0: 1e-4, 1499: 1e-4, 1500: 3e-5, 2499: 3e-5, 2500: 9e-6, 3499: 9e-6, 3500: 2.7e-6,
              3599: 2.7e-6}
  for step, lr in expected.items():
    np.testing.assert_allclose(-updates[step], lr, rtol=1e-5)


# ----------------------------------------------------------------------------- regression


def test_without_reset_and_clamp_it_is_the_standard_meta_step():
  c = load_config("oml_sine_continual")
  c.net.widths = (8,) * 8
  c.sine.n_functions, c.sine.steps_per_function, c.sine.batch_size = 3, 2, 4
  learner = config_lib.make_learner(c)
  task, _ = config_lib.make_tasks(c)
  opt = meta.make_optimizer(config_lib.meta_lrs(c), learner)
  a = b = meta.init_state(learner, opt, jax.random.key(0))
  est = oml.make(learner, task, clamp=None, reset_row=False)
  step_a = jax.jit(meta.make_meta_step(est, opt, jit=False))
  step_b = jax.jit(meta.make_meta_step(full.make(learner, task), opt, jit=False))
  for i in range(2):
    a, ma = step_a(a, jax.random.key(i), task.data)
    b, mb = step_b(b, jax.random.key(i), task.data)
  chex.assert_trees_all_equal((a.params, ma), (b.params, mb))


def test_train_order_option_meta_trains_continually_evaluates_iid():
  c = load_config("oml_sine_iid")
  c.oml.train_order = "continual"
  train_task, eval_task = config_lib.make_tasks(c)
  slots = lambda t: np.argmax(np.asarray(t.sample(jax.random.key(0), t.data).xs[:, 0, :10]), -1)
  assert (np.diff(slots(train_task)) >= 0).all()
  assert (np.diff(slots(eval_task)) < 0).any()


@pytest.mark.slow
def test_short_sine_oml_meta_training_lowers_the_loss():
  """OML (3) at reduced size, its schedule scaled down: meta-loss and meta-test MSE fall."""
  c = load_config("oml_sine_continual")
  c.net.widths = (32,) * 5 + (96, 32, 32)
  c.sine.n_functions, c.sine.steps_per_function = 4, 5
  c.sine.batch_size = c.sine.queries_per_function = 16
  c.sine.pool_size = 50
  c.meta.lr.ff = 1e-3
  c.meta.ff_milestones = (150, 250)
  config_lib.validate(c)
  learner = config_lib.make_learner(c)
  task, _ = config_lib.make_tasks(c)
  opt = meta.make_optimizer(config_lib.meta_lrs(c), learner)
  state = meta.init_state(learner, opt, jax.random.key(c.seed))
  start = oml.evaluate(c, state.params, 20)
  step = meta.make_meta_step(config_lib.make_estimator(c, learner, task), opt)
  losses = []
  for i in range(300):
    state, m = step(state, jax.random.fold_in(jax.random.key(c.seed), i), task.data)
    losses.append(float(m["loss"]))
  assert np.isfinite(losses).all()
  assert np.mean(losses[-50:]) < 0.8 * np.mean(losses[:30]), (losses[:30], losses[-50:])
  end = oml.evaluate(c, state.params, 20)
  assert end["mse"] < 0.85 * start["mse"] and end["lifetimes"] == 20


# ----------------------------------------------------------------------------- Omniglot


def test_omniglot_proxy_meta_steps_run_and_are_finite():
  """OML's network shape (84x84, 6 convs, dense, 1000-way readout; few channels) on synthetic data."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 20, 84, 84, 1), dtype=np.uint8)
  task = oml.make_train_task(images, trajectory_classes=(20, 40), remember_classes=(0, 20))
  learner = learners.gradient(nets.conv_classifier(8, 32, 1000), (84, 84, 1), 2,
                              output="classification", lr=0.03)
  opt = meta.make_optimizer({"ff": 1e-4}, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  first = jax.tree.map(np.asarray, state.params)
  step = meta.make_meta_step(oml.make(learner, task, meta_batch=2), opt)
  for i in range(3):
    state, m = step(state, jax.random.key(i), task.data)
    assert bool(m["finite"]) and np.isfinite(float(m["loss"])) and float(m["grad_norm"]) > 0
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
  assert not np.array_equal(state.params["ff"][0]["w"], first["ff"][0]["w"])  # the trunk learns


# ----------------------------------------------------------------------------- OML evaluation


def _np_forward(p, x):
  z1 = x @ p[0].T + p[1]
  h1 = np.maximum(z1, 0)
  return z1, h1, h1 @ p[2].T + p[3]


def _np_grads(p, x, y):
  z1, h1, logits = _np_forward(p, x)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  d = (e / e.sum(-1, keepdims=True) - np.eye(logits.shape[-1])[y]) / x.shape[0]
  dh = (d @ p[2]) * (z1 > 0)
  return [dh.T @ x, dh.sum(0), d.T @ h1, d.sum(0)]


def test_adam_learner_matches_numpy_adam_and_resets_the_readout():
  layers = (nets.Dense(6, "relu"), nets.Dense(5, "linear"))
  lr, steps = 0.05, 4
  with jax.enable_x64(True):
    learner = oml.adam_learner(layers, (4,), 2, lr=lr)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), learner.init_params(
        jax.random.key(0)))
    params["ff"][0]["b"] = jnp.linspace(-0.3, 0.3, 6)
    fast = learner.init(params, jax.random.key(1))
    w_out = np.asarray(fast["pln"]["1"]["w"])
    assert not np.allclose(w_out, params["ff"][1]["w"])  # readout re-initialised ...
    np.testing.assert_array_equal(fast["pln"]["1"]["b"], 0.0)
    np.testing.assert_array_equal(fast["pln"]["0"]["w"], params["ff"][0]["w"])  # ... fc1 kept
    np.testing.assert_array_equal(fast["pln"]["0"]["b"], params["ff"][0]["b"])
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(steps, 3, 4)), rng.integers(0, 5, (steps, 3))
    out, _ = lifetime.run(learner, params, jnp.asarray(xs), jnp.asarray(ys),
                          key=jax.random.key(1))
  p = [np.asarray(fast["pln"][l][k], np.float64) for l in ("0", "1") for k in ("w", "b")]
  m = [np.zeros_like(a) for a in p]
  v = [np.zeros_like(a) for a in p]
  for t in range(1, steps + 1):
    g = _np_grads(p, xs[t - 1], ys[t - 1])
    for i in range(4):
      m[i] = 0.9 * m[i] + 0.1 * g[i]
      v[i] = 0.999 * v[i] + 0.001 * g[i] ** 2
      p[i] = p[i] - lr * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
  got = [out["pln"][l][k] for l in ("0", "1") for k in ("w", "b")]
  for a, b in zip(got, p):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
  assert not np.allclose(p[2], w_out)


def _clustered_images(classes=8, per_class=20, size=6, seed=0):
  """Class prototypes plus noise, uint8: a tiny net can learn them in a few steps."""
  rng = np.random.default_rng(seed)
  protos = rng.uniform(0, 255, (classes, 1, size, size, 1))
  x = protos + rng.normal(0, 40, (classes, per_class, size, size, 1))
  return np.clip(x, 0, 255).astype(np.uint8)


def test_lr_search_reads_only_support_images():
  """Swapping the test images (15-19) between classes changes query accuracy, not the search."""
  a = _clustered_images()
  b = a.copy()
  b[:, 15:] = np.roll(a[:, 15:], 1, axis=0)  # every class's test images now of another class
  layers = (nets.Dense(16, "relu"), nets.Dense(10, "linear"))
  make = lambda lr: oml.adam_learner(layers, (6, 6, 1), 2, lr=lr)
  lrs = (1.0, 0.03, 1e-3, 1e-5, 1e-7)
  params = oml.adam_learner(layers, (6, 6, 1), 2).init_params(jax.random.key(0))
  key = jax.random.key(5)
  results = []
  for images in (a, b):
    task = fewshot.make_test_task(images, dataset="omniglot", ways=5, shots=5)
    results.append(oml.evaluate_adam(make, task, params, key, lrs=lrs, searches=3,
                                     lifetimes=20, batch=10))
  (ra, rb) = results
  np.testing.assert_array_equal(ra["oml_lr_scores"], rb["oml_lr_scores"])
  assert ra["oml_lr"] == rb["oml_lr"]
  scores = np.asarray(ra["oml_lr_scores"])
  assert scores.shape == (3, 5) and scores.max() > scores.min()  # the rates differ
  choices = [lrs[int(np.argmax(s))] for s in scores]
  assert ra["oml_lr"] in choices and choices.count(ra["oml_lr"]) == max(map(choices.count, lrs))
  assert ra["accuracy"] > rb["accuracy"] + 0.2  # the query images did change
  assert ra["lifetimes"] == 20


@needs_omniglot
def test_omniglot_tasks_from_a_config():
  c = load_config("oml_omniglot")
  c.fewshot.image_size = 28
  c.net.strides = (2, 2)
  config_lib.validate(c)
  train_task, test_task = config_lib.make_tasks(c)
  ep = train_task.sample(jax.random.key(0), train_task.data)
  assert ep.xs.shape == (10, 1, 28, 28, 1) and ep.xq.shape == (12, 28, 28, 1)
  assert 481 <= int(ep.ys[0, 0]) < 963 and (np.asarray(ep.yq[:10]) < 481).all()
  assert train_task.data.shape[0] == 963
  assert test_task.sample(jax.random.key(0), test_task.data).xs.shape == (25, 1, 28, 28, 1)
  c.oml.trajectory_classes = (481, 964)
  c.net.readout = 1000
  with pytest.raises(config_lib.ConfigError, match="config.oml"):
    config_lib.make_tasks(c)


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", OML_CONFIGS)
def test_oml_configs_validate(name):
  c = load_config(name)
  config_lib.validate(c)
  assert c.estimator == "oml" and c.learner == "gradient" and not c.gradient.learn_lr
  if "sine" in name:
    assert c.plastic_layers == 3 and c.gradient.lr == 0.003 and c.seed == 1000
    assert tuple(c.meta.ff_milestones) == (1500, 2500, 3500) and c.meta.ff_decay == 0.3
    assert callable(config_lib.meta_lrs(c)["ff"]) and not c.oml.clamp and not c.oml.reset_row
  else:
    assert c.plastic_layers == 2 and c.oml.clamp == 5.0 and c.oml.reset_row
    assert (c.net.channels, c.net.hidden, c.net.readout) == (256, 1024, 1000)
    assert len(c.oml.eval_lrs) == (9 if "imagenet" in name else 12)


@pytest.mark.parametrize("name,field,value,match", [
    ("oml_omniglot", "oml.steps", 1, "config.oml.steps"),
    ("oml_omniglot", "oml.trajectory_classes", (481, 1001), "config.oml.trajectory_classes"),
    ("oml_omniglot", "oml.eval_rule", "sgdm", "config.oml.eval_rule"),
    ("oml_omniglot", "oml.eval_lrs", (0.01, -1.0), "config.oml.eval_lrs"),
    ("oml_omniglot", "oml.train_order", "iid", "config.oml.train_order"),
    ("oml_omniglot", "learner", "flp", "config.learner"),
    ("oml_sine_iid", "oml.reset_row", True, "config.oml.reset_row"),
    ("oml_sine_iid", "oml.train_order", "shuffled", "config.oml.train_order"),
    ("oml_sine_iid", "meta.ff_milestones", (2500, 1500), "config.meta.ff_milestones"),
    ("oml_sine_iid", "meta.ff_decay", 1.5, "config.meta.ff_decay"),
    ("oml_sine_iid", "estimator", "maml", "config.estimator"),
])
def test_bad_oml_fields_are_named(name, field, value, match):
  c = load_config(name)
  node = c
  *path, last = field.split(".")
  for part in path:
    node = node[part]
  node[last] = value
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)
