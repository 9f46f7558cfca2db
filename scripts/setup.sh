#!/usr/bin/env bash
# Creates (or reuses) .venv and installs densekit with the pinned CPU torch.
# Usage: scripts/setup.sh [extra[,extra]]   e.g. scripts/setup.sh test, scripts/setup.sh export,serve (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-all}
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# pip warns about missing local index folders on some machines; that noise is not ours.
quiet() { grep -v -e 'is ignored: it is neither' -e '^\[notice\]' || true; }
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
.venv/bin/python -m pip install -q -c constraints.txt torch 2>&1 | quiet
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$extra]" 2>&1 | quiet
.venv/bin/python -c "import torch, densekit; print(f'densekit {densekit.__version__} ready (torch {torch.__version__})')"
