"""Cycle collection (the cycle-collection issue): native object graphs that only reference each
other are freed by `gc.collect()` (tether's collector runs at the start of every full
collection), with native counts, parked wrappers and memory back to baseline, weak reference
callbacks run, and native threads holding references into a cycle keeping all of it intact."""

import gc
import weakref
from typing import Optional

import pytest

import tether
from tether import testing

from conftest import churn


class Node(tether.Object):
    val: int
    parent: Optional["Node"] = None
    next: Optional["Node"] = None
    prev: Optional["Node"] = None


class Tree(tether.Object):
    val: int
    parent: Optional["Tree"] = None
    children: list["Tree"] = tether.field(default_factory=list)


class Box(tether.Object):
    o: object = None


class Registry(tether.Object):
    by_name: dict[str, object] = tether.field(default_factory=dict)


class Leaf(tether.Object):
    val: int


def counts():
    gc.collect()
    s = tether.stats()
    return s["native_objects"], s["parked_wrappers"], s["live_wrappers"], s["kept_wrappers"]


@pytest.fixture
def baseline():
    before = counts()
    yield before
    assert counts() == before, "native objects or wrappers left behind"


def test_a_tree_of_ten_thousand_nodes_with_parent_pointers(baseline):
    root = Tree(0)
    level, made = [root], 1
    while made < 10_000:
        nxt = []
        for p in level:
            for _ in range(4):
                c = Tree(made, p)
                p.children.append(c)
                nxt.append(c)
                made += 1
        level = nxt
    assert root.children[0].parent is root
    before = tether.stats()["cycles"]["freed"]
    del root, level, nxt, p, c
    assert tether.stats()["native_objects"] > baseline[0] + 10_000  # reference counting alone
    gc.collect()
    assert tether.stats()["cycles"]["freed"] >= before + 10_000


def test_a_doubly_linked_list(baseline):
    head = Node(0)
    cur = head
    for i in range(1, 1000):
        n = Node(i, prev=cur)
        cur.next = n
        cur = n
    assert head.next.next.prev.prev is head
    del head, cur, n


def test_self_cycles_through_object_fields(baseline):
    for _ in range(100):
        b = Box()
        b.o = b  # stored natively: a native self-cycle
        assert b.o is b
    f = Box()
    f.o = Box(f)  # f -> holder -> f
    assert f.o.o is f
    del b, f


def test_a_cycle_through_a_list_of_nodes_and_a_dict_of_objects(baseline):
    t = Tree(0)
    for i in range(50):
        t.children.append(Tree(i, t))
    r = Registry()
    r.by_name["me"] = r
    r.by_name["tree"] = t
    t.children[0].children.append(Tree(99, t))
    del t, r


def test_weak_references_to_objects_in_a_cycle_run_their_callbacks(baseline):
    seen = []
    a = Node(1)
    a.next = Node(2, next=a)
    ra = weakref.ref(a, lambda _r: seen.append("a"))
    rb = weakref.ref(a.next, lambda _r: seen.append("b"))
    finalized = []
    weakref.finalize(a.next, finalized.append, "b")
    del a
    noise = churn(Leaf)
    assert ra() is not None and rb() is not None  # kept: the cycle is alive until collected
    assert tether.stats()["kept_wrappers"] >= 2
    gc.collect()
    assert sorted(seen) == ["a", "b"]
    assert finalized == ["b"]
    assert ra() is None and rb() is None
    del noise


def test_an_object_a_python_reference_holds_keeps_its_cycle_intact(baseline):
    a = Node(1)
    a.next = Node(2, next=a)
    b = a.next
    del a
    for _ in range(3):
        gc.collect()
    assert b.next.val == 1 and b.next.next is b
    del b


def test_a_native_thread_holding_a_reference_keeps_the_cycle_alive_and_intact(baseline):
    a = Node(1)
    a.next = Node(2, next=a)
    holder = Box(a)  # the native thread reads this field: it holds the cycle through it
    w = testing.start_reader(holder, 0, 200_000)
    del a
    runs = 0
    while not w.done:
        gc.collect()
        runs += 1
        assert holder.o.next.next is holder.o
    testing.join(w)
    assert runs > 0
    assert holder.o.val == 1 and holder.o.next.val == 2
    del holder


def test_a_cycle_only_a_native_thread_holds_stays_alive_and_intact(baseline):
    a = Node(1)
    a.next = Node(2, next=a)
    w = testing.start_holder(a, 2, 300_000)  # field 2 is `next`
    weak = weakref.ref(a.next)
    del a  # from here only the Rust thread holds the cycle
    runs = 0
    while not w.done:
        gc.collect()
        runs += 1
    testing.join(w)  # raises if the thread ever found the cycle broken
    assert runs > 0
    gc.collect()  # now nothing holds it
    assert weak() is None


def test_collections_run_automatically_and_report_their_figures(baseline):
    before = tether.stats()["cycles"]
    for _ in range(2000):
        a = Node(0)
        a.next = a
    del a
    gc.collect()
    after = tether.stats()["cycles"]
    assert after["runs"] > before["runs"]
    assert after["freed"] >= before["freed"] + 2000
    assert after["scanned"] > before["scanned"]
    s = tether.collect_cycles()
    assert set(s) == {"scanned", "found", "freed", "abandoned"}


def test_only_objects_that_hold_references_are_scanned(baseline):
    tracked = tether.stats()["cycles"]["tracked"]
    leaves = [Leaf(i) for i in range(10_000)]
    assert tether.stats()["cycles"]["tracked"] == tracked  # a scalar-only class: never
    nodes = [Node(i) for i in range(100)]
    assert tether.stats()["cycles"]["tracked"] == tracked  # holding nothing: not (yet)
    for a, b in zip(nodes, nodes[1:]):
        a.next = b  # holds a reference: it could be in a cycle from now on
    assert tether.stats()["cycles"]["tracked"] == tracked + 99
    del leaves, nodes, a, b


def test_moved_and_parked_wrappers_of_garbage_are_released(baseline):
    a = Node(1)
    a.next = Node(2, next=a)
    ids = (id(a), id(a.next))  # the child's wrapper parks
    x = a.next
    tether.move(x)  # x is emptied; the native object stays in the cycle
    del a, x
    gc.collect()
    assert tether.stats()["parked_wrappers"] == baseline[1]
    assert len(set(ids)) == 2


class Foo(tether.Object):
    h: object = None

    def on_event(self):
        return "event"


class Holder(tether.Object):
    cb: object = None


GIL_ONLY = pytest.mark.skipif(
    tether._native.FREE_THREADED,
    reason="cycles through Python objects need a moment when no Python count changes: the GIL "
    "(on 3.13t only native cycles are collected; docs/design.md, 'Cycles')",
)


@GIL_ONLY
def test_bound_method_callbacks_are_collected(baseline):
    for _ in range(1000):
        f = Foo()
        f.h = Holder(f.on_event)  # native -> bound method -> wrapper -> native
        assert f.h.cb() == "event"
    del f
    gc.collect()


@GIL_ONLY
def test_cycles_through_python_lists_dicts_and_plain_objects(baseline):
    class Plain:
        pass

    for _ in range(100):
        b = Box()
        b.o = [b, {"k": b}]  # a Python list and dict holding the wrapper
        p = Plain()
        p.box = Box(p)  # a plain Python object, itself held natively
    del b, p
    gc.collect()


@GIL_ONLY
def test_a_python_reference_keeps_a_mixed_cycle_alive_and_intact(baseline):
    b = Box()
    b.o = [b]
    outside = b.o  # the Python list is referenced from outside the cycle
    del b
    gc.collect()
    assert outside[0].o is outside
    del outside


@GIL_ONLY
def test_finalizers_in_a_mixed_cycle_run_once_and_resurrection_keeps_it_intact(baseline):
    calls = []
    saved = []

    class Finalized(tether.Object):
        o: object = None
        v: int = 7

        def __del__(self):
            calls.append(self.v)
            if self.v == 8:
                saved.append(self)  # resurrects the whole cycle

    a = Finalized()
    a.o = [a]
    del a
    gc.collect()
    assert calls == [7]
    r = Finalized(v=8)
    r.o = [r]
    del r
    gc.collect()
    assert calls == [7, 8]
    assert saved[0].v == 8 and saved[0].o[0] is saved[0]  # intact
    saved.clear()
    gc.collect()
    assert calls == [7, 8]  # __del__ ran once (PEP 442)


@GIL_ONLY
def test_a_native_handle_to_the_python_object_keeps_the_cycle(baseline):
    b = Box()
    inner = [b]
    b.o = inner
    keeper = Box(inner)  # a second native holder of the list: outside the cycle
    del b, inner
    gc.collect()
    assert keeper.o[0].o is keeper.o
    del keeper


def test_debug_saveall_keeps_the_garbage_in_gc_garbage_as_for_plain_objects(baseline):
    a = Node(1)
    a.next = Node(2, next=a)
    ids = {id(a), id(a.next)}
    del a
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
    finally:
        gc.set_debug(0)
    saved = [o for o in gc.garbage if isinstance(o, Node)]
    assert len(saved) == 2 and {id(o) for o in saved} == ids  # the canonical wrappers
    assert saved[0].next.next is saved[0]  # intact
    gc.garbage[:] = [o for o in gc.garbage if not isinstance(o, Node)]
    del saved


def test_a_weak_reference_callback_that_resurrects_leaves_the_cycle_intact(baseline):
    # a <-> b natively, both weakly referenced (their wrappers are kept). The collector
    # releases the kept wrappers one by one, every object intact; the first one's callback
    # takes the other back through its weak reference: a resurrection, so nothing is taken
    # apart, and the cycle lives on intact.
    stash = []
    a = Box()
    b = Box(a)
    a.o = b
    refs = {}
    refs["a"] = weakref.ref(a, lambda _r: stash.append(refs["b"]()))
    refs["b"] = weakref.ref(b, lambda _r: stash.append(refs["a"]()))
    del a, b
    before = tether.stats()["cycles"]["abandoned"]
    gc.collect()
    assert stash and stash[0] is not None
    x = stash[0]
    assert x.o.o is x  # resurrected: intact
    assert tether.stats()["cycles"]["abandoned"] == before + 1
    del x
    stash.clear()
    gc.collect()


@GIL_ONLY
def test_a_weakly_referenced_python_object_keeps_its_mixed_cycle(baseline):
    class Plain:
        pass

    p = Plain()
    b = Box(p)
    p.box = b  # native -> Python object -> wrapper -> native
    r = weakref.ref(p)  # a weak reference could reach the cycle while it is taken apart
    del p, b
    gc.collect()
    assert r() is not None and r().box.o is r()  # kept, intact
    del r
    gc.collect()  # now collectable
