"""Learners: what one lifetime step does (`base.Learner`).

* `flp`: feedback and local plasticity (the paper's learner).
* `gradient`: inner SGD on the plastic layers (exact gradients; OML-style baseline).
* `dfa`: direct feedback alignment; `fa`: feedback alignment (Figure 1's family).
* `learned_rule`: FLP whose local rule is meta-learned (generalised Hebbian, with Oja and
  Hebb as exact special cases; or a small MLP).
* `plastic_feedback`: FLP with plastic feedback B (meta-learned rate) and feedback
  from the layer above (section 8.1).
* `with_trunk`: any of them behind a flax module (the frozen trunk; `trunk_features`
  gives its width; `flpjax.trunks` has the paper's as flax modules).

Every constructor takes the shape of one input example (``input_shape``) and
the returned learner records it (`Learner.input_shape`): `flpjax.lifetime`
refuses examples of another shape with one line. The group of every leaf of
the meta-parameters is `param_labels`.

Adding one: a module whose constructor returns a `Learner`, with its config
plug-in names (`flpjax.config.registry`), and one `flpjax.config.register` call.
"""

from flpjax.learners import dfa as _dfa
from flpjax.learners import fa as _fa
from flpjax.learners import flp as _flp
from flpjax.learners import gradient as _gradient
from flpjax.learners import plastic_feedback as _plastic_feedback
from flpjax.learners import rules
from flpjax.learners import trunk as _trunk
from flpjax.learners.base import (
                                  Example,
                                  Learner,
                                  check_inputs,
                                  check_structure,
                                  check_task,
                                  group_names,
                                  inner_loss,
                                  param_labels,
                                  records_input_shape,
)
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
with_trunk = records_input_shape(_trunk.with_trunk)
trunk_features = _trunk.trunk_features


__all__ = ["Example", "FastState", "Group", "Learner", "Params", "check_inputs",
           "check_structure", "check_task", "dfa", "fa", "feedback_weights", "flp",
           "gradient", "group_names", "inner_loss", "learned_rule", "LearnedRule",
           "param_labels", "plastic_feedback", "rules", "trunk_features", "with_trunk"]
