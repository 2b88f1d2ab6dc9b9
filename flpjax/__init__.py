"""flpjax: meta-learning feedback and local plasticity (Lindsey & Litwin-Kumar, NeurIPS 2020) in JAX.

The names most used from your own JAX code are here; each lives in a submodule:

* learners (`flpjax.learners`): `flp`, `gradient`, `dfa`, `fa`, `learned_rule`,
  `plastic_feedback`, `with_trunk` (your own flax trunk); the `Learner` they
  return; `param_labels` (the optimizer group of every meta-parameter).
* a lifetime (`flpjax.lifetime`): `run`, `predict`, `query_loss`, pure and
  composable with ``jit``, ``vmap`` and ``grad``.
* meta-training (`flpjax.meta`, `flpjax.estimators`): `make_optimizer`,
  `init_state`, `make_meta_step` (any optax optimizer), `init_states`,
  `make_runs_meta_step`, `set_learning_rates`, `TrainState`; estimators
  ``estimators.full``, ``truncated``, ``es``; the original OML procedure is
  `flpjax.protocols.oml`.
* evaluation (`flpjax.evaluate`): `lifetime_metrics` (jittable arrays),
  `evaluate` (mean and standard error on the host).
* data (`flpjax.types`, `flpjax.tasks`): `Episode`, `Task`; ``tasks.sine``,
  ``tasks.fewshot``.
* networks and local rules: `flpjax.nets`, `flpjax.plasticity`, `flpjax.feedback`.

The experiment code (`flpjax.train`, `flpjax.config`, `flpjax.experiment`,
`flpjax.datasets`, `flpjax.analysis`, `flpjax.protocols`, `flpjax.parallel`, ...)
is imported when first used.

Example:
  >>> import jax, flpjax
  >>> from flpjax.tasks import sine
  >>> task = sine.make_task(pool=None, n_functions=2, steps_per_function=5, batch_size=4)
  >>> learner = flpjax.flp(flpjax.nets.regression_mlp((32, 32)), task.input_shape, 2)
  >>> opt = flpjax.make_optimizer(flpjax.meta.PAPER_REGRESSION_LRS, learner)
  >>> state = flpjax.init_state(learner, opt, jax.random.key(0))
  >>> step = flpjax.make_meta_step(flpjax.estimators.full.make(learner, task), opt)
  >>> state, metrics = step(state, jax.random.key(1), task.data)
"""

from __future__ import annotations

import importlib as _importlib
from importlib import metadata as _metadata

from flpjax import estimators, evaluate, feedback, learners, lifetime, meta, nets, plasticity
from flpjax import tasks, types
from flpjax.evaluate import lifetime_metrics, summarize
from flpjax.learners import (Learner, dfa, fa, flp, gradient, group_names, learned_rule,
                             param_labels, plastic_feedback, with_trunk)
from flpjax.lifetime import predict, query_loss, run
from flpjax.meta import (TrainState, init_state, init_states, make_meta_step, make_optimizer,
                         make_runs_meta_step, set_learning_rates)
from flpjax.tasks import fewshot as _fewshot  # noqa: F401  (flpjax.tasks.fewshot)
from flpjax.tasks import sine as _sine  # noqa: F401  (flpjax.tasks.sine)
from flpjax.types import Episode, Group, Task

try:
  __version__ = _metadata.version("flpjax")
except _metadata.PackageNotFoundError:  # imported from a source tree that is not installed
  __version__ = "0+unknown"

#: Submodules imported on first use (they pull in orbax, tensorflow-datasets, matplotlib).
_LAZY = ("analysis", "config", "datasets", "experiment", "parallel", "plots", "protocols",
         "reporting", "reproduction", "train", "trunks", "universality")

__all__ = [
    "Episode", "Group", "Learner", "Task", "TrainState", "__version__", "dfa", "estimators",
    "evaluate", "fa", "feedback", "flp", "gradient", "group_names", "init_state", "init_states",
    "learned_rule", "learners", "lifetime", "lifetime_metrics", "make_meta_step",
    "make_optimizer", "make_runs_meta_step", "meta", "nets", "param_labels",
    "plastic_feedback", "plasticity", "predict", "query_loss", "run", "set_learning_rates",
    "summarize", "tasks", "types", "with_trunk",
    # imported on first use:
    *_LAZY,
]


def __getattr__(name: str):
  if name in _LAZY:
    return _importlib.import_module(f"flpjax.{name}")
  raise AttributeError(f"module 'flpjax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY))
