#!/usr/bin/env bash
# The demo: set everything up, then real photos (or synthetic data) -> train -> evaluate -> export,
# then the inference service and the Streamlit page, running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,ui,train  # only what the demo runs: no test tools, no browser
.venv/bin/captioner demo "$@"
port="${CAPTIONER_PORT:-8000}"
ui_port="${CAPTIONER_UI_PORT:-8501}"
CAPTIONER_LOG_FORMAT=text .venv/bin/captioner serve --model runs/demo/package --port "${port}" &
service=$!
trap 'kill "${service}" 2>/dev/null; wait "${service}" 2>/dev/null || true' EXIT
cat <<MSG

inference service: http://127.0.0.1:${port}   (try: curl -F image=@../shared/data/real_photos/img1.jpg http://127.0.0.1:${port}/v1/captions)
service metrics:   http://127.0.0.1:${port}/metrics
caption page:      http://127.0.0.1:${ui_port}   (Ctrl-C stops both)

MSG
# The demo keeps the rated images with their feedback, so that `captioner feedback export`
# gives a dataset to train on (docs/training.md, the improvement loop). In production
# storing images is the operator's decision: CAPTIONER_STORE_IMAGES, off by default.
CAPTIONER_STORE_IMAGES="${CAPTIONER_STORE_IMAGES:-true}" \
  .venv/bin/captioner ui --port "${ui_port}" --service-url "http://127.0.0.1:${port}"
