#!/usr/bin/env bash
# CUDA figures for benchmarks/RESULTS.md: densekit vs the naive reference (torchvision's layout)
# in the same run. Usage: benchmarks/gpu.sh [OUTDIR] [part]   part: eager (default) | compile
# Each line of OUTDIR/gpu.jsonl is one `densekit bench --json` result.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-benchmarks/results}}; PART=${2:-eager}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu-info.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu-info.txt"
bench() { echo "+ densekit bench $*"; $PY -m densekit bench "$@" --device cuda --json | tee -a "$OUT/gpu.jsonl"; }
if [ "$PART" = eager ]; then
  for ref in naive same; do
    bench densenet-bc-100-k12 --input-size 32 --batch-size 64 --precision bf16 --steps 30 --rounds 2 --reference $ref
    bench densenet121 --input-size 224 --batch-size 128 --precision bf16 --steps 15 --rounds 2 --reference $ref
  done
  bench densenet-bc-100-k12 --input-size 32 --batch-size 64 --precision fp16 --steps 30 --reference same
  bench densenet121 --input-size 224 --batch-size 128 --precision fp16 --steps 15 --reference same
  $PY benchmarks/memory_efficient.py --device cuda --precision fp32 --depths 100,190 --steps 5 | tee "$OUT/memory_efficient_cuda.txt"
else
  bench densenet-bc-100-k12 --input-size 32 --batch-size 64 --precision bf16 --steps 30 --compile --reference same
  bench densenet121 --input-size 224 --batch-size 128 --precision bf16 --steps 15 --compile --reference same
fi
