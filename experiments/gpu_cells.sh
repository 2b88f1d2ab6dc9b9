#!/usr/bin/env bash
# One GPU allocation -> finished paper-scale cells:
#
#   OUT=/path/to/out experiments/gpu_cells.sh CELLS BUDGET_S [reproduce.py flags...]
#   experiments/gpu_cells.sh 1:flp3:iid+continual,1:reuse1:iid+continual 540
#
# From the repository root of a bare GPU machine. Python packages come from the
# machine or, where missing, from the wheels in .whl/ beside the repository
# (pip download -d .whl ... on a machine with a registry); the Omniglot files from
# .gpu_data/omniglot/ (a copy of ../shared/data/omniglot) or --data_dir. Times each
# cell's meta-step, refuses the set at once (exit 2, one line) if the measured speed
# says it cannot finish within BUDGET_S seconds (the time spent installing counts),
# then trains and evaluates the cells in order. Each finished cell's record goes to
# $OUT/results/table<k>/<row>.json and its first network to $OUT/params/ as soon as
# the cell is done, so a command killed at its limit keeps the cells it finished.
# Back on the workstation: python experiments/reproduce.py --merge_from=<out>/results
# PYTHON=/path/to/python names the interpreter (default: see below).
set -u
export PYTHONUNBUFFERED=1
if [ $# -lt 2 ]; then
  echo "error: usage: experiments/gpu_cells.sh CELLS BUDGET_S [reproduce.py flags]" >&2; exit 2
fi
CELLS=$1; BUDGET=$2; shift 2
case $BUDGET in ''|*[!0-9]*) echo "error: BUDGET_S=$BUDGET: expected whole seconds" >&2; exit 2;; esac
START=$(date +%s)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/results" "$OUT/params" || exit 2
# The interpreter: $PYTHON if set; else the first of python3 on PATH, the active virtual
# environment's and the repository's .venv that has the packages (a test suite run as
# .venv/bin/python -m pytest, without activating the environment, gets its own).
HAS_PACKAGES="import jax, optax, flax, chex, orbax.checkpoint, ml_collections, absl"
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
else
  PY=python3
  for candidate in python3 ${VIRTUAL_ENV:+"$VIRTUAL_ENV/bin/python"} .venv/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "$HAS_PACKAGES" 2>/dev/null; then
      PY=$candidate; break
    fi
  done
fi
if ! "$PY" -c "$HAS_PACKAGES" 2>/dev/null
then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: .whl/: the Python packages are missing here and no wheels were shipped" \
         "beside the repository (pip download -d .whl tensorflow-datasets ...)" >&2; exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || { echo "error: .whl/: pip could not install the shipped wheels" >&2; exit 2; }
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
DATA=()
[ -d .gpu_data/omniglot ] && DATA=(--data_dir="$PWD/.gpu_data")
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader > "$OUT/gpu.txt"
LEFT=$(( BUDGET - ($(date +%s) - START) ))
"$PY" experiments/reproduce.py --scale=paper --cells="$CELLS" --budget_s="$LEFT" \
  --results_dir="$OUT/results" --export_dir="$OUT/params" \
  --workdir_root="${WORKDIR_ROOT:-/tmp/gpu_cells}" "${DATA[@]}" "$@"
