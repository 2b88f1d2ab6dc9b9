"""Learners: what one lifetime step does (`base.Learner`).

* `flp`: feedback and local plasticity (the paper's learner).
* `gradient`: inner SGD on the plastic layers (exact gradients; OML-style baseline).
* `dfa`: direct feedback alignment; `fa`: feedback alignment (Figure 1's family).
* `learned_rule`: FLP whose local rule is meta-learned (generalised Hebbian, with Oja and
  Hebb as exact special cases; or a small MLP).
* `plastic_feedback`: FLP with plastic feedback B (meta-learned rate) and feedback
  from the layer above (section 8.1).
* `with_trunk`: any of them behind a flax module of your own (the frozen trunk).

Every constructor takes the shape of one input example (``input_shape``) and
the returned learner records it (`Learner.input_shape`): `flpjax.lifetime`
refuses examples of another shape with one line. The group of every leaf of
the meta-parameters is `param_labels`.

Adding one: a module here whose constructor returns a `Learner`, and one line
in `flpjax.experiment.registry.LEARNERS`.
"""

from flpjax.learners import dfa as _dfa
from flpjax.learners import fa as _fa
from flpjax.learners import flp as _flp
from flpjax.learners import gradient as _gradient
from flpjax.learners import plastic_feedback as _plastic_feedback
from flpjax.learners import rules
from flpjax.learners import trunk as _trunk
from flpjax.learners.base import (Example, Learner, check_inputs, check_structure,
                                  check_task, group_names, inner_loss, param_labels,
                                  records_input_shape)
from flpjax.learners.plastic_feedback import feedback_weights
from flpjax.learners.rules import LearnedRule
from flpjax.types import FastState, Group, Params

# The public constructors record the input shape they were given in the learner.
flp = records_input_shape(_flp.flp)
gradient = records_input_shape(_gradient.gradient)
dfa = records_input_shape(_dfa.dfa)
fa = records_input_shape(_fa.fa)
learned_rule = records_input_shape(rules.learned_rule)
plastic_feedback = records_input_shape(_plastic_feedback.plastic_feedback)


class _StateReadOnly:
  """A flax module whose collections other than ``'params'`` (BatchNorm's
  ``'batch_stats'``) are mutable when applied, their updates dropped: the trunk
  is a pure function of the meta-parameters within a lifetime."""

  def __init__(self, module):
    self.module = module

  def init(self, key, x):
    return self.module.init(key, x)

  def apply(self, variables, x):
    state = [c for c in variables if c != "params"]
    if not state:
      return self.module.apply(variables, x)
    return self.module.apply(variables, x, mutable=state)[0]


def trunk_features(module, input_shape):
  """Width of the flax module's output for one example ``input_shape``, flattened
  (`jax.eval_shape`, nothing compiled); stateful modules (BatchNorm) too."""
  return _trunk.trunk_features(_StateReadOnly(module), input_shape)


@records_input_shape
def with_trunk(learner: Learner, module, input_shape) -> Learner:
  """``learner`` behind your own flax module, the frozen trunk (`flpjax.learners.trunk`).

  Example:
    >>> d = learners.trunk_features(cnn, (28, 28, 1))       # cnn: (N, 28, 28, 1) -> (N, ...)
    >>> head = learners.flp((nets.Dense(64), nets.Dense(5, "linear")), (d,), 2)
    >>> learner = learners.with_trunk(head, cnn, (28, 28, 1))

  The module's variables are ``params['trunk']``, the group ``'trunk'`` (give
  it a rate in `meta.make_optimizer`, or it stays as initialised). A stateful
  module works too: its collections besides ``'params'`` (BatchNorm's
  ``'batch_stats'``) are part of ``params['trunk']`` and read, never written,
  within a lifetime. ``nn.BatchNorm(use_running_average=False)`` normalises
  with the statistics of the examples encoded together (a lifetime's stream,
  or its stream and query set in `lifetime.query_loss`);
  ``use_running_average=True`` with the stored statistics, which you may
  update between meta-steps (``examples/flax_trunk.py``).

  Args:
    learner: a learner whose network's input is the module's flattened output,
      ``(trunk_features(module, input_shape),)``.
    module: a ``flax.linen.Module`` mapping ``(N, *input_shape)`` to ``(N, ...)``.
    input_shape: the shape of one raw input example (the learner records it).

  Returns:
    The `Learner` with ``params['trunk']`` and the group ``'trunk'``.
  """
  return _trunk.with_trunk(learner, _StateReadOnly(module), input_shape)


__all__ = ["Example", "FastState", "Group", "Learner", "Params", "check_inputs",
           "check_structure", "check_task", "dfa", "fa", "feedback_weights", "flp",
           "gradient", "group_names", "inner_loss", "learned_rule", "LearnedRule",
           "param_labels", "plastic_feedback", "rules", "trunk_features", "with_trunk"]
