#!/usr/bin/env bash
# Makes the Python base image locally from Debian's packages, for machines that cannot
# pull from a container registry (an air-gapped build host, a CI sandbox):
#   bash docker/local-base.sh [TAG]        (default localhost/py311:bookworm)
# then: bash docker/build.sh --base localhost/py311:bookworm
# Debian 12's python3 is 3.11, the interpreter the CPU images' locks are made for.
# Needs mmdebstrap and podman (or docker); the Debian mirror is the one apt already
# uses here (DEBIAN_MIRROR overrides it).
set -euo pipefail
tag="${1:-localhost/py311:bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=docker/engine.sh
source "$here/engine.sh"

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | cut -d' ' -f2 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -h -m1 -E '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "local-base: mmdebstrap is missing (apt-get install mmdebstrap)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "local-base: $suite from $mirror"
# passwd: useradd/groupadd, which the images' Dockerfiles run.
mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates,passwd \
  "$suite" "$work/base.tar" "$mirror"
"${ENGINE[@]}" import --quiet "$work/base.tar" "localhost/debian-python:$suite" >/dev/null
# The official python images have /usr/local/bin/python; the Dockerfiles call `python`.
printf 'FROM localhost/debian-python:%s\nRUN ln -s /usr/bin/python3 /usr/local/bin/python\n' "$suite" \
  > "$work/Containerfile"
"${ENGINE[@]}" build "${BUILD_FLAGS[@]}" -t "$tag" -f "$work/Containerfile" "$work" >/dev/null
echo "local-base: $tag"
