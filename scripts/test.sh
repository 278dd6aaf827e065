#!/usr/bin/env bash
# Set up if needed, then run the whole test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The FAQ page's browser tests (tests/test_browser.py) drive Debian's Chromium.
if [ ! -x /usr/bin/chromium ]; then
  echo "test: /usr/bin/chromium is missing; installing it for the browser tests (apt-get install -y chromium)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo -n"
  fi
  if ! $sudo apt-get install -y chromium; then
    echo "test: installing chromium failed; updating the package lists and trying again"
    $sudo apt-get update
    $sudo apt-get install -y chromium
  fi
fi
.venv/bin/ruff check kbsearch tests scripts
# imports only go down the layers (contracts in pyproject.toml, [tool.importlinter])
.venv/bin/lint-imports --no-cache
# types (configured in pyproject.toml, [tool.mypy])
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
