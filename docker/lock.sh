#!/usr/bin/env bash
# Regenerates the pinned, hashed dependency set of every image from pyproject.toml's
# extras (uv from the delivery extra: `pip install -e ".[delivery]"`). Run it after
# changing a dependency, and commit the four files with the change.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-.venv/bin/uv}"
lock() {  # lock FILE EXTRA PYTHON: the images' Python and platform, not this machine's
  "$uv" pip compile pyproject.toml --quiet --extra "$2" --python-version "$3" \
    --python-platform x86_64-manylinux_2_28 --generate-hashes --no-strip-markers \
    --custom-compile-command "docker/lock.sh" --output-file "docker/$1" "${@:4}"
}
lock inference/requirements-cpu.txt serve 3.11 "$@"
lock inference/requirements-gpu.txt serve-gpu 3.12 "$@"   # Ubuntu 24.04's Python
lock ui/requirements.txt ui 3.11 "$@"
lock trainer/requirements.txt train-gpu 3.11 "$@"
