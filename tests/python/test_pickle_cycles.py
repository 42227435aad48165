"""Typed cycles round-trip through pickle and deepcopy (two-phase restore, `python/src/restore.rs`):
a doubly linked pair, a self-loop, a ring, cycles through `object` fields and through subclass
instances, and through a strict (non-Optional) field, which waits unresolved for its object; with
identity kept inside the copy; an abandoned restore leaves nothing behind after a collection."""

import copy
import gc
import pickle
import weakref
from typing import Optional

import pytest

import tether
from tether import _native


class Link(tether.Object):
    name: str
    next: Optional["Link"] = None
    prev: Optional["Link"] = None


class Special(Link):
    extra: int = 7


class Box(tether.Object):
    label: str
    content: object = None


class Part(tether.Object):
    owner: object = None


class Owner(tether.Object):
    name: str
    part: Part  # strict: never None


class Leaf(tether.Object):
    v: int


class Pair(tether.Object):
    a: Leaf
    b: Leaf


def round_trips(obj):
    """pickle (every protocol) and deepcopy of `obj`."""
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        yield pickle.loads(pickle.dumps(obj, protocol=proto))
    yield copy.deepcopy(obj)


def test_a_doubly_linked_pair_round_trips_with_its_cycle():
    a = Link("a")
    b = Link("b", prev=a)
    a.next = b
    for a2 in round_trips(a):
        assert a2 is not a
        assert (a2.name, a2.next.name) == ("a", "b")
        assert a2.next.prev is a2
        assert a2.prev is None and a2.next.next is None
    assert _native._pending_restores() == 0
    # The originals are untouched.
    assert a.next is b and b.prev is a


def test_a_self_loop_and_a_ring_round_trip():
    s = Link("s")
    s.next = s
    s.prev = s
    for s2 in round_trips(s):
        assert s2.next is s2 and s2.prev is s2
    ring = [Link(str(i)) for i in range(3)]
    for i, n in enumerate(ring):
        n.next = ring[(i + 1) % 3]
        n.prev = ring[(i - 1) % 3]
    for start in ring:
        for r in round_trips(start):
            names, node = [], r
            for _ in range(3):
                names.append(node.name)
                assert node.next.prev is node and node.prev.next is node
                node = node.next
            assert node is r
            assert names == [start.name, str((int(start.name) + 1) % 3), str((int(start.name) + 2) % 3)]
    assert _native._pending_restores() == 0


def test_cycles_through_object_fields_and_subclass_instances():
    outer = Box("outer")
    inner = Box("inner", content=outer)
    outer.content = inner
    for o2 in round_trips(outer):
        assert o2.content.content is o2
        assert o2.content.label == "inner"
    head = Link("head")
    tail = Special("tail", prev=head, extra=9)
    head.next = tail
    for h2 in round_trips(head):
        assert type(h2.next) is Special and h2.next.extra == 9
        assert h2.next.prev is h2
    # A list in the middle of the cycle keeps its sharing too.
    box = Box("b")
    box.content = [box, box]
    for b2 in round_trips(box):
        assert b2.content[0] is b2 and b2.content[1] is b2
    assert _native._pending_restores() == 0


def test_a_cycle_through_a_strict_field_round_trips_from_either_end():
    # Owner.part cannot be None; the cycle closes through Part.owner (an `object` field, since a
    # class cannot name one defined after it yet). Pickling the Part first
    # restores an Owner whose strict field waits (unresolved) for the Part being restored.
    part = Part()
    owner = Owner("o", part=part)
    part.owner = owner
    for entry in (owner, part):
        for r in round_trips(entry):
            o2 = r if isinstance(r, Owner) else r.owner
            assert o2.name == "o"
            assert o2.part.owner is o2
    assert _native._pending_restores() == 0


def test_an_unresolved_strict_field_reads_none_until_its_object_arrives():
    owner = tether._native._reconstruct(Owner)
    part = tether._native._reconstruct(Part)
    owner.__setstate__({"name": "o", "part": part})  # `part` is not initialized yet
    assert owner.part is None  # unresolved meanwhile (the only time a strict field reads None)
    part.__setstate__({"owner": owner})
    assert owner.part is part and part.owner is owner
    assert _native._pending_restores() == 0


def test_an_abandoned_restore_is_swept_by_the_next_full_collection():
    target = tether._native._reconstruct(Link)
    waiting_for = tether._native._reconstruct(Link)
    watch = weakref.ref(waiting_for)
    target.__setstate__({"name": "t", "next": waiting_for})
    assert target.next is None  # the first phase stored None
    assert _native._pending_restores() == 1
    # The unpickling that would have initialized `waiting_for` never happens.
    del waiting_for
    gc.collect()
    assert _native._pending_restores() == 0
    assert watch() is None
    assert target.name == "t" and target.next is None
    # The same for a strict field: it stays unresolved (reads None) and can be assigned.
    owner = tether._native._reconstruct(Owner)
    part = tether._native._reconstruct(Part)
    owner.__setstate__({"name": "o", "part": part})
    del part
    gc.collect()
    assert _native._pending_restores() == 0
    assert owner.part is None
    owner.part = Part(owner=owner)
    assert owner.part.owner is owner
    # And a completed second phase still works afterwards.
    a = Link("a")
    a.next = Link("b", prev=a)
    assert pickle.loads(pickle.dumps(a)).next.prev.name == "a"


def test_sharing_follows_the_native_objects_with_tying_off():
    # With tying off every access gives a fresh wrapper, but pickle and deepcopy must still
    # keep two fields that hold one native object as one object in the copy.
    leaf = Leaf(1)
    p = Pair(leaf, leaf)
    ring = Link("r")
    ring.next = ring
    tether.set_tying(False)
    try:
        assert p.a is not p.b  # fresh wrappers: what tying off means
        for p2 in round_trips(p):
            p2.a.v = 5
            assert p2.b.v == 5  # one native object behind both fields
            assert p2.a is not p2.b
        for r2 in round_trips(ring):
            r2.next.name = "changed"
            assert r2.name == "changed"  # the self-loop is one native object
    finally:
        tether.set_tying(True)
    assert p.a is p.b and p.a.v == 1
    ring.next = None


class Kid(tether.Object):
    name: str
    parent: Optional["Family"] = None


class Family(tether.Object):
    name: str
    kids: object = None


class Boom:
    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise RuntimeError("unpickling failed here")


def test_a_failed_unpickling_with_several_waiters_is_swept():
    f = Family("f")
    f.kids = (Kid("a", parent=f), Kid("b", parent=f), Boom())
    data = pickle.dumps(f)
    with pytest.raises(RuntimeError, match="unpickling failed here"):
        pickle.loads(data)
    gc.collect()
    assert _native._pending_restores() == 0  # two fields waited for one source: both swept
    f.kids = None


class Reinit(tether.Object):
    name: str
    other: Optional["Mate"] = None

    def __setstate__(self, state):
        self.__init__(**state)  # initialized by __init__, not by tether's __setstate__


class Mate(tether.Object):
    back: Optional[Reinit] = None


def test_a_source_initialized_by_init_completes_the_fields_that_wait_for_it():
    r = Reinit("r")
    m = Mate(r)
    r.other = m
    for r2 in round_trips(r):
        assert r2.other.back is r2
    assert _native._pending_restores() == 0
    r.other = None


class Renamed(tether.Object):
    v: int = 0
    back: object = None


class Chameleon(tether.Object):
    v: int = 0
    back: object = None

    def __setstate__(self, state):
        self.__class__ = Renamed  # the class changes while it is restored
        tether.Object.__setstate__(self, state)


class Keeper(tether.Object):
    ref: Optional[Chameleon] = None


def test_a_source_whose_class_changed_does_not_land_in_a_field_it_no_longer_fits():
    c = Chameleon()
    k = Keeper(ref=c)
    c.back = k
    c2 = pickle.loads(pickle.dumps(c))
    assert type(c2) is Renamed
    k2 = c2.back
    assert k2.ref is None  # not a Renamed in an Optional[Chameleon] field
    k2.ref = Chameleon()  # the field still works
    assert _native._pending_restores() == 0
    c.back = None


def test_a_moved_out_object_in_a_state_is_an_error_not_a_wait():
    h = tether._native._reconstruct(Link)
    moved = Link("m")
    token = tether.move(moved)
    with pytest.raises(tether.MovedError):
        h.__setstate__({"name": "h", "next": moved})
    assert _native._pending_restores() == 0
    assert Link("x", token).next.name == "m"  # the token kept its object


STRICT_FORWARD = """
import tether
from typing import Optional

import pytest

class P(tether.Object):
    c: "C"

class C(tether.Object):
    p: Optional[P] = None
"""


def test_a_strict_forward_field_in_a_cycle_round_trips_from_either_end(tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "strict_forward_mod.py").write_text(STRICT_FORWARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("strict_forward_mod")
    try:
        c = mod.C()
        p = mod.P(c)
        c.p = p
        for root in (p, c):
            for r in round_trips(root):
                p2 = r if isinstance(r, mod.P) else r.p
                assert p2.c.p is p2
        assert _native._pending_restores() == 0
        c.p = None
    finally:
        sys.modules.pop("strict_forward_mod", None)
