#!/usr/bin/env bash
# The run command: builds .venv (once), installs the project with the dev extra and runs
# `recsys-faust dev` (dev broker + dev PostgreSQL + topics + a worker + demo data). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
exec .venv/bin/recsys-faust dev "$@"
