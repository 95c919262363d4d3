#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs redis-server and PostgreSQL 15 when missing,
# the package with every extra into .venv, then runs lint, type checks, the docs build (warnings
# are errors) and pytest. The tests start their own throwaway redis-server (standalone and a
# 3-node cluster), PostgreSQL cluster and moto_server on free loopback ports and stop them by PID.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k sqlite -x`).
set -euo pipefail
bash "$(dirname "$0")/install-test-deps.sh"
EXTRAS="all,test,docs,lint,bench"
source "$(dirname "$0")/_venv.sh"
echo "== ruff"
.venv/bin/ruff check agents_persist tests benchmarks examples
echo "== mypy"
.venv/bin/mypy agents_persist benchmarks
echo "== docs (sphinx -W)"
rm -rf docs/_build
.venv/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html
echo "== pytest"
exec .venv/bin/python -m pytest tests -p no:cacheprovider "$@"
