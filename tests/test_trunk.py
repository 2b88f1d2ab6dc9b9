"""A user's flax module as the frozen trunk (`learners.with_trunk`): structure, and Omniglot learning."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import datasets, learners, lifetime, meta, nets
from flpjax.estimators import full
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
    state, m = step(state, jax.random.fold_in(jax.random.key(1), i), task.data)
  acc = accuracy(state.params)
  # 5-way: chance is 0.2; 60 lifetimes of 25 query images of unseen classes.
  assert acc.mean() > 0.28 and acc.mean() - 4 * acc.std() / np.sqrt(len(acc)) > 0.2, acc.mean()
  moved = [float(np.max(np.abs(a - b))) for a, b in
           zip(jax.tree.leaves(state.params["trunk"]), jax.tree.leaves(trunk_before))]
  assert max(moved) > 0  # the trunk is meta-learned
