"""Meta-gradient estimators (`base.Estimator`): how the meta-gradient is obtained.

* `full`: exact, reverse-mode through the whole lifetime (the paper's).
* `oml`: the original OML procedure (readout-row reset, clamped meta-gradient).
* `truncated`: backprop through K-step windows of a longer lifetime.
* `es`: antithetic evolution strategies (forward passes only).
"""

from flpjax.estimators.base import Estimator, global_norm, guard, stateless

__all__ = ["Estimator", "global_norm", "guard", "stateless"]
