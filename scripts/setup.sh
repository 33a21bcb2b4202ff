#!/usr/bin/env bash
# Creates .venv and installs the project with the given extras (default: train,dev).
# Needs only Python >= 3.11 with pip; installs a Java runtime with apt-get when
# none is present (pycocoevalcap's tokenizer and METEOR run on Java), and Debian's
# Chromium for the browser test of the page when the dev extra is asked for, and Podman
# with mmdebstrap (the container tests build and run the images) for the delivery extra.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,dev}"
python="${PYTHON:-python3}"

apt_install() {
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if [ -z "${APT_UPDATED:-}" ]; then
      apt-get update -qq
      APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "setup: warning: cannot install $* (no apt-get or not root)" >&2
  fi
}

if ! command -v java >/dev/null 2>&1; then
  echo "setup: installing a Java runtime (needed for METEOR and the PTB tokenizer)"
  apt_install default-jre-headless
fi


if [[ ",${extras}," == *",dev,"* ]] && [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Chromium (the page's browser test drives it headless)"
  apt_install chromium fonts-noto-color-emoji
fi

if [[ ",${extras}," == *",monitoring,"* ]] && ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing Prometheus (promtool checks the rules; tests scrape with the server)"
  apt_install prometheus
fi

if [[ ",${extras}," == *",delivery,"* ]] \
  && ! { command -v podman && command -v mmdebstrap && [ -x /usr/sbin/runc ]; } >/dev/null 2>&1; then
  echo "setup: installing Podman (tests build and run the images; mmdebstrap makes their base)"
  apt_install podman runc mmdebstrap
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "setup: .venv ready with extras [${extras}]"
