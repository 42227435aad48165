import gc

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
