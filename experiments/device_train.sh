#!/usr/bin/env bash
# One GPU session: paper-scale Omniglot FLP (2) and feature reuse (1) meta-trainings
# (40,000 meta-steps each, Table 4 rates, 500 test lifetimes), run side by side on one
# GPU; results and final checkpoints in $OUT. Needs the wheels of tensorflow-datasets and
# its dependencies in .whl/ and a copy of the Omniglot files in .gpu_data/omniglot/.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
set -o pipefail
export PYTHONPATH=/tmp/site:$PWD FLPJAX_CACHE_DIR=/tmp/tfds
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 120 python3 -c "from flpjax import datasets; x = datasets.load_split('omniglot', 'train', \
data_dir='.gpu_data'); print('omniglot', x.shape)" 2>&1 | tail -2 || exit 1
for row in flp2 reuse1; do
  timeout ${TRAIN_S:-330} python3 experiments/train.py --config=experiments/configs/omniglot_$row.py \
    --workdir=/tmp/omniglot_$row --config.fewshot.data_dir=$PWD/.gpu_data \
    --config.checkpoint_every=5000 --config.keep_checkpoints=1 --config.log_every=2000 \
    --config.eval.batch=100 > /tmp/omniglot_${row}.log 2>&1 &
done
wait
for row in flp2 reuse1; do
  grep -E "meta-step|evaluation|error" /tmp/omniglot_${row}.log | tail -4
  cp /tmp/omniglot_${row}.log /tmp/omniglot_$row/ 2>/dev/null
  tar -C /tmp -czf - --exclude=tensorboard omniglot_$row | split -b 15M - "$OUT/omniglot_${row}.tgz.part"
done
ls -la "$OUT"
