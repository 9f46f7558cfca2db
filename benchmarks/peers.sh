#!/usr/bin/env bash
# densekit against torchvision's and timm's DenseNet-121 on this CPU, with the referee script
# ../shared/bench/peer_train_step.py (one SGD training step, 64x64, batch 32), alternating the
# implementations round by round so that a noisy shared machine slows all of them alike.
#   benchmarks/peers.sh [ROUNDS] [MODES]      e.g. benchmarks/peers.sh 3 "bf16cl fp32"
# PEER_VENV (default /tmp/peer-venv) is built on first use by ../shared/bench/setup-peers.sh when
# it exists, else by the same pip commands (torchvision and timm pinned to torch 2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; MODES=${2:-bf16cl}; V=${PEER_VENV:-/tmp/peer-venv}
SHARED=../shared/bench
if [ ! -x "$V/bin/python" ]; then
  if [ -x "$SHARED/setup-peers.sh" ]; then "$SHARED/setup-peers.sh" "$V"; else
    python3 -m venv "$V"
    "$V/bin/pip" install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    "$V/bin/pip" install -q torchvision==0.28.0 timm==1.0.31 -c <(echo torch==2.13.0)
  fi
fi
for mode in $MODES; do
  for r in $(seq "$ROUNDS"); do
    for impl in torchvision timm densekit; do
      PYTHONPATH=$PWD/src "$V/bin/python" "$SHARED/peer_train_step.py" --impl "$impl" --mode "$mode" --steps "${STEPS:-10}"
    done
  done
done | tee /dev/stderr | awk '{split($5,a,"="); split($6,b,"="); k=$1" "$2; v[k]=v[k]" "a[2]; if (b[2]+0>m[k]+0) m[k]=b[2]}
  END {for (k in v) {n=split(v[k],x," ");
         for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (x[j]+0<x[i]+0) {t=x[i]; x[i]=x[j]; x[j]=t}
         printf "%-22s median img/s %6.1f  (runs:%s)  peak_rss_MB %s\n", k, x[int((n+1)/2)], v[k], m[k]}}' | sort
