#!/usr/bin/env bash
# Installs transformer-sim into .venv and opens the desktop lab (arguments go to main.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python main.py "$@"
