#!/usr/bin/env bash
# Does the fast path cost accuracy? densenet-c-fmnist on Fashion-MNIST, trained in float32 NCHW
# and with the CPU defaults (bf16 autocast + channels-last), same seeds, same epochs; prints the
# test top-1 of each. Accuracy does not depend on speed, so the runs go in parallel, one thread each.
# Usage: benchmarks/precision_accuracy.sh [EPOCHS] [SEEDS]      e.g. benchmarks/precision_accuracy.sh 8 "0 1"
set -eu
cd "$(dirname "$0")/.."
EPOCHS=${1:-8}; SEEDS=${2:-"0 1"}
OUT=runs/_precision; mkdir -p "$OUT"
DK=${DENSEKIT:-.venv/bin/densekit}
for seed in $SEEDS; do
  OMP_NUM_THREADS=1 $DK train --epochs "$EPOCHS" --seed "$seed" --precision fp32 --no-channels-last \
    --out "$OUT" --name "fp32-s$seed" --no-tensorboard --no-plots --json > "$OUT/fp32-s$seed.json" &
  OMP_NUM_THREADS=1 $DK train --epochs "$EPOCHS" --seed "$seed" \
    --out "$OUT" --name "fast-s$seed" --no-tensorboard --no-plots --json > "$OUT/fast-s$seed.json" &
done
wait
for f in "$OUT"/*.json; do
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[1], f\"{100*s['test_top1']:.2f}%\", f\"{s['train_images_per_s']:.0f} img/s\")" "$f"
done
