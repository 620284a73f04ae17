#!/usr/bin/env bash
# CI step: the bounds-checked build and the kernel and op tests on it.
#
#   .ci/debug_kernels.sh REPO_ROOT WORK_DIR
#
# Clones REPO_ROOT (its committed HEAD, as the serial-build step does) into WORK_DIR, makes
# a virtual environment there, installs with FASTCONV_CYTHON_DEBUG=1 (Cython's boundscheck,
# wraparound and initializedcheck on, -O1 -g: an out-of-range index in a kernel raises
# IndexError instead of reading or writing past a buffer), checks that build_info() reports
# that build, and runs pytest tests/kernels tests/ops from the clone (the `pytest` command
# imports the installed package, not the clone's uncompiled sources).
set -euo pipefail
if [ "$#" -ne 2 ]; then
    echo "usage: $0 REPO_ROOT WORK_DIR" >&2
    exit 2
fi
ROOT="$(cd "$1" && pwd)"
mkdir -p "$2"
WORK="$(cd "$2" && pwd)"
PY="${PYTHON:-python3}"

git clone -q "$ROOT" "$WORK/debug-src"
"$PY" -m venv "$WORK/venv-debug"
# shellcheck disable=SC1091
. "$WORK/venv-debug/bin/activate"
pip install -q --upgrade pip
(cd "$WORK/debug-src" && FASTCONV_CYTHON_DEBUG=1 pip install .)
(cd "$WORK" && python -c "import fastconv as fc, sys; i = fc.build_info(); print(i); \
sys.exit(0 if i['cython_debug'] else 1)")
pip install pytest
(cd "$WORK/debug-src" && pytest tests/kernels tests/ops)
deactivate
