"""Learners: what one lifetime step does (`base.Learner`).

* `flp`: feedback and local plasticity (the paper's learner).
* `gradient`: inner SGD on the plastic layers (exact gradients; OML-style baseline).
* `dfa`: direct feedback alignment; `fa`: feedback alignment (Figure 1's family).
* `learned_rule`: FLP whose local rule is meta-learned (generalised Hebbian, with Oja and
  Hebb as exact special cases; or a small MLP).
* `plastic_feedback`: FLP with plastic feedback B (meta-learned rate) and feedback
  from the layer above (section 8.1).

Adding one: a module here whose constructor returns a `Learner`, and one line
in `flpjax.experiment.registry.LEARNERS`.
"""

from flpjax.learners.base import (Example, Learner, check_structure, group_names, inner_loss,
                                  param_labels)
from flpjax.learners.dfa import dfa
from flpjax.learners.fa import fa
from flpjax.learners.flp import flp
from flpjax.learners.gradient import gradient
from flpjax.learners.plastic_feedback import feedback_weights, plastic_feedback
from flpjax.learners.rules import LearnedRule, learned_rule
from flpjax.learners.trunk import trunk_features, with_trunk
from flpjax.types import FastState, Group, Params

__all__ = ["Example", "FastState", "Group", "Learner", "Params", "check_structure", "dfa",
           "feedback_weights", "plastic_feedback", "LearnedRule", "learned_rule",
           "fa", "flp", "gradient", "group_names", "inner_loss", "param_labels",
           "trunk_features", "with_trunk"]
