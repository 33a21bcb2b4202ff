# shellcheck shell=bash disable=SC2034
# Sourced by docker/build.sh and docker/local-base.sh: ENGINE is Docker or Podman,
# whichever is there (CONTAINER_ENGINE=docker|podman chooses), with the flags this
# host needs in ENGINE and BUILD_FLAGS.
#   CONTAINER_ENGINE_ARGS  extra global flags, e.g. "--runtime /usr/sbin/runc
#                          --cgroup-manager cgroupfs" where crun refuses the host's cgroups
#   CONTAINER_BUILD_ARGS   extra build flags, e.g. "--ulimit nofile=4096:4096" where the
#                          host does not permit raising rlimits
engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null 2>&1; then
    engine=podman
  else
    echo "no container engine: install Docker or Podman (apt-get install podman)" >&2
    exit 1
  fi
fi
read -r -a _engine_args <<< "${CONTAINER_ENGINE_ARGS:-}"
read -r -a _build_args <<< "${CONTAINER_BUILD_ARGS:-}"
ENGINE=("$engine" "${_engine_args[@]}")
# Host networking for builds: the package index is reached as the host reaches it.
BUILD_FLAGS=(--network host "${_build_args[@]}")
export ENGINE_NAME="$engine"
