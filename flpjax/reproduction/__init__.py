"""The reproduction of the paper's tables and claims; ``experiments/reproduce.py`` only dispatches.

* `cells`: one table cell: config string, workdir (`cells.cell_workdir`), the
  protocol's rules (`cells.init_ff_from`, `cells.sweeps_plasticity`), training
  (`cells.run_cell`) and its record (`cells.summarize_result`, `cells.store_cells`);
* `jobs`: the CPU miniature (`jobs.mini_job`), a GPU allocation's cells within a
  budget (`jobs.budget_job`), merging another results directory;
* `section71`: section 7.1 and its control; `figure2`: Figure 2 (through
  ``experiments/figures.py``);
* `beyond`: the beyond-the-paper cells and experiments, and their RESULTS.md section;
* `results_md`: ``results/RESULTS.md`` (and ``claims.json``) from the stored records;
* `paper_claims`: every qualitative claim of the paper, decided from the stored
  cells with the one rule of `flpjax.reporting.statistics`.
"""
