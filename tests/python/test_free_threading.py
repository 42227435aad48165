"""Many Python threads on shared tether objects: the stress suite of the free-threaded build.

Every test here runs on every interpreter. On GIL builds the threads interleave at the
interpreter's switch points (1 us switch interval); on free-threaded builds (CPython 3.13t)
they run truly in parallel, and these tests are what `make test-ft` is for. Each scenario runs
in a subprocess, bounded by the subprocess timeout, so a deadlock fails the test instead of
hanging the suite. Nothing here measures time.
"""

import json
import sys

import pytest
from conftest import describe, run_script

import tether

FREE_THREADED = tether._native.FREE_THREADED


def result_of(proc):
    assert proc.returncode == 0, describe(proc)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, describe(proc)
    return json.loads(line[-1][len("RESULT ") :])


def test_the_build_matches_the_interpreter_and_keeps_the_gil_off():
    """Importing tether on a free-threaded interpreter does not turn the GIL back on (the module
    declares it does not need it), and the extension was built for the interpreter it runs on."""
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert FREE_THREADED == (not gil)
    if FREE_THREADED:
        proc = run_script(
            """
            import sys, tether
            class N(tether.Object):
                v: int
            N(1)
            print("RESULT", int(sys._is_gil_enabled()))
            """
        )
        assert result_of(proc) == 0


SHARED = r"""
import gc, json, pickle, random, sys, threading, weakref
import tether
from tether import testing
from typing import Optional

sys.setswitchinterval(1e-6)  # GIL builds: switch threads as often as possible
THREADS, OPS = int(sys.argv[1]), int(sys.argv[2])

class Leaf(tether.Object):
    v: int
    w: float = 0.0

class Holder(tether.Object):
    n: int
    child: Optional[Leaf] = None
    other: Optional["Holder"] = None

gc.collect()
base = tether.stats()

# Read-only holders: their children are never reassigned, so every observation of one child,
# on any thread, must be one Python object, with one id() across its wrapper's deaths.
fixed = [Holder(i, Leaf(i)) for i in range(8)]
twins = [Holder(100 + i, h.child) for i, h in enumerate(fixed)]  # a second path to each child
first_id = [id(h.child) for h in fixed]
# Mutable holders: everything else happens to them.
shared = [Holder(i) for i in range(8)]
held = [None] * THREADS        # what each thread holds right now: (index, wrapper)
errors = []
callbacks = [0] * THREADS
start = threading.Barrier(THREADS)

def check(cond, what):
    if not cond:
        errors.append(what)
        raise SystemExit

def work(t):
    rng = random.Random(t)
    start.wait()
    try:
        for k in range(OPS):
            r = rng.random()
            i = rng.randrange(8)
            if r < 0.35:
                # Identity: hold the child; every read, through either path, on this thread or
                # as another thread holds it, gives this one object.
                x = fixed[i].child
                check(x is fixed[i].child, "two reads, two wrappers")
                check(x is twins[i].child, "two paths, two wrappers")
                check(id(x) == first_id[i], "id changed across deaths and revivals")
                held[t] = (i, x)
                for entry in list(held):
                    if entry is not None and entry[0] == i:
                        check(entry[1] is x, "two threads hold different wrappers")
                x.v += 0
                held[t] = None
                del x
            elif r < 0.45:
                h = shared[i]
                h.n = k                              # scalar writes from every thread
                h.child = Leaf(k)                    # the old child dies here, or on a reader
            elif r < 0.55:
                c = shared[i].child                  # may revive what another thread parked
                if c is not None:
                    try:
                        c.w = c.w + 1.0
                    except tether.MovedError:
                        pass  # another thread moved it out meanwhile: a race the test allows
            elif r < 0.62:
                c = shared[i].child
                if c is not None:
                    def cb(_ref, t=t):
                        callbacks[t] += 1
                    wr = weakref.ref(c, cb)
                    check(wr() is c, "weakref lost a live wrapper")
                    del c
            elif r < 0.68:
                # Move a child to another holder: exactly one thread wins each move.
                c = shared[i].child
                if c is not None:
                    try:
                        moved = tether.move(c)
                    except tether.MovedError:
                        pass  # another thread moved it first
                    else:
                        shared[rng.randrange(8)].child = moved
            elif r < 0.74:
                shared[i].other = shared[rng.randrange(8)]
                shared[i].other = None
            elif r < 0.78:
                copy = pickle.loads(pickle.dumps(fixed[i]))
                check(copy.child.v == fixed[i].child.v, "pickle lost a value")
                check(copy.child is not fixed[i].child, "pickle shared a wrapper")
            elif r < 0.80:
                gc.collect()
            else:
                # Death on this thread while others revive: drop every reference we have.
                c = shared[i].child
                if c is not None:
                    shared[i].child = None
                    del c
    except SystemExit:
        pass
    except Exception as e:  # any exception is a failure, reported with its type
        errors.append(f"{type(e).__name__}: {e}")

ts = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
for th in ts:
    th.start()
for th in ts:
    th.join()
still = [id(h.child) == first_id[i] for i, h in enumerate(fixed)]
del fixed, twins, shared, held, ts, th
gc.collect()
after = tether.stats()
print("RESULT", json.dumps({
    "errors": sorted(set(errors))[:5],
    "ids_stable": all(still),
    **{k: after[k] - base[k] for k in ("native_objects", "live_wrappers", "parked_wrappers")},
}))
"""


@pytest.mark.parametrize("threads", [8, 16])
def test_threads_share_objects_with_one_identity_and_counts_back_to_baseline(threads):
    """8 and 16 threads share holders: field reads and writes, wrapper deaths and revivals of
    the same children, moves, pickling, weakref callbacks, collections, and deaths on one
    thread while another revives. Every observation of a native object is one Python object
    (and one id() across deaths), and every count returns to its baseline."""
    ops = 20_000 if FREE_THREADED else 5_000
    res = result_of(run_script(SHARED, threads, ops, timeout=300))
    assert res == {
        "errors": [],
        "ids_stable": True,
        "native_objects": 0,
        "live_wrappers": 0,
        "parked_wrappers": 0,
    }, res


NATIVE_DEATHS = r"""
import gc, json, sys, threading
import tether
from tether import testing
from typing import Optional

sys.setswitchinterval(1e-6)
THREADS, ROUNDS = int(sys.argv[1]), int(sys.argv[2])

class Leaf(tether.Object):
    v: int

class Holder(tether.Object):
    child: Optional[Leaf] = None

gc.collect()
base = tether.stats()
holders = [Holder() for _ in range(4)]
errors = []

def python_side(t):
    try:
        for k in range(ROUNDS):
            h = holders[(t + k) % 4]
            h.child = Leaf(k)          # only the holder keeps it: a native clear kills it
            c = h.child                # revives or makes the wrapper while a native thread
            if c is not None:          # may be dropping the object
                c.v += 1
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")

# Native threads clear the child field over and over (the runtime's locked record_set): the
# children die on threads that are not Python threads, parked wrappers and all.
workers = [testing.start_writer(h, 0, ROUNDS * 4, None) for h in holders]
ts = [threading.Thread(target=python_side, args=(t,)) for t in range(THREADS)]
for th in ts:
    th.start()
for th in ts:
    th.join()
for w in workers:
    testing.join(w)
del holders, ts, th, workers, w
gc.collect()
after = tether.stats()
print("RESULT", json.dumps({
    "errors": sorted(set(errors))[:5],
    **{k: after[k] - base[k] for k in ("native_objects", "live_wrappers", "parked_wrappers")},
}))
"""


def test_native_threads_kill_objects_that_python_threads_revive():
    """Native threads clear fields (so objects die off any Python thread, parked wrappers
    released by the free funnel) while 8 Python threads set, read and revive the same fields."""
    rounds = 4_000 if FREE_THREADED else 2_000
    res = result_of(run_script(NATIVE_DEATHS, 8, rounds, timeout=300))
    assert res == {"errors": [], "native_objects": 0, "live_wrappers": 0, "parked_wrappers": 0}, res


CONTAINERS = r"""
import gc, json, random, sys, threading
import tether
from typing import Optional

sys.setswitchinterval(1e-6)
THREADS, OPS = int(sys.argv[1]), int(sys.argv[2])

class Leaf(tether.Object):
    v: int

class Box(tether.Object):
    fixed: list[Leaf]
    churn: list[Leaf] = tether.field(default_factory=list)
    table: dict[str, Leaf] = tether.field(default_factory=dict)

gc.collect()
base = tether.stats()
box = Box([Leaf(i) for i in range(8)])
ids = [id(x) for x in box.fixed]
errors = []
start = threading.Barrier(THREADS)

def work(t):
    rng = random.Random(t)
    start.wait()
    try:
        for k in range(OPS):
            r = rng.random()
            i = rng.randrange(8)
            if r < 0.3:
                x = box.fixed[i]
                if x is not box.fixed[i] or id(x) != ids[i]:
                    errors.append("element identity")
                    return
                if box.fixed is not box.fixed:
                    errors.append("container identity")
                    return
            elif r < 0.5:
                box.churn.append(Leaf(k))
            elif r < 0.6:
                try:
                    box.churn.pop(0)
                except IndexError:
                    pass  # another thread emptied it first
            elif r < 0.7:
                for x in box.churn:  # by index: sees the others' appends and pops
                    x.v
            elif r < 0.8:
                box.table[str(i)] = Leaf(k)
            elif r < 0.85:
                box.table.pop(str(i), None)
            elif r < 0.9:
                try:
                    for key in box.table:
                        box.table.get(key)
                except RuntimeError:
                    pass  # the dict changed size while iterating: raised like a dict's
            elif r < 0.95:
                box.churn = [Leaf(k)]  # replace the whole container
            else:
                try:
                    box.churn.extend([Leaf(k), "bad"])
                except TypeError:
                    pass  # all or nothing
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")

ts = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
for th in ts:
    th.start()
for th in ts:
    th.join()
bad = [x for x in box.churn if not isinstance(x, Leaf)]
del box, ts, th
gc.collect()
after = tether.stats()
print("RESULT", json.dumps({
    "errors": sorted(set(errors))[:5],
    "bad_elements": len(bad),
    **{k: after[k] - base[k] for k in ("native_objects", "live_wrappers", "parked_wrappers")},
}))
"""


def test_threads_share_containers():
    """8 threads on one object's lists and dict: element and container identity, appends,
    pops, iteration during mutation, whole-container replacement and refused extends."""
    ops = 10_000 if FREE_THREADED else 3_000
    res = result_of(run_script(CONTAINERS, 8, ops, timeout=300))
    assert res == {
        "errors": [],
        "bad_elements": 0,
        "native_objects": 0,
        "live_wrappers": 0,
        "parked_wrappers": 0,
    }, res
