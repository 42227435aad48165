#!/usr/bin/env bash
# `make bench-matrix`: `python -m tether.bench --quick` on several CPython versions.
#
# Usage: benches/matrix.sh MAIN_PYTHON [PYTHON...]
#
# MAIN_PYTHON is a venv's interpreter with the extension already installed (`make ext`'s .venv).
# Each further interpreter gets a venv and a cargo target dir of its own, target/py<X.Y>/venv and
# target/py<X.Y>/cargo (so its build neither waits for nor invalidates the main one), with maturin
# from PyPI; `maturin develop --release` then installs the package editable from python/, as
# `make ext` does. The extension's file name carries the interpreter's tag
# (_native.cpython-312-x86_64-linux-gnu.so, ...), so the builds coexist in python/tether/.
# An interpreter that does not exist is reported and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bench() {
    echo
    echo "==== $1"
    "$1" -m tether.bench --quick
}

bench "$1"
shift
for py in "$@"; do
    if ! command -v "$py" >/dev/null; then
        echo
        echo "==== $py: not found, skipped"
        continue
    fi
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv=$root/target/py$ver/venv
    if [ ! -x "$venv/bin/maturin" ]; then
        "$py" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.8,<2"
    fi
    echo
    echo "==== building the extension for $py"
    (cd python && VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH" CARGO_TARGET_DIR=$root/target/py$ver/cargo \
        maturin develop --release --quiet)
    bench "$venv/bin/python"
done
