"""Weak references follow the native object, not the wrapper (the protocols issue).

With tying, a wrapper's identity is its native object's, so a weak reference to `a.x` must live
as long as `a.x`'s native object does, whether its wrapper is alive, dead, or never existed, and
die (its callback running once) when the native object dies: a dying wrapper with weak
references is kept alive by its native object instead of parking (`python/src/kept.rs`).
Every check comes after allocation noise (other live wrappers of the same size) between the
wrapper's death and the look.
"""

import gc
import threading
import weakref
from typing import Optional

import tether
from tether import testing

from conftest import churn


class Leaf(tether.Object):
    val: int


class Node(tether.Object):
    val: int
    child: Optional["Node"] = None


def test_a_weak_reference_lives_as_long_as_the_native_object():
    a = Node(0, Node(1))
    r = weakref.ref(a.child)  # the temporary wrapper's only reference dies here
    noise = churn(Leaf)
    assert r() is a.child
    assert r().val == 1
    ident = id(a.child)
    noise += churn(Leaf)
    assert id(r()) == ident == id(a.child)
    a.child = None  # the native object dies: so does the weak reference
    assert r() is None
    del noise


def test_weak_key_and_value_dictionaries_keep_their_entries():
    a = Node(0, Node(1, Node(2)))
    keys = weakref.WeakKeyDictionary()
    keys[a.child] = "info"
    values = weakref.WeakValueDictionary()
    values["grandchild"] = a.child.child
    noise = churn(Leaf)
    assert keys[a.child] == "info"
    assert len(keys) == 1
    assert values["grandchild"] is a.child.child
    a.child.child = None
    assert "grandchild" not in values
    a.child = None
    assert len(keys) == 0
    del noise


def test_finalize_fires_once_when_the_native_object_dies_not_with_the_wrapper():
    calls = []
    a = Node(0, Node(1))
    weakref.finalize(a.child, calls.append, "dead")
    noise = churn(Leaf)
    gc.collect()
    assert calls == []
    assert a.child.val == 1
    assert calls == []
    a.child = Node(2)
    assert calls == ["dead"]
    gc.collect()
    a.child = None
    assert calls == ["dead"]
    del noise


def test_callbacks_run_once_when_the_native_object_dies():
    seen = []
    a = Node(0, Node(1))
    refs = [weakref.ref(a.child, lambda r, i=i: seen.append(i)) for i in range(3)]
    noise = churn(Leaf)
    assert seen == []
    child = a.child  # alive again through a field: the same, kept wrapper
    assert all(r() is child for r in refs)
    del child
    del a  # the holder dies, and with it the child
    assert sorted(seen) == [0, 1, 2]
    assert all(r() is None for r in refs)
    del noise


def test_a_callback_may_touch_other_objects_but_finds_its_referent_gone():
    keeper = Node(0, Node(1))
    a = Node(5, Node(6))
    seen = []
    r = weakref.ref(a.child, lambda ref: seen.append((ref(), keeper.child.val, a.val)))
    a.child = None
    assert seen == [(None, 1, 5)]
    assert r() is None


def test_an_object_only_its_wrapper_held_still_dies_with_its_wrapper():
    seen = []
    r = weakref.ref(Leaf(1), lambda _r: seen.append(1))
    assert r() is None
    assert seen == [1]


def test_kept_wrappers_are_counted_and_come_back_to_zero():
    base = tether.stats()["kept_wrappers"]
    holders = [Node(i, Node(i)) for i in range(100)]
    refs = [weakref.ref(h.child) for h in holders]
    assert tether.stats()["kept_wrappers"] == base + 100
    parked = tether.stats()["parked_wrappers"]
    del holders
    assert tether.stats()["kept_wrappers"] == base
    assert tether.stats()["parked_wrappers"] <= parked
    assert all(r() is None for r in refs)


def test_a_native_thread_dropping_the_object_runs_the_callbacks_on_that_thread():
    main = threading.get_ident()
    seen = []
    h = Node(0, Node(1))
    r = weakref.ref(h.child, lambda _r: seen.append(threading.get_ident()))
    noise = churn(Leaf)
    assert r() is h.child
    # A Rust thread sets `child` (field 1) to None: its release is the object's last.
    w = testing.start_writer(h, 1, 1, None)
    while not w.done:
        pass
    testing.join(w)
    assert r() is None
    assert len(seen) == 1 and seen[0] != main
    del noise


def test_a_native_thread_dropping_other_references_leaves_the_weak_reference_alive():
    h = Node(0, Node(1))
    other = Node(9, h.child)  # a second native holder
    r = weakref.ref(h.child)
    w = testing.start_writer(h, 1, 100, None)
    while not w.done:
        pass
    testing.join(w)
    assert r() is other.child
    other.child = None
    assert r() is None


def test_moving_a_kept_object_out_of_its_wrapper():
    base = tether.stats()["kept_wrappers"]
    h = Node(0, Node(1))
    x = h.child
    r = weakref.ref(x)
    del x  # kept: its native object lives in `h`
    x = r()
    moved = Node(7, tether.move(x))  # the move ends the kept state
    assert moved.child.val == 1
    assert h.child is moved.child  # the same native object, a new canonical wrapper
    assert r() is x  # the weak reference stays with the wrapper, which is now empty
    del x
    assert r() is None
    h.child = None
    moved.child = None
    assert tether.stats()["kept_wrappers"] == base


def test_with_tying_off_weak_references_belong_to_each_fresh_wrapper():
    tether.set_tying(False)
    a = Node(0, Node(1))
    r = weakref.ref(a.child)
    assert r() is None  # a fresh wrapper per access: its weak reference dies with it


def test_threads_share_weak_references_to_the_same_objects():
    """Python threads (in parallel on 3.13t) make weak references to shared children while
    their wrappers die, are kept and are found again; then the children die: every callback
    runs once, and no weak reference outlives its object."""
    import random

    holders = [Node(i, Node(i)) for i in range(40)]
    fired = []
    refs = [weakref.ref(h.child, lambda _r, i=i: fired.append(i)) for i, h in enumerate(holders)]
    bad = []

    def work(seed):
        rnd = random.Random(seed)
        for _ in range(3000):
            k = rnd.randrange(len(holders))
            c = holders[k].child
            r = weakref.ref(c)
            if r() is not c or refs[k]() is not c or c.val != k:
                bad.append(k)
            del c, r

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    assert fired == []
    for h in holders:
        h.child = None
    assert sorted(fired) == list(range(len(holders)))
    assert all(r() is None for r in refs)
