"""Your own flax trunk in front of FLP's plastic layers, a stateful one (BatchNorm) included.

The trunk is any `flax.linen.Module`: meta-learned like the rest (the group
``'trunk'``, its own rate) but fixed within a lifetime, where it encodes every
example once, outside the scan. `flpjax.learners.with_trunk` puts it in front
of a learner whose input is the trunk's flattened output
(`flpjax.learners.trunk_features`). Its collections besides ``'params'``
(here BatchNorm's ``'batch_stats'``) are part of the meta-parameters and read,
never written, in a lifetime: in training mode BatchNorm normalises with the
statistics of the examples encoded together (one lifetime's).

    python examples/flax_trunk.py [--steps=10]    # seconds on a CPU
"""

import argparse

import flax.linen as nn
import jax

import flpjax
from flpjax import estimators, evaluate, learners, nets
from flpjax.tasks import sine


class Trunk(nn.Module):
  """Dense -> BatchNorm -> ReLU, ``(N, 3) -> (N, 32)``."""

  features: int = 32

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.features)(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    return nn.relu(x)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=10, help="meta-steps")
  args = parser.parse_args(argv)

  size = dict(n_functions=2, steps_per_function=4, batch_size=4, queries_per_function=8)
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 50), **size)
  trunk = Trunk()
  width = learners.trunk_features(trunk, task.input_shape)  # 32
  head = learners.flp(nets.regression_mlp((32,)), (width,), 2, init_alpha=1e-3)
  learner = learners.with_trunk(head, trunk, task.input_shape)
  params = learner.init_params(jax.random.key(0))
  print("trunk variables:", jax.tree.map(lambda a: a.shape, params["trunk"]))
  print("groups:", flpjax.group_names(learner))  # ..., 'trunk'

  opt = flpjax.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-3, "beta": 1e-3,
                               "trunk": 1e-3}, learner)
  state = flpjax.init_state(learner, opt, jax.random.key(0))
  step = flpjax.make_meta_step(estimators.full.make(learner, task), opt)
  keys = jax.random.split(jax.random.key(99), 16)
  test_mse = jax.jit(lambda p: evaluate.lifetime_metrics(learner, task, p, keys, task.data)["mse"])
  before = float(test_mse(state.params).mean())
  losses = []
  for s in range(args.steps):
    state, metrics = step(state, jax.random.key(s), task.data)
    losses.append(float(metrics["loss"]))
  after = float(test_mse(state.params).mean())
  print(f"meta-loss {losses[0]:.3f} -> {losses[-1]:.3f}; query MSE over {keys.shape[0]} "
        f"lifetimes {before:.3f} -> {after:.3f}")
  return {"losses": losses, "before": before, "after": after}


if __name__ == "__main__":
  main()
