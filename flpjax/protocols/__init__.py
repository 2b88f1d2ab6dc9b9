"""Procedures of other papers that meta-train and evaluate their own way.

* `oml`: the original OML procedure (Javed & White 2019): its proxy task,
  its meta-gradient (readout-row reset, clamp) and its evaluation (inner Adam),
  and its config plug-in (``config.estimator = 'oml'``).
"""

from flpjax.protocols import oml

__all__ = ["oml"]
