#!/usr/bin/env bash
# Refresh the screenshots in docs/screenshots/ by running the browser tests (tests/test_browser.py:
# the FAQ pages; tests/test_admin_browser.py: the dashboard) with KBSEARCH_SCREENSHOTS pointing
# there; other test runs save them in a temporary folder.
# A saved picture is kept when the new one differs only by anti-aliasing noise, so the checkout
# changes only where a page did. Extra arguments go to pytest (-k admin: the dashboard's only).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "screenshots: /usr/bin/chromium is missing; install it with 'apt-get install -y chromium'" >&2
  exit 1
fi
export KBSEARCH_SCREENSHOTS="$PWD/docs/screenshots"
# fail rather than skip when the browser cannot be driven (tests/test_browser.py)
CI="${CI:-1}" .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_browser.py \
  tests/test_admin_browser.py "$@"
git status --short -- docs/screenshots
