"""Figure 2 of a scale from its trained sine cells, through ``experiments/figures.py``.

`run` calls ``experiments/figures.py`` in a subprocess, on purpose: the Figure 2
analyses live in that binary (the library never imports ``experiments/``), and
the ``figure2.json`` it writes records the exact command that recreates it,
relative to the repository. The continual cells (panels A-C, as the paper's
continual analyses) go to ``results/figures_<scale>/``, the i.i.d. cells (panel D
is the paper's i.i.d. task) to ``results/figures_<scale>/iid/``; ``done.json``
marks the scale's figure job as finished.
"""

from __future__ import annotations

import os
import subprocess
import sys

from flpjax.reporting.metrics import read_json, write_json
from flpjax.reproduction import cells

#: Figure 2 of the miniature: its FLP and gradient-based sine cells.
FIGURE2_FLP = ("reuse1", "flp2", "flp3")
FIGURE2_GRAD = ("grad3",)
#: The panels the paper draws from each order's cells (B and C: continual; D: the i.i.d.
#: task): the claims kept in claims.json and shown in RESULTS.md. figure2.json keeps
#: every panel's numbers and claims for both orders (the other order's periodicity
#: claim is panel C's control: it should fail on i.i.d. lifetimes).
PAPER_PANELS = {"continual": ("A", "B", "C"), "iid": ("A", "D")}


def figures_dir(results_dir: str, scale: str) -> str:
  """``<results_dir>/figures_<scale>``."""
  return os.path.join(results_dir, f"figures_{scale}")


def done(results_dir: str, scale: str) -> dict | None:
  """The scale's ``done.json`` if its figure job finished, else None."""
  record = read_json(os.path.join(figures_dir(results_dir, scale), "done.json"))
  return record if record and record.get("scale") == scale else None


def run(scale: str, root: str, results_dir: str,
        orders: tuple[str, ...] = ("continual", "iid")) -> None:
  """Figure 2 from the scale's sine cells, every network analysed
  (``experiments/figures.py --networks=0``), one folder per order.

  Raises:
    cells.ReproductionError: ``experiments/figures.py`` failed.
  """

  def workdirs(rows, order):  # the cells that were run (a --cells subset may lack some)
    dirs = [cells.final_workdir(root, "1", scale, row, order) for row in rows]
    return ",".join(cells.path_arg(d) for d in dirs if cells.trained(d))

  for order in orders:
    out = os.path.join(figures_dir(results_dir, scale),
                       *(() if order == "continual" else (order,)))
    if not workdirs(FIGURE2_FLP, order):
      continue
    # Run from the repository with paths relative to it: the command is recorded.
    rel = lambda p: os.path.relpath(os.path.abspath(p), cells.REPO)
    cmd = [sys.executable, os.path.join("experiments", "figures.py"),
           "--flp_workdirs=" + ",".join(map(rel, workdirs(FIGURE2_FLP, order).split(","))),
           "--grad_workdirs=" + ",".join(rel(d) for d in workdirs(FIGURE2_GRAD, order).split(",")
                                         if d),
           "--networks=0", "--lifetimes=10", "--batch=5", f"--output_dir={rel(out)}"]
    proc = subprocess.run(cmd, check=False, cwd=cells.REPO)
    if proc.returncode:
      raise cells.ReproductionError(
          f"Figure 2 ({' '.join(cmd)}) exited with {proc.returncode}")
    data = read_json(os.path.join(out, "figure2.json"))
    data.update(scale=scale, order=order)
    write_json(os.path.join(out, "figure2.json"), data)
  write_json(os.path.join(figures_dir(results_dir, scale), "done.json"),
             {"scale": scale, "orders": list(orders)})
