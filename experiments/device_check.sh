#!/usr/bin/env bash
# One GPU session's checks (run through the device tool from the repo root; results in $OUT):
# the benchmark cases (classification on synthetic images of the real shapes: the device
# has no tfds), the FLP cases again with TF32 matmuls, and a resumable paper-scale sine
# FLP (3) meta-training that runs until the time limit, its workdir returned as a tar.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, optax, flax; print('jax', jax.__version__, 'optax', optax.__version__, jax.devices())" \
  | tee -a "$OUT/gpu.txt"
# Smoke test: one tiny meta-step, so that a broken environment fails in seconds.
timeout 120 python3 experiments/train.py --config=experiments/configs/sine_quick.py \
  --workdir=/tmp/smoke --config.meta.steps=3 --config.eval.lifetimes=2 2>&1 | tail -4 || exit 1
timeout ${BENCH_S:-330} python3 experiments/bench.py --data=synthetic --steps=5 | tee "$OUT/bench.jsonl"
timeout 90 python3 experiments/bench.py --data=synthetic --steps=5 --matmul_precision=tensorfloat32 \
  --cases=sine_flp3_iid,sine_flp9_iid,omniglot_flp2 | tee -a "$OUT/bench.jsonl"
W=/tmp/sine_flp3_iid
timeout ${TRAIN_S:-150} python3 experiments/train.py --config=experiments/configs/sine_flp3_iid.py \
  --workdir=$W --config.checkpoint_every=250 --config.keep_checkpoints=1 --config.log_every=50 \
  2>&1 | grep -E "meta-step|evaluation|error" | tail -8
tar -C /tmp -cf - sine_flp3_iid | split -b 15M - "$OUT/sine_flp3_iid_workdir.tar.part"
ls -la "$OUT"
