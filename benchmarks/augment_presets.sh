#!/usr/bin/env bash
# Augmentation presets under one time budget: densenet-c-fmnist on Fashion-MNIST, each preset
# trained for the same wall clock, one after another (alternate presets when repeating, since
# the clock's worth of epochs depends on the machine's load); prints test top-1, epochs and img/s.
# Usage: benchmarks/augment_presets.sh [BUDGET] [PRESETS] [SEED]
#   e.g. benchmarks/augment_presets.sh 5m "flip flip+trivialaugment flip+randaugment flip+augmix" 0
set -eu
cd "$(dirname "$0")/.."
BUDGET=${1:-5m}; PRESETS=${2:-"flip flip+trivialaugment flip+randaugment flip+augmix"}; SEED=${3:-0}
OUT=runs/_augment; mkdir -p "$OUT"
DK=${DENSEKIT:-.venv/bin/densekit}
for preset in $PRESETS; do
  name="${preset//[+:,]/_}-s$SEED"
  $DK train --dataset fashion-mnist --time-budget "$BUDGET" --augment "$preset" --seed "$SEED" \
    --out "$OUT" --name "$name" --no-tensorboard --no-plots --json > "$OUT/$name.json"
  python3 - "$OUT/$name" "$preset" "$(uptime | sed 's/.*average: //')" <<'PY'
import json, sys
run, preset, load = sys.argv[1:]
s = json.load(open(run + "/summary.json"))
epochs = [json.loads(line) for line in open(run + "/metrics.jsonl") if line.strip()]
print(f"{preset:28s} test top-1 {100 * s['test_top1']:.2f}% (one view {100 * s.get('test_top1_single', s['test_top1']):.2f}%)  "
      f"best val {100 * max(e.get('val_top1', 0) for e in epochs):.2f}%  epochs {epochs[-1]['epoch']}  "
      f"{s.get('train_images_per_s', 0):.0f} img/s  load {load}", flush=True)
PY
done
