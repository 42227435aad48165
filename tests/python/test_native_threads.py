"""Failure 9 of the soundness issue: records shared with native threads.

The GIL serializes Python threads, not Rust threads: a native thread calling the runtime's
`record_set` / `record_get` on a record that Python reads at the same time must be safe (the
record rule: every slot access holds the record's lock, and no host code runs under it), and must
never deadlock with a GIL holder (cloning a Python object held in a field takes no GIL).
"""

import subprocess
import sys
import textwrap
from typing import Optional

import tether
from tether import testing


class Shared(tether.Object):
    s: str
    o: object
    n: int
    child: Optional["Shared"] = None


def test_python_reads_strings_while_a_native_thread_writes_them():
    a, b = "alpha" * 40, "beta" * 40
    x = Shared(a, None, 0)
    w = testing.start_writer(x, 0, 200_000, a, b)
    reads = 0
    while not w.done:
        assert x.s in (a, b)
        reads += 1
    testing.join(w)
    assert x.s in (a, b) and reads > 0


def test_python_reads_objects_while_a_native_thread_swaps_them():
    p, q = Shared("p", None, 1), Shared("q", None, 2)
    x = Shared("x", None, 0)
    w = testing.start_writer(x, 3, 200_000, p, q, None)
    while not w.done:
        c = x.child
        assert c is None or c is p or c is q
        if c is not None:
            assert c.n in (1, 2)
    testing.join(w)
    assert x.child is None or x.child in (p, q)


def test_python_writes_while_a_native_thread_reads():
    x = Shared("x", [0], 0)
    w = testing.start_reader(x, 1, 200_000)
    i = 0
    while not w.done:
        x.o = [i]  # the native reader may hold the last copy of the old list: no deadlock
        assert x.o == [i]
        i += 1
    testing.join(w)


def test_no_deadlock_between_a_gil_holder_and_a_native_reader_of_python_objects():
    """In a subprocess with a timeout: a hang fails the test instead of the whole suite."""
    script = textwrap.dedent(
        """
        import tether
        from tether import testing

        class H(tether.Object):
            o: object

        h = H(object())
        workers = [testing.start_reader(h, 0, 100_000) for _ in range(2)]
        i = 0
        while not all(w.done for w in workers):
            h.o = {"i": i}
            repr(h)
            i += 1
        for w in workers:
            testing.join(w)
        print("ok", i)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
