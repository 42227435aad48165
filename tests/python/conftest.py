import gc
import os
import subprocess
import sys
import textwrap

import pytest

import tether


@pytest.fixture(autouse=True)
def _tying_on():
    tether.set_tying(True)
    yield
    tether.set_tying(True)


def churn(cls, n=64):
    """Create `n` other live wrappers of the same size (every tether wrapper has one size), so that
    CPython's allocator cannot hand a just-freed block straight back to the next wrapper."""
    return [cls(i) for i in range(n)]


@pytest.fixture
def collect():
    def _collect():
        gc.collect()
        return tether.stats()

    return _collect


SUBPROCESS_TIMEOUT = 120


def run_script(script, *args, timeout=SUBPROCESS_TIMEOUT):
    """Runs `script` (dedented) as `__main__` of a new interpreter, with this directory on its
    path (for `models`); returns the finished process. For scenarios that could crash the
    interpreter on a broken build: the test judges the exit code and the output."""
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "0")
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def describe(proc):
    """A finished process's exit code and the tails of its output, for assertion messages."""
    return (
        f"exit code {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
        f"--- stderr ---\n{proc.stderr[-3000:]}"
    )
