"""FLP in your own training loop, with your own optax optimizer.

A small FLP network meta-learns incremental sine waves in a plain JAX loop:
`jax.value_and_grad` through whole lifetimes (`estimators.full.make_loss`), an
optax optimizer of your own built over the learner's parameter groups
(`flpjax.param_labels`), and `flpjax.evaluate.lifetime_metrics` inside `jax.jit`.
The library's step, `flpjax.make_meta_step(estimator, opt)` (it also skips
non-finite steps), takes the same optimizer; the README shows it.

    python examples/own_training_loop.py [--steps=30]    # seconds on a CPU
"""

import argparse

import jax
import optax

import flpjax
from flpjax import estimators, evaluate, nets
from flpjax.tasks import sine


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=30, help="meta-steps")
  args = parser.parse_args(argv)

  # Lifetimes of 2 sine functions x 4 batches of 4 points (the paper: 10 x 40 x 32), and a
  # 2-hidden-layer network, both plastic (the paper: nets.regression_mlp(), 9 layers).
  size = dict(n_functions=2, steps_per_function=4, batch_size=4, queries_per_function=8)
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 50), order="continual",
                        **size)
  test_task = sine.make_task(pool=None, order="continual", **size)  # fresh functions
  learner = flpjax.flp(nets.regression_mlp((32, 32)), task.input_shape, 2, init_alpha=1e-3)
  params = learner.init_params(jax.random.key(0))

  # Your own optimizer: one transformation per group of the parameter tree.
  labels = flpjax.param_labels(params, learner)  # 'ff', 'fb', 'alpha', 'alpha_readout', 'beta'
  opt = optax.chain(
      optax.clip_by_global_norm(10.0),
      optax.multi_transform({"ff": optax.adamw(1e-3, weight_decay=1e-4),
                             "fb": optax.adam(1e-3), "alpha": optax.adam(1e-3),
                             "alpha_readout": optax.adam(1e-3), "beta": optax.sgd(1e-2)},
                            labels))
  opt_state = opt.init(params)
  meta_loss = estimators.full.make_loss(learner, task, meta_batch=4)  # (params, key, data)

  @jax.jit
  def train_step(params, opt_state, key, data):
    loss, grads = jax.value_and_grad(meta_loss)(params, key, data)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  keys = jax.random.split(jax.random.key(99), 32)
  test_mse = jax.jit(lambda p: evaluate.lifetime_metrics(learner, test_task, p, keys, None)["mse"])
  before = test_mse(params)  # (32,): one MSE per meta-test lifetime
  for step in range(args.steps):
    params, opt_state, loss = train_step(params, opt_state, jax.random.key(step), task.data)
    if (step + 1) % 10 == 0:
      print(f"meta-step {step + 1}: meta-loss {float(loss):.3f}")
  after = test_mse(params)
  print(f"meta-test MSE over {keys.shape[0]} lifetimes: {float(before.mean()):.3f} before, "
        f"{float(after.mean()):.3f} after {args.steps} meta-steps")

  return {"before": float(before.mean()), "after": float(after.mean())}


if __name__ == "__main__":
  main()
