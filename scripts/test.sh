#!/usr/bin/env bash
# Set everything up, then the gates: ruff, mypy, and the test suite.
# Extra arguments go to pytest (e.g. -m slow for the full demo-quality test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,ui,train,dev,monitoring,delivery,reliability
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
timeout 300 .venv/bin/python scripts/pip_audit.py --timeout 240  # warns if PyPI's API is unreachable
exec .venv/bin/python -m pytest "$@"
