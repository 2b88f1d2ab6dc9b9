"""A sweep of meta-learning rates as one vmapped program.

Several networks, one per plasticity meta-learning rate, meta-train side by
side: `flpjax.init_states` gives every leaf of the training state a leading run
axis, `flpjax.set_learning_rates` gives each run its own rate, and
`flpjax.make_runs_meta_step` is the meta-step of all runs as one `jax.vmap`ped,
jitted program. The runs are then evaluated together by vmapping
`flpjax.evaluate.lifetime_metrics` over their parameters.

    python examples/sweep_learning_rates.py [--steps=20]    # seconds on a CPU
"""

import argparse

import jax
import jax.numpy as jnp

import flpjax
from flpjax import estimators, evaluate, nets
from flpjax.tasks import sine


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=20, help="meta-steps")
  args = parser.parse_args(argv)

  size = dict(n_functions=2, steps_per_function=4, batch_size=4, queries_per_function=8)
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 50), **size)
  test_task = sine.make_task(pool=None, **size)
  learner = flpjax.flp(nets.regression_mlp((32, 32)), task.input_shape, 2, init_alpha=1e-3)

  rates = jnp.array([0.0, 1e-4, 1e-3])  # plasticity ('alpha') rates, one per run
  runs = rates.shape[0]
  # One Adam per group; 'alpha' needs a rate > 0 here so that it has one to set per run.
  opt = flpjax.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-3, "beta": 1e-3}, learner)
  # The same seed for every run: the runs differ only by their rate.
  states = flpjax.init_states(learner, opt, jnp.stack([jax.random.key(0)] * runs))
  states = states._replace(opt_state=flpjax.set_learning_rates(
      states.opt_state, {"alpha": rates, "alpha_readout": rates}))
  step = flpjax.make_runs_meta_step(estimators.full.make(learner, task), opt)

  for s in range(args.steps):
    keys = jax.random.split(jax.random.key(s), runs)  # each run its own lifetimes
    states, metrics = step(states, keys, task.data)  # metrics: arrays (runs,)

  eval_keys = jax.random.split(jax.random.key(99), 32)
  per_run = jax.jit(jax.vmap(
      lambda p: evaluate.lifetime_metrics(learner, test_task, p, eval_keys, None)))
  mse = per_run(states.params)["mse"]  # (runs, lifetimes)
  summary = [evaluate.summarize({"mse": m}) for m in mse]
  for rate, r in zip(rates.tolist(), summary):
    print(f"alpha rate {rate:g}: meta-test MSE {r['mse']:.3f} +- {r['mse_stderr']:.3f}")
  best = min(range(runs), key=lambda r: summary[r]["mse"])
  print(f"best rate: {float(rates[best]):g} (chosen here on meta-test lifetimes; "
        "choose on validation data in a real sweep)")
  return [r["mse"] for r in summary]


if __name__ == "__main__":
  main()
