#!/usr/bin/env bash
# Set up if needed, index the bundled articles, and serve the API and FAQ page.
# HOST and PORT choose the address (default 127.0.0.1:8000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/kbsearch index --quiet || [ $? -eq 2 ]   # 2: some articles were skipped (listed)
exec .venv/bin/kbsearch serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
