#!/usr/bin/env bash
# Command 1 of the quick start: set up, train the default DenseNet on Fashion-MNIST,
# evaluate it on the 10,000 test images and say where the run folder is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh all   # every extra the README uses: MNIST, export, serve
scripts/fetch-data.sh
.venv/bin/densekit train "$@"
echo "next: source .venv/bin/activate, then every densekit command of the README works (eval, export, serve, explain ...)"
