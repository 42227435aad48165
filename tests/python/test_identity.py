"""States (b) and (c) of the tie machine, seen from Python."""

import gc
import sys

import pytest
from conftest import churn
from models import Child, Inner, Node, Outer, Pair

import tether
from tether import testing


def test_field_access_is_canonical():
    a = Outer(Inner(1))
    assert a.x is a.x
    assert id(a.x) == id(a.x)
    ids = {id(a.x) for _ in range(100)}
    assert len(ids) == 1


def test_constructed_object_is_the_canonical_wrapper():
    i = Inner(5)
    a = Outer(i)
    assert a.x is i


def test_distinct_native_objects_have_distinct_wrappers():
    a = Outer(Inner(1))
    b = Outer(Inner(1))
    assert a.x is not b.x
    p = Pair(Inner(1), Inner(1))
    assert p.a is not p.b


def test_shared_native_child_is_one_wrapper():
    i = Inner(3)
    p = Pair(i, i)
    assert p.a is p.b is i


def test_id_survives_wrapper_death_and_revival():
    a = Outer(Inner(7))
    first = id(a.x)
    others = churn(Inner)  # other live wrappers of the same size, created after the drop
    assert id(a.x) == first
    assert a.x.val == 7
    del others


def test_revive_keeps_one_address_over_2000_cycles():
    a = Outer(Inner(1))
    keep = []
    addresses = set()
    for i in range(2000):
        addresses.add(id(a.x))
        keep.append(Inner(i))  # a new live wrapper every cycle
        if len(keep) > 64:
            keep.pop(0)
    assert len(addresses) == 1


def test_parked_memory_is_counted_and_revived():
    a = Outer(Inner(1))
    a.x  # wrap, then the temporary dies: parked
    before = tether.stats()["parked_wrappers"]
    x = a.x  # revive
    assert tether.stats()["parked_wrappers"] == before - 1
    del x
    assert tether.stats()["parked_wrappers"] == before


def test_last_reference_held_by_wrapper_is_not_parked():
    base = tether.stats()
    x = Inner(1)
    del x  # the wrapper held the only native reference: both go at once
    after = tether.stats()
    assert after["parked_wrappers"] == base["parked_wrappers"]
    assert after["native_objects"] == base["native_objects"]


def test_object_dying_while_parked_releases_the_memory():
    base = tether.stats()
    a = Outer(Inner(1))
    a.x
    assert tether.stats()["parked_wrappers"] == base["parked_wrappers"] + 1
    del a  # the child dies while parked: its memory goes back to the pool, once
    after = tether.stats()
    assert after["parked_wrappers"] == base["parked_wrappers"]
    assert after["native_objects"] == base["native_objects"]
    assert after["live_wrappers"] == base["live_wrappers"]


def test_replacing_a_field_releases_parked_child():
    base = tether.stats()["parked_wrappers"]
    a = Outer(Inner(1))
    a.x
    assert tether.stats()["parked_wrappers"] == base + 1
    a.x = Inner(2)  # the old child dies while parked; the new one's temporary wrapper parks
    assert tether.stats()["parked_wrappers"] == base + 1
    assert a.x.val == 2
    del a
    assert tether.stats()["parked_wrappers"] == base


def test_field_setter_after_revive():
    a = Outer(Inner(1))
    first = id(a.x)
    others = churn(Inner)
    a.x.val = 42
    assert id(a.x) == first
    assert a.x.val == 42
    del others


def test_subclass_in_base_typed_field_keeps_its_class():
    a = Outer(Child(1, "hello"))
    assert type(a.x) is Child
    assert a.x.extra == "hello"
    others = churn(Inner)
    assert type(a.x) is Child
    del others


def test_no_growth_of_live_wrappers_over_1000_objects():
    base0 = tether.stats()
    objs = [Outer(Inner(i)) for i in range(1000)]
    base = tether.stats()
    # each temporary Inner wrapper died right after construction: parked, not live
    assert base["parked_wrappers"] == base0["parked_wrappers"] + 1000
    assert base["live_wrappers"] == base0["live_wrappers"] + 1000
    for _ in range(3):
        for o in objs:
            o.x.val
    del o
    after = tether.stats()
    assert after["live_wrappers"] == base["live_wrappers"]
    assert after["parked_wrappers"] == base["parked_wrappers"]
    del objs
    final = tether.stats()
    assert final["parked_wrappers"] == base0["parked_wrappers"]
    assert final["live_wrappers"] == base0["live_wrappers"]
    assert final["native_objects"] == base0["native_objects"]


def test_refcounts_stable_over_cycles():
    a = Outer(Inner(1))
    x = a.x
    rc = sys.getrefcount(x)
    for _ in range(1000):
        y = a.x
        del y
    assert sys.getrefcount(x) == rc
    del x
    rc_a = sys.getrefcount(a)
    for _ in range(1000):
        a.x
    assert sys.getrefcount(a) == rc_a


def test_native_counts_back_to_baseline():
    gc.collect()
    base = tether.stats()
    for _ in range(100):
        a = Outer(Inner(1), note=Inner(2))
        a.x, a.note
        b = testing.echo(a)
        assert b is a
    del a, b
    gc.collect()
    after = tether.stats()
    assert after["native_objects"] == base["native_objects"]
    assert after["parked_wrappers"] == base["parked_wrappers"]
    assert after["live_wrappers"] == base["live_wrappers"]


def test_self_referencing_class_annotation():
    n = Node(1, Node(2))
    assert n.next.value == 2
    assert n.next is n.next
    with pytest.raises(TypeError):
        n.next = Inner(1)


class WithDel(tether.Object):
    v: int
    log = []

    def __del__(self):
        WithDel.log.append(self.v)


class HoldsDel(tether.Object):
    d: WithDel


def test_del_class_is_never_parked_and_finalizer_runs_each_drop():
    h = HoldsDel(WithDel(3))
    assert WithDel.log == [3]  # the temporary wrapper was finalized, not parked
    WithDel.log.clear()
    base = tether.stats()["parked_wrappers"]
    for _ in range(5):
        h.d
    assert WithDel.log == [3] * 5
    assert tether.stats()["parked_wrappers"] == base


def test_tying_switch_hands_out_fresh_wrappers():
    a = Outer(Inner(1))
    tether.set_tying(False)
    assert not tether.tying_enabled()
    assert a.x is not a.x
    assert a.x.val == 1
    tether.set_tying(True)
    assert a.x is a.x


def test_type_mismatch_on_revive_falls_back_to_a_new_wrapper():
    a = Outer(Inner(1))
    x = a.x
    x.__class__ = Child  # CPython allows it between tether classes of one layout
    del x  # parked, remembering the wrong class
    base = tether.stats()
    y = a.x  # cannot revive as Child: the block goes back to the pool, a new Inner wrapper comes
    assert type(y) is Inner and y.val == 1
    after = tether.stats()
    assert after["parked_wrappers"] == base["parked_wrappers"] - 1
    assert after["live_wrappers"] == base["live_wrappers"] + 1
    assert a.x is y
