"""Flax trunks: a user's module (`learners.with_trunk`), the paper's as flax modules
(`flpjax.trunks`), state and dropout, ``config.net.trunk``, and meta-training from configs."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flpjax import config as config_lib
from flpjax import datasets, learners, lifetime, meta, nets, trunks, types
from flpjax.estimators import full
from flpjax.learners import trunk as trunk_lib
from flpjax.tasks import fewshot

OMNIGLOT = datasets.dataset_dir("omniglot")
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT / "images_background.npz").is_file(),
    reason=f"Omniglot data not found in {OMNIGLOT} (set FLPJAX_DATA_DIR)")


class SmallCNN(nn.Module):
  """Three strided 3x3 convolutions with ReLU: (N, 28, 28, 1) -> (N, 2, 2, 16)."""

  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2), padding="VALID")(x))
    return x


def _learner(readout=16):
  d = learners.trunk_features(SmallCNN(), (28, 28, 1))
  head = learners.flp((nets.Dense(32), nets.Dense(readout, "linear")), (d,), 2,
                      output="classification", signal="target", clamp_readout=True,
                      init_beta=1.0)
  return learners.with_trunk(head, SmallCNN(), (28, 28, 1)), d


def test_trunk_params_groups_and_encoding():
  learner, d = _learner()
  assert d == 2 * 2 * 16  # 28 -> 13 -> 6 -> 2
  params = learner.init_params(jax.random.key(0))
  assert set(params) == {"ff", "fb", "alpha", "beta", "trunk"}
  assert learners.group_names(learner)[-1] == "trunk"
  labels = learners.param_labels(params, learner)
  assert set(jax.tree.leaves(labels["trunk"])) == {"trunk"}
  assert labels["alpha"] == {"0": "alpha", "1": "alpha_readout"}
  x = jnp.ones((5, 28, 28, 1))
  h = learner.encode(params, x)
  want = SmallCNN().apply(params["trunk"], x).reshape(5, -1)
  np.testing.assert_array_equal(h, want)
  # Only the trunk's group moves when only its rate is set.
  opt = meta.make_optimizer({"trunk": 1e-2}, learner)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = opt.update(grads, opt.init(params), params)
  assert all(float(jnp.max(jnp.abs(u))) > 0 for u in jax.tree.leaves(updates["trunk"]))
  assert all(float(jnp.max(jnp.abs(u))) == 0 for u in jax.tree.leaves(updates["ff"]))
  with pytest.raises(ValueError, match="already has a trunk"):
    learners.with_trunk(learner, SmallCNN(), (28, 28, 1))


@needs_omniglot
@pytest.mark.slow
def test_flax_trunk_under_flp_learns_omniglot(monkeypatch, data_cache):
  """A flax CNN trunk + FLP (2) head, meta-trained briefly, beats chance on unseen classes."""
  monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(data_cache))
  train_images = datasets.load_split("omniglot", "train", image_size=28)
  test_images = datasets.load_split("omniglot", "test", image_size=28)
  task = fewshot.make_train_task(train_images, dataset="omniglot")
  test = fewshot.make_test_task(test_images, dataset="omniglot", support_pool=15)
  learner, _ = _learner()
  opt = meta.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-2, "trunk": 1e-3}, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  step = meta.make_meta_step(full.make(learner, task), opt)

  def accuracy(params):
    def one(key):
      k_episode, k_init = jax.random.split(key)
      episode = test.sample(k_episode, test.data)
      pred = lifetime.query_predictions(learner, params, episode, key=k_init)
      return jnp.mean(jnp.argmax(pred, -1) == episode.yq)
    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), 60)))

  trunk_before = jax.tree.map(np.asarray, state.params["trunk"])
  for i in range(300):
    state, _ = step(state, jax.random.fold_in(jax.random.key(1), i), task.data)
  acc = accuracy(state.params)
  # 5-way: chance is 0.2; 60 lifetimes of 25 query images of unseen classes.
  assert acc.mean() > 0.28 and acc.mean() - 4 * acc.std() / np.sqrt(len(acc)) > 0.2, acc.mean()
  moved = [float(np.max(np.abs(a - b))) for a, b in
           zip(jax.tree.leaves(state.params["trunk"]), jax.tree.leaves(trunk_before))]
  assert max(moved) > 0  # the trunk is meta-learned


# ----------------------------------------------------------------------------- flpjax.trunks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(arg: str, trunk: str, **fields):
  """An experiment config string's config with ``net.trunk`` and other fields set."""
  config = config_lib.load_file(os.path.join(REPO, "experiments", "configs", arg))
  config.net.trunk = trunk
  for path, value in fields.items():
    config_lib.set_field(config, path.replace("__", "."), value)
  return config


def _registry_learner(config):
  """The learner of ``config`` as every binary builds it (``config.net.trunk`` applied)."""
  config_lib.validate(config)
  return config_lib.make_learner(config)


def _meta_train(config, learner, task, steps):
  """``steps`` meta-steps; the mean query loss of 16 fixed lifetimes before and after."""
  opt = config_lib.make_optimizer(config, learner)
  state = meta.init_state(learner, opt, jax.random.key(0))
  step = meta.make_meta_step(config_lib.make_estimator(config, learner, task), opt)

  @jax.jit
  def test_loss(params):
    def one(key):
      episode = task.sample(key, task.data)
      return lifetime.query_loss(learner, params, episode, types.loss_fn(task.output),
                                 key=key)[0]
    return jnp.mean(jax.vmap(one)(jax.random.split(jax.random.key(99), 16)))

  before = float(test_loss(state.params))
  for i in range(steps):
    state, m = step(state, jax.random.key(i), task.data)
    assert np.isfinite(float(m["loss"]))
  return state, before, float(test_loss(state.params))


def test_flax_mlp_and_convnet_compute_the_built_in_trunks():
  """Same function as `nets.apply` on the same weights; `nets.conv2d`'s VJP; `nets.init`'s law."""
  mlp = nets.regression_mlp((16, 24, 8))
  ff = nets.init(jax.random.key(0), mlp, (11,))
  x = jax.random.normal(jax.random.key(1), (5, 11))
  got = trunks.MLP(mlp[:3]).apply(trunks.to_variables(mlp[:3], ff[:3]), x)
  np.testing.assert_array_equal(got, nets.apply(mlp[:3], ff[:3], x))

  convs = nets.conv_classifier(8, 16, 10, (2, 1, 2))
  ff = nets.init(jax.random.key(0), convs, (28, 28, 1))
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  net = trunks.ConvNet(convs[:4])  # three convolutions and the first dense layer
  variables = trunks.to_variables(convs[:4], ff[:4])
  np.testing.assert_allclose(net.apply(variables, x), nets.apply(convs[:4], ff[:4], x),
                             rtol=1e-6, atol=1e-6)
  assert trunks.ConvNet(convs[:3]).apply(trunks.to_variables(convs[:3], ff[:3]), x).shape == (
      4, 5, 5, 8)  # 28 -> 13 -> 11 -> 5
  grad = jax.make_jaxpr(jax.grad(lambda v: jnp.sum(net.apply(v, x))))(variables)
  assert "platform_index" in str(grad)  # nets.conv2d's backward: matmuls on the CPU

  wide = trunks.MLP((nets.Dense(256),)).init(jax.random.key(2), jnp.zeros((1, 400)))
  kernel = wide["params"]["layer0"]["kernel"]
  assert kernel.shape == (400, 256)
  assert abs(float(kernel.std()) / np.sqrt(2 / 400) - 1) < 0.02  # He normal, untruncated
  assert float(jnp.max(jnp.abs(kernel))) > 2.5 * np.sqrt(2 / 400)
  assert not np.any(wide["params"]["layer0"]["bias"])
  with pytest.raises(ValueError, match="ConvNet: expected nets.Conv layers"):
    trunks.ConvNet(mlp[:2]).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


class _StatsAndDropout(nn.Module):
  """Dense -> BatchNorm (batch statistics) -> dropout, (N, 3) -> (N, 32); sows its features."""

  @nn.compact
  def __call__(self, x):
    x = nn.BatchNorm(use_running_average=False)(nn.Dense(32)(x))
    self.sow("intermediates", "features", x)
    return nn.Dropout(0.5, deterministic=False)(nn.relu(x))


def test_state_is_read_never_written_and_dropout_is_keyed_by_the_inputs():
  trunk = trunk_lib.read_only_state(_StatsAndDropout())
  x = jax.random.normal(jax.random.key(0), (64, 3))
  variables = trunk.init(jax.random.key(1), x[:1])
  assert set(variables) == {"params", "batch_stats"}  # no 'intermediates'
  y = jax.jit(trunk.apply)(variables, x)
  np.testing.assert_array_equal(y, trunk.apply(variables, x))  # same inputs, same masks
  dropped = float(jnp.mean(y == 0))
  assert 0.6 < dropped < 0.9, dropped  # ReLU zeros and dropout's half of the rest
  other = trunk.apply(variables, x + 1e-3)
  assert float(jnp.mean((y == 0) != (other == 0))) > 0.2  # other inputs, other masks
  grads = jax.grad(lambda v: jnp.sum(trunk.apply(v, x) ** 2))(
      jax.tree.map(lambda a: a + 0.5, variables))  # running statistics that are not zero
  assert all(not np.any(g) for g in jax.tree.leaves(grads["batch_stats"]))
  assert all(np.any(g) for g in jax.tree.leaves(grads["params"]["Dense_0"]))


class _Noisy(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(x) + jax.random.normal(self.make_rng("noise"), (x.shape[0], 4))


class _NnxNoisy(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.dense = nnx.Linear(3, 4, rngs=rngs)
    self.rngs = rngs

  def __call__(self, x):
    return self.dense(x) + jax.random.normal(self.rngs.noise(), (x.shape[0], 4))


@pytest.mark.parametrize("module, name", [(_Noisy(), "_Noisy"),
                                          (nnx.bridge.to_linen(_NnxNoisy), "_NnxNoisy")])
def test_another_rng_stream_is_refused_in_one_line(module, name):
  head = learners.flp(nets.regression_mlp((8,)), (4,), 2)
  with pytest.raises(ValueError) as e:
    learners.with_trunk(head, module, (3,))
  assert str(e.value) == (f"flax trunk {name}: uses the rng stream 'noise'; a trunk gets only "
                          "'dropout' (keyed by its inputs, learners.trunk.input_key)")


class _NnxBatchNorm(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.dense = nnx.Linear(6, 16, rngs=rngs)  # reduced sine: (N, 6)
    self.norm = nnx.BatchNorm(16, rngs=rngs)
    self.drop = nnx.Dropout(0.2, rngs=rngs)

  def __call__(self, x):
    return self.drop(nnx.relu(self.norm(self.dense(x))))


def test_an_nnx_module_through_the_bridge():
  config = _config("sine.py:row=flp3,order=iid,scale=reduced", f"{__name__}:_NnxBatchNorm")
  learner = _registry_learner(config)
  params = learner.init_params(jax.random.key(0))
  assert set(params["trunk"]) == {"params", "batch_stats"}
  x = jax.random.normal(jax.random.key(1), (8,) + config_lib.network(config)[1])
  h = jax.jit(learner.encode)(params, x)
  assert h.shape == (8, 16) and float(jnp.mean(h == 0)) > 0.2


@pytest.mark.parametrize("trunk, fields, message", [
    ("conv", {}, ("config.net.trunk='conv': expected '' (the built-in frozen layers), 'mlp', "
                  "'conv', or 'package.module:attr' (a flax.linen.Module class, a zero-argument "
                  "factory of one, or an nnx.Module class); 'conv' replaces convolutions; these "
                  "frozen layers are dense: use 'mlp'")),
    ("mlp", {"plastic_layers": 9}, "there are no frozen layers"),
    ("no_such_package.mod:Net", {}, "ModuleNotFoundError: No module named 'no_such_package'"),
    ("flpjax.nets:REGRESSION_WIDTHS", {}, "gives a tuple, not a flax.linen.Module"),
    ("flpjax.trunks", {}, "not of the form 'package.module:attr'"),
    (f"{__name__}:_Noisy", {}, "uses the rng stream 'noise'"),
    (f"{__name__}:SmallCNN", {}, ("config.net.trunk='test_trunk:SmallCNN': expected a flax "
                                  "module that runs on inputs (N, 6): conv_general_dilated")),
    ("mlp", {"estimator": "oml", "learner": "gradient"}, "'' with estimator='oml'"),
    ("mlp", {"init_ff_from": "workdirs/x"}, "'' with config.init_ff_from"),
])
def test_bad_trunks_stop_with_one_line(trunk, fields, message):
  config = _config("sine.py:row=flp3,order=iid,scale=reduced", trunk, **fields)
  layers, input_shape = config_lib.network(config)
  with pytest.raises(config_lib.ConfigError) as e:
    trunks.validate_config(config, layers, input_shape)
  text = str(e.value)
  assert "\n" not in text and message.replace("test_trunk", __name__) in text, text
  assert text.startswith(f"config.net.trunk={trunk!r}: expected ")


def test_a_trunk_that_is_not_a_string_is_refused_by_the_config_itself():
  config = config_lib.load_file("experiments/configs/sine.py:row=flp3,order=iid,scale=reduced")
  with pytest.raises(TypeError, match="Could not override field 'trunk'"):
    config.net.trunk = 3  # the field is typed: '' by default


def test_conv_trunk_on_the_classification_network():
  config = _config("fewshot.py:dataset=omniglot,row=flp2,scale=reduced", "conv")
  layers, input_shape = config_lib.network(config)
  trunks.validate_config(config, layers, input_shape)
  with pytest.raises(config_lib.ConfigError, match="'mlp' replaces dense layers only"):
    config.net.trunk = "mlp"
    trunks.validate_config(config, layers, input_shape)
  config.net.trunk = "conv"
  learner = _registry_learner(config)
  params = jax.eval_shape(learner.init_params, jax.random.key(0))
  assert [p["w"].shape for p in params["ff"]] == [(64, 128), (1000, 64)]  # the plastic head
  assert set(params["trunk"]["params"]) == {"layer0", "layer1", "layer2"}
  assert params["trunk"]["params"]["layer2"]["kernel"].shape == (3, 3, 32, 32)
  lrs = config_lib.meta_lrs(config, learner)
  assert lrs["trunk"] == config.meta.lr.ff == 1e-3  # the frozen layers' rate
  assert learner.input_shape == input_shape


def test_the_default_is_the_built_in_trunk():
  config = config_lib.load_file(os.path.join(
      REPO, "experiments", "configs", "sine.py:row=flp3,order=iid,scale=reduced"))
  for trunk in (None, ""):  # a config without the field, and the default
    if trunk is not None:
      config.net.trunk = trunk
    plugin = config_lib.build.learner_plugin(config)  # the learner without any trunk
    want = plugin.from_config(config, *config_lib.network(config), config_lib.output_kind(config))
    learner = _registry_learner(config)
    assert learner.groups == want.groups and learner.plastic_layers == want.plastic_layers
    jax.tree.map(np.testing.assert_array_equal, learner.init_params(jax.random.key(0)),
                 want.init_params(jax.random.key(0)))


@pytest.mark.slow
def test_mlp_trunk_meta_trains_sine_from_a_config_string():
  config = _config("sine.py:row=flp3,order=iid,scale=reduced", "mlp")
  learner = _registry_learner(config)
  assert learners.group_names(learner)[-1] == "trunk"
  task = config_lib.make_tasks(config)[0]
  _, before, after = _meta_train(config, learner, task, 30)
  assert after < 0.8 * before, (before, after)


class BatchNormCNN(nn.Module):
  """A user's trunk: strided `trunks.Conv` + BatchNorm + ReLU, three times, then dropout."""

  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = nn.relu(nn.BatchNorm(use_running_average=False)(trunks.Conv(16, 3, 2)(x)))
    return nn.Dropout(0.1, deterministic=False)(x)


def _prototype_images(classes=20, per_class=10, size=28, seed=0):
  """uint8 images: a random prototype per class plus noise (classes to tell apart)."""
  rng = np.random.default_rng(seed)
  protos = rng.integers(0, 256, (classes, 1, size, size, 1))
  noise = rng.normal(0, 40, (classes, per_class, size, size, 1))
  return np.clip(protos + noise, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_stateful_user_trunk_meta_trains_fewshot_from_a_config_string():
  config = _config("fewshot.py:dataset=omniglot,row=flp2,scale=reduced",
                   f"{__name__}:BatchNormCNN")
  learner = _registry_learner(config)
  task = fewshot.make_train_task(_prototype_images(), dataset="omniglot", ways=5, shots=5,
                                 queries=5)
  params = learner.init_params(jax.random.key(0))
  assert set(params["trunk"]) == {"params", "batch_stats"}
  state, before, after = _meta_train(config, learner, task, 30)
  assert after < 0.8 * before, (before, after)
  jax.tree.map(np.testing.assert_array_equal, state.params["trunk"]["batch_stats"],
               params["trunk"]["batch_stats"])  # statistics are read, never written
