#!/usr/bin/env bash
# Creates .venv and installs the project with the given extras (default: train,dev).
# Needs only Python >= 3.11 with pip; installs a Java runtime with apt-get when
# none is present (pycocoevalcap's tokenizer and METEOR run on Java).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,dev}"
python="${PYTHON:-python3}"

if ! command -v java >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing a Java runtime (needed for METEOR and the PTB tokenizer)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "setup: warning: no java found; METEOR and tokenized scoring will fail (install a JRE >= 8)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "setup: .venv ready with extras [${extras}]"
