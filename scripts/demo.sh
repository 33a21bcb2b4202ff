#!/usr/bin/env bash
# The demo: set everything up, then synthetic data -> train -> evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,dev
exec .venv/bin/captioner demo "$@"
