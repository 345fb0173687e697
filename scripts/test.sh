#!/usr/bin/env bash
# Installs everything the tests need (system packages included) and runs lint + the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
