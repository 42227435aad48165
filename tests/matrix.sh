#!/usr/bin/env bash
# `make test-matrix`: the pytest suite against a *wheel* of tether on each interpreter given.
#
# Usage: tests/matrix.sh PYTHON [PYTHON...]
#
# For each interpreter (GIL builds and free-threaded ones such as 3.13t alike): `maturin build --release` makes a wheel (in target/matrix/py<X.Y>/; the cargo
# target dir is target/py<X.Y>/cargo, shared with `make bench-matrix`, so the builds neither wait
# for nor invalidate each other or the main one); a clean venv gets that wheel and the test tools from PyPI; pytest then runs
# tests/python from outside the source tree, after checking that `tether` is imported from the
# venv's site-packages (the wheel), not from python/ (the editable install of `make ext`). An
# interpreter that does not exist is reported and skipped; any failure fails the run. Prints one
# summary line per interpreter at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
summary=()

for py in "$@"; do
    if ! command -v "$py" >/dev/null; then
        echo "==== $py: not found, skipped"
        summary+=("$py: not found, skipped")
        continue
    fi
    # 3.13t: a free-threaded build gets its own directories (and a "t" in its name).
    ver=$("$py" -c 'import sys, sysconfig; print("%d.%d%s" % (*sys.version_info[:2], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))')
    full=$("$py" -c 'import platform, sysconfig; print(platform.python_version() + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))')
    # The test tools: hypothesis from 6.150 on builds a Rust extension with no free-threaded
    # wheel, and mypy's ast-serialize does not build there either (test_typing then skips).
    case "$ver" in
        *t) tools=("pytest>=8" "hypothesis>=6,<6.150") ;;
        *) tools=("pytest>=8" "hypothesis>=6" "mypy>=1.10") ;;
    esac
    dir=$root/target/matrix/py$ver
    mkdir -p "$dir"
    if [ ! -x "$dir/build-venv/bin/maturin" ]; then
        "$py" -m venv "$dir/build-venv"
        "$dir/build-venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.8,<2"
    fi
    echo "==== CPython $full: building the wheel"
    rm -rf "$dir/wheels"
    (cd python && CARGO_TARGET_DIR=$root/target/py$ver/cargo "$dir/build-venv/bin/maturin" build --release --quiet \
        -i "$py" -o "$dir/wheels")
    wheel=$(ls "$dir"/wheels/tether-*.whl)
    rm -rf "$dir/test-venv"
    "$py" -m venv "$dir/test-venv"
    "$dir/test-venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" "${tools[@]}"
    # The wheel, not the source tree: run from the matrix dir, and check where tether comes from.
    (cd "$dir" && "$dir/test-venv/bin/python" -c \
        'import sys, tether; f = tether.__file__; print("tether from", f); sys.exit("site-packages" not in f)')
    # A free-threaded interpreter must stay free-threaded with tether imported.
    (cd "$dir" && "$dir/test-venv/bin/python" -c \
        'import sys, tether; gil = getattr(sys, "_is_gil_enabled", lambda: True)(); print("GIL enabled:", gil); sys.exit(tether._native.FREE_THREADED == gil)')
    # `pip install ./python` (the source tree, through maturin's PEP 517 backend) works too: a
    # second clean venv, the same cargo target dir (so the build is mostly reused), a smoke test.
    echo "==== CPython $full: pip install ./python"
    rm -rf "$dir/src-venv"
    "$py" -m venv "$dir/src-venv"
    CARGO_TARGET_DIR=$root/target/py$ver/cargo "$dir/src-venv/bin/python" -m pip install -q \
        --disable-pip-version-check "$root/python"
    (cd "$dir" && "$dir/src-venv/bin/python" -c '
import tether
class Inner(tether.Object):
    val: int
class Outer(tether.Object):
    x: Inner
a = Outer(Inner(1))
assert a.x is a.x, "no identity"
print("pip install ./python: identity holds,", tether.__file__)')
    echo "==== CPython $full: pytest"
    (cd "$dir" && "$dir/test-venv/bin/python" -m pytest "$root/tests/python" -q -p no:cacheprovider) \
        | tee "$dir/pytest.log"
    summary+=("CPython $full (wheel $(basename "$wheel")): $(tail -n 1 "$dir/pytest.log")")
done

echo
echo "==== test-matrix summary"
printf '%s\n' "${summary[@]}"
