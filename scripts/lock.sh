#!/usr/bin/env bash
# Refresh requirements.lock: resolve pyproject.toml's dependencies (with the model and dev
# extras) to exact versions with pip-tools, in a throwaway virtual environment so that the
# project's .venv is not touched. Run it after changing dependencies in pyproject.toml,
# then run scripts/test.sh (set-up reinstalls from the new lock) and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m venv "$tools"
"$tools/bin/python" -m pip install --quiet "pip-tools>=7.4"
# torch is pinned to 2.13.0 in pyproject.toml; pip resolves it to the CPU build that this
# machine's pip configuration offers (2.13.0+cpu), never to a CUDA build.
"$tools/bin/pip-compile" --quiet --strip-extras --extra model --extra dev \
  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml
echo "lock: wrote requirements.lock ($(grep -c '==' requirements.lock) pinned packages)"
