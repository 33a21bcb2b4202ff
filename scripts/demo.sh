#!/usr/bin/env bash
# The demo: set everything up, then synthetic data -> train -> evaluate -> export -> serve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,train,dev
.venv/bin/captioner demo "$@"
port="${CAPTIONER_PORT:-8000}"
cat <<MSG
The inference service starts on http://127.0.0.1:${port} (Ctrl-C stops it). Try:
  curl -F image=@../shared/data/real_photos/img1.jpg http://127.0.0.1:${port}/v1/captions
  curl http://127.0.0.1:${port}/metrics
MSG
exec .venv/bin/captioner serve --model runs/demo/package --port "${port}"
