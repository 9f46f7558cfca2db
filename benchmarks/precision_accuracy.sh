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
train() {   # NAME SEED [FLAGS...]: one run in the background, its summary in $OUT/NAME-sSEED.json
  local name=$1-s$2 seed=$2; shift 2
  OMP_NUM_THREADS=1 $DK train --epochs "$EPOCHS" --seed "$seed" --out "$OUT" --name "$name" \
    --no-tensorboard --no-plots --json "$@" > "$OUT/$name.json" &
}
for seed in $SEEDS; do
  train fp32 "$seed" --precision fp32 --no-channels-last
  train fast "$seed"
done
wait
for f in "$OUT"/*.json; do
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[1], f\"{100*s['test_top1']:.2f}%\", f\"{s['train_images_per_s']:.0f} img/s\")" "$f"
done
