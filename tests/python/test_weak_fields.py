"""Weak fields (`tether.Weak[Node]`, part of the containers and field-types issue): a field that
holds an object without keeping it alive, so a parent pointer makes no cycle. Reads give the
object while it lives (its canonical wrapper, same identity), then None; writes are type-checked
like any field."""

import copy
import gc
import pickle
from typing import Optional

import pytest

import tether
from conftest import churn
from tether import testing


class Node(tether.Object):
    name: str
    parent: tether.Weak["Node"] = None
    first: Optional["Node"] = None
    next: Optional["Node"] = None


class Other(tether.Object):
    v: int = 0


def test_a_weak_field_reads_the_object_while_it_lives_then_none():
    p = Node("p")
    c = Node("c", parent=p)
    p.first = c
    assert c.parent is p and c.parent is c.parent
    assert testing.use_count(p) == 1  # only p's wrapper: the weak field holds no strong count
    first = id(c.parent)
    noise = churn(Other)  # other live wrappers of the same size (one size for all classes)
    assert id(c.parent) == first  # parked and revived at the same address while p lives
    del p, noise
    gc.collect()
    assert c.parent is None
    # The dead object's block is kept by the weak count, so its address is not reused by a new
    # object that the weak field could mistake for it.
    others = [Node(str(i)) for i in range(200)]
    assert c.parent is None
    c.parent = others[0]
    assert c.parent is others[0]
    c.parent = None
    assert c.parent is None


def test_a_tree_with_weak_parent_pointers_is_freed_when_its_root_goes():
    gc.collect()
    base = tether.stats()
    root = Node("root")
    level = [root]
    for depth in range(3):
        nxt = []
        for n in level:
            prev = None
            for i in range(10):
                child = Node(f"{n.name}.{i}", parent=n)
                if prev is None:
                    n.first = child
                else:
                    prev.next = child
                prev = child
                nxt.append(child)
        level = nxt
    assert tether.stats()["native_objects"] - base["native_objects"] == 1 + 10 + 100 + 1000
    leaf = level[-1]
    assert leaf.parent.parent.parent is root
    del level, nxt, child, prev, n, leaf
    del root
    gc.collect()
    s = tether.stats()
    assert s["native_objects"] == base["native_objects"]  # no cycle: nothing leaked
    assert s["parked_wrappers"] == base["parked_wrappers"]


def test_weak_fields_are_type_checked_and_refuse_tokens():
    n = Node("n")
    with pytest.raises(TypeError, match=r"field 'parent': expected tether.Weak\[Node\], got Other"):
        n.parent = Other()
    with pytest.raises(TypeError, match="got int"):
        Node("m", parent=3)
    with pytest.raises(TypeError, match="token cannot go into a weak field"):
        n.parent = tether.move(Node("x"))
    assert n.parent is None


class Later(tether.Object):
    up: "tether.Weak[Target]" = None  # a class defined further down
    opt: Optional[tether.Weak["Later"]] = None


class Target(tether.Object):
    v: int = 1


def test_weak_field_spellings():
    t = Target()
    later = Later(t)
    assert later.up is t
    with pytest.raises(TypeError):
        Later(up=later)  # not a Target
    later.opt = later  # a weak self-reference: no cycle
    assert later.opt is later
    with pytest.raises(TypeError, match=r"tether.Weak\[...\] takes a tether class"):

        class Bad(tether.Object):
            w: tether.Weak[int] = None


def test_weak_fields_round_trip_through_pickle_and_deepcopy():
    p = Node("p")
    c = Node("c", parent=p)
    p.first = c
    for p2 in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
        assert p2.first.parent is p2 and p2.first.name == "c"
    # Pickling the child alone: its parent is only weakly held, so the copy's parent dies with
    # the copy of the pickled data unless something holds it.
    c2 = pickle.loads(pickle.dumps(c))
    gc.collect()
    assert c2.parent is None


def test_weak_field_spellings_with_none_and_refusals():
    class W(tether.Object):
        a: tether.Weak[Target] | None = None
        b: None | tether.Weak[Target] = None

    t = Target()
    w = W(t, t)
    assert w.a is t and w.b is t
    with pytest.raises(TypeError, match="weak field cannot have a default_factory"):

        class F(tether.Object):
            p: tether.Weak[Target] = tether.field(default_factory=Target)

    with pytest.raises(TypeError, match="weak field 'ref' changes"):

        class Key(tether.Object, frozen=True, eq=True):
            name: str = ""
            ref: tether.Weak[Target] = None
