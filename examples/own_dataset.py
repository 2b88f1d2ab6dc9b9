"""Your own task from arrays you already have: one example per lifetime step.

A task is a `flpjax.Task`: ``sample(key, data) -> flpjax.Episode``, pure and
jittable, with ``data`` the arrays it reads (passed as an argument, so jit does
not bake them into the program), the output kind, the shape of one input
example and the output width. Here: N-way classification from a feature
matrix ``x (N, d)`` and integer labels ``y (N,)``. Every lifetime picks
``ways`` classes, streams ``shots`` examples of each, one per step, in random
order (``xs (T, 1, d)``, ``ys (T, 1)``), and is scored on ``queries`` other
examples of each class. FLP learns it with the target as feedback and a
clamped readout, as for Omniglot.

    python examples/own_dataset.py                      # synthetic arrays
    python examples/own_dataset.py --data=mine.npz      # numpy.savez('mine.npz', x=x, y=y)
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import flpjax
from flpjax import estimators, evaluate, nets


def by_class(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """``(classes, per_class, d)``: the examples of every class (as many per class as the
  smallest class has)."""
  classes = np.unique(y)
  per_class = min(int(np.sum(y == c)) for c in classes)
  return np.stack([x[y == c][:per_class] for c in classes]).astype(np.float32)


def make_task(data: np.ndarray, *, ways: int = 3, shots: int = 4, queries: int = 4) -> flpjax.Task:
  """An N-way k-shot `flpjax.Task` over ``data (classes, per_class, d)``, one example per step."""
  n_classes, per_class, d = data.shape
  if n_classes < ways or per_class < shots + queries:
    raise ValueError(f"data {data.shape}: {ways}-way episodes need {ways} classes of "
                     f"{shots + queries} examples")

  def sample(key, data):
    k_classes, k_examples, k_order = jax.random.split(key, 3)
    classes = jax.random.choice(k_classes, data.shape[0], (ways,), replace=False)
    picks = jax.vmap(lambda k: jax.random.permutation(k, data.shape[1])[:shots + queries])(
        jax.random.split(k_examples, ways))  # (ways, shots + queries)
    examples = data[classes[:, None], picks]  # (ways, shots + queries, d)
    labels = jnp.broadcast_to(jnp.arange(ways)[:, None], (ways, shots + queries))
    xs, ys = examples[:, :shots].reshape(-1, d), labels[:, :shots].reshape(-1)
    order = jax.random.permutation(k_order, ways * shots)  # i.i.d. stream order
    return flpjax.Episode(xs[order][:, None], ys[order][:, None],  # (T, 1, d), (T, 1)
                          examples[:, shots:].reshape(-1, d), labels[:, shots:].reshape(-1))

  return flpjax.Task(sample, jnp.asarray(data), "classification", (d,), ways)


def synthetic(key: int = 0, classes: int = 12, per_class: int = 20, d: int = 16):
  """Stand-ins for your arrays: ``x (N, d)`` around one random centre per class, ``y (N,)``."""
  rng = np.random.default_rng(key)
  centres = rng.normal(size=(classes, d))
  y = np.repeat(np.arange(classes), per_class)
  return centres[y] + 0.5 * rng.normal(size=(y.size, d)), y


def load(path: str):
  """``(x, y)`` from an ``.npz`` file with arrays ``x (N, d)`` and ``y (N,)``."""
  if not os.path.isfile(path):
    sys.exit(f"error: --data={path}: no such file; put your arrays there with "
             "numpy.savez(PATH, x=x, y=y) (x: (N, d) floats, y: (N,) integer labels), or leave "
             "--data out to use synthetic arrays")
  with np.load(path) as f:
    if "x" not in f or "y" not in f:
      sys.exit(f"error: --data={path}: expected arrays 'x' (N, d) and 'y' (N,), found "
               f"{sorted(f.files)}")
    return f["x"], f["y"]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default="", help=".npz with arrays x (N, d) and y (N,)")
  parser.add_argument("--steps", type=int, default=20, help="meta-steps")
  args = parser.parse_args(argv)

  x, y = load(args.data) if args.data else synthetic()
  data = by_class(np.asarray(x), np.asarray(y))
  train, test = data[: len(data) * 2 // 3], data[len(data) * 2 // 3:]  # disjoint classes
  task, test_task = make_task(train), make_task(test)
  steps = jax.eval_shape(task.sample, jax.random.key(0), task.data).xs.shape[0]  # no compiling
  print(f"{data.shape[0]} classes of {data.shape[1]} examples of {data.shape[2]} features; "
        f"lifetimes of {steps} steps")

  # The readout is `ways` wide, clamped to the one-hot target; the target is the feedback.
  learner = flpjax.flp(nets.regression_mlp((32,), outputs=task.output_dim), task.input_shape, 2,
                       output="classification", signal="target", clamp_readout=True,
                       init_alpha=1e-2, init_beta=1.0)
  opt = flpjax.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-3, "beta": 1e-3}, learner)
  state = flpjax.init_state(learner, opt, jax.random.key(0))
  step = flpjax.make_meta_step(estimators.full.make(learner, task, meta_batch=4), opt)
  keys = jax.random.split(jax.random.key(99), 32)
  accuracy = jax.jit(lambda p, d: evaluate.lifetime_metrics(learner, test_task, p, keys, d)[
      "accuracy"])
  before = float(accuracy(state.params, test_task.data).mean())
  for s in range(args.steps):
    state, metrics = step(state, jax.random.key(s), task.data)
  after = float(accuracy(state.params, test_task.data).mean())
  print(f"meta-test accuracy on unseen classes ({task.output_dim}-way): {before:.2f} before, "
        f"{after:.2f} after {args.steps} meta-steps (chance {1 / task.output_dim:.2f})")
  return {"before": before, "after": after}


if __name__ == "__main__":
  main()
