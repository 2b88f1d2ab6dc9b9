"""What runs report, and how: import the module you need (no re-exports).

* `errors`: the errors a binary reports as one ``error: ...`` line
  (`errors.parse_flags_or_exit`, `errors.exit_with_error`,
  `errors.quiet_libraries`, `errors.WorkdirError`, `errors.NonFiniteError`);
* `metrics`: a run's metrics file (`metrics.MetricWriter`,
  `metrics.read_metrics`), results files (`metrics.write_json`,
  `metrics.read_json`) and the machine's name (`metrics.device_name`);
* `progress`: progress lines with a rate and an ETA (`progress.Progress`);
* `statistics`: the one rule for a diverged network, statistics over networks
  and a claim's verdict (`statistics.decide`).

Learning curves are drawn by `flpjax.plots.plot_curves`.
"""
