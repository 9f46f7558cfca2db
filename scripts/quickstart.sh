#!/usr/bin/env bash
# Command 1 of the quick start: set up, train the default DenseNet on Fashion-MNIST,
# evaluate it on the 10,000 test images and say where the run folder is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh all   # every extra the README uses: MNIST, export, serve
scripts/fetch-data.sh
exec .venv/bin/densekit train "$@"
