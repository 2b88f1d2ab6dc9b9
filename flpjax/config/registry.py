"""Names in a config (``config.task``, ``config.learner``, ``config.estimator``) to plug-ins.

The registry only names: each entry is the import path of a *plug-in*, a
module (or ``'module:attribute'``, an object) that owns everything the
framework needs to configure, check and build it. Adding one is one module
and one `register` call (or one line in the tables below):

  >>> from flpjax import config as config_lib
  >>> config_lib.register("learner", "mine", "my_package.my_learner")
  >>> c = config_lib.load_file("experiments/configs/sine.py:row=flp3")
  >>> c.learner = "mine"

What a plug-in defines (module-level names; optional ones may be absent):

* every kind: ``CONFIG`` (optional): ``{section: {field: default}}``, the
  config sections it owns, merged into `flpjax.config.schema.base_config`
  (two plug-ins may share a section if they agree on its defaults);
  ``validate_config(config)`` (optional): checks its sections, raising
  `flpjax.config.checks.ConfigError` (``checks.fail``) naming the field.
* a learner: ``GROUPS``: its meta-parameter groups (`flpjax.types.Group`), whose
  meta-learning rates become ``config.meta.lr.<group>``;
  ``from_config(config, layers, input_shape, output) -> Learner``; ``READS``
  (optional): other plug-ins' sections it reads (e.g. ``('flp',)``).
* a task: ``OUTPUT`` (``'regression'`` or ``'classification'``);
  ``network(config) -> (layers, input_shape)``; ``lifetime_steps(config)``;
  ``train_task(config)``, ``test_task(config)``, ``validation_task(config)``
  (each a `flpjax.types.Task`); ``check_inputs(config)`` (optional): every data
  file a run reads, checked before anything is loaded.
* an estimator: ``from_config(config, learner, task) -> Estimator``;
  ``STORES_LIFETIME`` (bool: its memory grows with the lifetime); optional:
  ``LEARNERS`` (the learners it combines with), and, for an estimator that is a
  whole protocol of its own (the original OML), ``train_task(config)`` (its
  meta-training task), ``train_lifetime_steps(config)`` (that task's ``T``) and
  ``evaluate(config, params, lifetimes)``.
"""

from __future__ import annotations

import importlib
from typing import Any

KINDS = ("task", "learner", "estimator")

#: Built-in plug-ins: name -> import path.
TASKS = {
    "sine": "flpjax.tasks.sine",
    "omniglot": "flpjax.tasks.fewshot",
    "mini_imagenet": "flpjax.tasks.fewshot",
    "custom": "flpjax.tasks.fewshot",  # a few-shot data set of your own: config.custom
}
LEARNERS = {
    "flp": "flpjax.learners.flp",
    "gradient": "flpjax.learners.gradient",
    "dfa": "flpjax.learners.dfa",
    "fa": "flpjax.learners.fa",
    "plastic_feedback": "flpjax.learners.plastic_feedback",
    "learned_rule": "flpjax.learners.rules",
}
ESTIMATORS = {
    "full": "flpjax.estimators.full",
    "truncated": "flpjax.estimators.truncated",
    "es": "flpjax.estimators.es",
    "pes": "flpjax.estimators.es:PES",
    "oml": "flpjax.protocols.oml",
}
_TABLES = {"task": TASKS, "learner": LEARNERS, "estimator": ESTIMATORS}


def register(kind: str, name: str, plugin: Any) -> None:
  """Makes ``plugin`` (an import path ``'pkg.mod'`` / ``'pkg.mod:attr'``, or the module or
  object itself) available as ``config.<kind> = name``. Re-registering a name replaces it."""
  if kind not in _TABLES:
    raise ValueError(f"register: kind {kind!r}; expected one of {KINDS}")
  if not isinstance(name, str) or not name:
    raise ValueError(f"register: name {name!r}; expected a non-empty string")
  _TABLES[kind][name] = plugin


def unregister(kind: str, name: str) -> None:
  """Removes the name ``name`` of ``kind`` (e.g. after a test)."""
  del _TABLES[kind][name]


def names(kind: str) -> tuple[str, ...]:
  """The registered names of ``kind``."""
  return tuple(_TABLES[kind])


def get(kind: str, name: str) -> Any:
  """The plug-in named ``name`` (imported on first use)."""
  plugin = _TABLES[kind][name]
  if isinstance(plugin, str):
    path, _, attr = plugin.partition(":")
    plugin = importlib.import_module(path)
    if attr:
      plugin = getattr(plugin, attr)
  return plugin
