#!/usr/bin/env bash
# Builds the project's images with Docker or Podman, whichever is there.
#   bash docker/build.sh [--base IMAGE] [--tag TAG] [--ca-bundle FILE] [IMAGE...]
# IMAGE is any of inference-cpu ui trainer inference-gpu (default: the first three).
#   --base IMAGE      the Python base of the CPU images (default python:3.11-slim-trixie);
#                     bash docker/local-base.sh makes localhost/py311:bookworm where
#                     nothing can be pulled
#   --tag TAG         the images' tag (default latest): captioner-<image>:TAG
#   --ca-bundle FILE  a CA bundle pip must trust, e.g. a TLS-inspecting proxy's. Handed
#                     to the build as a secret, so it is in no layer of any image.
# Prints one line per image: its name, build seconds and size in MB.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=docker/engine.sh
source docker/engine.sh

base="" tag=latest ca_bundle="" images=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --ca-bundle) ca_bundle="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build: unknown option $1" >&2; exit 2 ;;
    *) images+=("$1"); shift ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=(inference-cpu ui trainer)

flags=("${BUILD_FLAGS[@]}")
if [ -n "$base" ]; then
  flags+=(--build-arg "PYTHON_IMAGE=$base")
fi
if [ -n "$ca_bundle" ]; then
  [ -r "$ca_bundle" ] || { echo "build: cannot read the CA bundle $ca_bundle" >&2; exit 2; }
  flags+=(--secret "id=ca_bundle,src=$ca_bundle")
fi

for image in "${images[@]}"; do
  case "$image" in
    inference-cpu) file=docker/inference/Dockerfile.cpu ;;
    inference-gpu) file=docker/inference/Dockerfile.gpu ;;
    ui) file=docker/ui/Dockerfile ;;
    trainer) file=docker/trainer/Dockerfile; image=trainer-gpu ;;
    *) echo "build: unknown image $image (inference-cpu ui trainer inference-gpu)" >&2; exit 2 ;;
  esac
  name="captioner-$image:$tag"
  started=$(date +%s.%N)
  if ! "${ENGINE[@]}" build "${flags[@]}" -f "$file" -t "$name" . >"${BUILD_LOG:-/dev/stderr}" 2>&1; then
    echo "build: $name failed${BUILD_LOG:+ (log: $BUILD_LOG)}" >&2
    exit 1
  fi
  seconds=$(awk "BEGIN {printf \"%.0f\", $(date +%s.%N) - $started}")
  bytes=$("${ENGINE[@]}" image inspect --format '{{.Size}}' "$name")
  echo "built $name in ${seconds} s, $((bytes / 1000000)) MB"
done
