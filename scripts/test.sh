#!/usr/bin/env bash
# The test command: builds .venv (once), installs the project with its test extra, runs pytest.
# Starts everything the tests need itself (dev broker, PostgreSQL, workers); needs only Python 3.10+.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
exec .venv/bin/python -m pytest "$@"
