#!/usr/bin/env bash
# Command 2 of the quick start: set up (with test extras) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/fetch-data.sh
scripts/setup-system.sh
exec .venv/bin/python -m pytest "$@"
