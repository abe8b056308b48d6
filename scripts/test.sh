#!/usr/bin/env bash
# The test command: builds .venv (once), installs the project with its test extra, runs pytest.
# Starts everything the tests need itself (dev broker, PostgreSQL, workers); needs only Python 3.10+.
source "$(dirname "$0")/_venv.sh" test
exec .venv/bin/python -m pytest "$@"
