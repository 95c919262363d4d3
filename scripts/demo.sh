#!/usr/bin/env bash
# The main job: install agents_persist and run the demo on the embedded default store
# (sqlite:///agents_persist.db in the current directory). Extra arguments go to the demo,
# e.g. `bash scripts/demo.sh --url memory://` is not useful (the demo resumes in a second process).
set -euo pipefail
EXTRAS="${EXTRAS:-all}"
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/agents-persist "$@" demo
