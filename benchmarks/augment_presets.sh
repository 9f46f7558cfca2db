#!/usr/bin/env bash
# Augmentation presets side by side: densenet-c-fmnist on Fashion-MNIST, one run per preset, all in
# parallel with one thread each, so every preset sees the same machine (and the same load) at the
# same time; prints test top-1, epochs and img/s per preset. LENGTH is passed to `densekit train`:
# "--epochs N" compares at equal steps (accuracy does not depend on speed), "--time-budget 5m" at
# equal wall clock (then the img/s column says what each preset costs).
# Usage: benchmarks/augment_presets.sh [LENGTH] [PRESETS] [SEED]
#   e.g. benchmarks/augment_presets.sh "--time-budget 5m" "flip flip+trivialaugment flip+randaugment flip+augmix" 0
set -eu
cd "$(dirname "$0")/.."
LENGTH=${1:---time-budget 5m}; PRESETS=${2:-"flip flip+trivialaugment flip+randaugment flip+augmix"}; SEED=${3:-0}
OUT=${AUGMENT_OUT:-runs/_augment}; mkdir -p "$OUT"
DK=${DENSEKIT:-.venv/bin/densekit}
for preset in $PRESETS; do
  name="${preset//[+:,]/_}-s$SEED"
  rm -rf "${OUT:?}/$name"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 $DK train --dataset fashion-mnist $LENGTH --augment "$preset" --seed "$SEED" \
    --out "$OUT" --name "$name" --no-tensorboard --no-plots --workers 0 --json > "$OUT/$name.json" &
done
wait
for preset in $PRESETS; do
  python3 - "$OUT/${preset//[+:,]/_}-s$SEED" "$preset" <<'PY'
import json, sys
run, preset = sys.argv[1:]
s = json.load(open(run + "/summary.json"))
epochs = [json.loads(line) for line in open(run + "/metrics.jsonl") if line.strip()]
print(f"{preset:24s} test top-1 {100 * s['test_top1']:.2f}% (one view {100 * s.get('test_top1_single', s['test_top1']):.2f}%)  "
      f"best val {100 * max(e.get('val_top1', 0) for e in epochs):.2f}%  epochs {len(epochs)}  "
      f"{s.get('train_images_per_s', 0):.0f} img/s", flush=True)
PY
done
