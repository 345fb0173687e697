#!/usr/bin/env bash
# Installs everything the tests need (system packages included) and runs lint + the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
# one single-threaded worker per core (at most 4), each test file on one worker so its fixtures are built once
.venv/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile --durations=15 "$@"
