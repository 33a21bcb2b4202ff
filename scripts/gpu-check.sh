#!/usr/bin/env bash
# The GPU check, in one call of a GPU machine (about 3 minutes of it):
#   1. install the serve-gpu extra (onnxruntime-gpu) and prove the CUDA provider is active;
#   2. benchmarks/gpu_check.py: CUDA against CPU captions on the real photos (identical greedy
#      words, log-probabilities within 1e-3), the fp16 variant, encoder and decoder speed;
#   3. the peer table's `captioner serve` row (benchmarks/peers/run.py) on CUDA.
#
#   bash scripts/gpu-check.sh            on the GPU host (pip reaches PyPI, or WHEELS=DIR holds
#                                        the wheels: pip install --no-index --find-links DIR)
#   bash scripts/gpu-check.sh --cpu      the same path on the CPU alone, with this project's
#                                        .venv: what a machine without a GPU can check
#
# PACKAGE (default runs/demo/package) is the model package; OUT (default runs/gpu-check) gets
# gpu_check.json and the serve row's table. Exit status: 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
package="${PACKAGE:-runs/demo/package}"
out="${OUT:-runs/gpu-check}"
mkdir -p "${out}"
if [ ! -f "${package}/manifest.json" ]; then
  echo "gpu-check: no model package at ${package} (make one with: bash scripts/demo.sh)" >&2
  exit 2
fi

if [ "${1:-}" = "--cpu" ]; then
  python=.venv/bin/python
  provider=CPUExecutionProvider
else
  python="${PYTHON:-python3}"
  provider=CUDAExecutionProvider
  "${python}" -m venv --system-site-packages .venv-gpu
  python=.venv-gpu/bin/python
  pip_args=(-q)
  if [ -n "${WHEELS:-}" ]; then
    pip_args+=(--no-index --find-links "${WHEELS}")
  fi
  # The CPU build would shadow the GPU one: both provide the `onnxruntime` module.
  "${python}" -m pip uninstall -q -y onnxruntime 2>/dev/null || true
  "${python}" -m pip install "${pip_args[@]}" -e '.[serve-gpu]' psutil
fi

"${python}" - "${provider}" <<'PY'
import sys
import onnxruntime as ort

wanted = sys.argv[1]
available = ort.get_available_providers()
print(f"onnxruntime {ort.__version__} on {ort.get_device()}; providers {available}")
if wanted not in available:
    sys.exit(f"gpu-check: {wanted} is not in this onnxruntime build: {available}")
PY

status=0
"${python}" benchmarks/gpu_check.py --package "${package}" --provider "${provider}" \
  --out "${out}" || status=1
"${python}" benchmarks/peers/run.py --package "${package}" --peers captioner_peer \
  --provider "${provider}" --clients 1,16,64 --beams 1,3 --duration 10 --warmup 3 \
  --repeats 1 --out "${out}/peers" || status=1
exit "${status}"
