"""The reproduction of the paper's tables and claims (used by ``experiments/reproduce.py``).

* `paper_claims`: every qualitative claim of the paper, decided from the stored
  cells with the one rule of `flpjax.experiment.claims`, written to
  ``results/claims.json`` and rendered for RESULTS.md.
"""
