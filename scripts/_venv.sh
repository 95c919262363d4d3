# Sourced by demo.sh and test.sh: make ./.venv with agents_persist installed, with the extras in $EXTRAS.
# Works on a fresh Debian machine as root with only python3: installs python3-venv if venv is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    echo "== python3 -m venv failed; installing Debian's python3-venv"
    rm -rf .venv
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    "$PYTHON" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi
echo "== installing agents_persist[${EXTRAS}] into .venv"
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
