#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite (README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[dev]"
python3 -m pytest -q "$@"
