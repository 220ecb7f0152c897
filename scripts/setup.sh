#!/usr/bin/env bash
# One-time (and idempotent) set-up of everything the project needs beyond Rust and Python:
#   .venv with torch==2.13.0 (libtorch for tch), numpy, scipy, pytest, maturin;
#   valgrind (apt) for the C tests.
# Re-running is fast: each step is skipped when its stamp is current.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi

req_hash=$(sha256sum scripts/requirements-dev.txt | cut -c1-16)
if [ ! -f ".venv/.bfl-requirements-$req_hash" ]; then
  echo "setup: installing Python dependencies (torch is ~4.7 GB; about a minute)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r scripts/requirements-dev.txt
  rm -f .venv/.bfl-requirements-*
  touch ".venv/.bfl-requirements-$req_hash"
fi


# valgrind for the C tests (`make c-test`); one apt-get update, only when it is missing
if ! command -v valgrind >/dev/null; then
  echo "setup: installing valgrind (apt)"
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
fi
