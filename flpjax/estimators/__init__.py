"""Meta-gradient estimators (`base.Estimator`): how the meta-gradient is obtained.

* `full`: exact, reverse-mode through the whole lifetime (the paper's).
* `truncated`: backprop through K-step windows of a longer lifetime.
* `es`: antithetic and persistent evolution strategies (forward passes only).

Each module's ``make(learner, task, ...)`` returns an `Estimator`, e.g.
``estimators.full.make(learner, task)``, for `flpjax.meta.make_meta_step`. The
original OML's (readout-row reset, clamped meta-gradient) is `flpjax.protocols.oml.make`.
"""

from flpjax.estimators import base, es, full, truncated
from flpjax.estimators.base import Estimator, global_norm, guard, stateless

__all__ = ["Estimator", "base", "es", "full", "global_norm", "guard", "stateless",
           "truncated"]
