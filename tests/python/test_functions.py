"""Native functions, return policies, callbacks, moves, pickle and copies, threads."""

import copy
import pickle
import threading

import pytest
from conftest import churn
from models import Inner, Node, Outer, Pair

import tether
from tether import testing


def test_echo_is_tied():
    x = Inner(1)
    assert testing.echo(x) is x
    assert testing.echo(5) == 5 and testing.echo("s") == "s" and testing.echo(None) is None


def test_echo_fresh_is_a_new_unbound_wrapper():
    x = Inner(1)
    y = testing.echo_fresh(x)
    assert y is not x and y.val == 1
    y.val = 2  # same native object behind both
    assert x.val == 2
    del y
    assert testing.echo(x) is x


def test_function_returning_a_parked_object_revives_it():
    a = Outer(Inner(1))
    first = id(a.x)
    others = churn(Inner)
    assert id(testing.echo(a.x)) == first
    del others


def test_callback_arguments_are_canonical():
    x = Inner(1)
    seen = []
    out = testing.call(lambda y: seen.append(y) or y, x)
    assert seen[0] is x and out is x


def test_callback_exception_propagates():
    def boom(_):
        raise KeyError("inner failure")

    with pytest.raises(KeyError, match="inner failure"):
        testing.call(boom, 1)


def test_host_function_and_registry():
    tether.register_global("tests.add", lambda a, b: a + b, override=True)
    add = tether.get_global("tests.add")
    assert add(2, 3) == 5
    assert "tests.add" in tether.list_globals()
    with pytest.raises(LookupError):
        tether.get_global("tests.does_not_exist")


def test_use_count():
    x = Inner(1)
    assert testing.use_count(x) == 1
    o = Outer(x)
    assert testing.use_count(x) == 2
    del o
    assert testing.use_count(x) == 1


def test_move_detaches_and_later_use_raises():
    o = Outer(Inner(1))
    x = o.x
    testing.discard(tether.move(x))
    with pytest.raises(tether.MovedError):
        x.val
    with pytest.raises(tether.MovedError):
        x.val = 3
    with pytest.raises(tether.MovedError):
        tether.move(x)
    y = o.x  # the field still yields a canonical wrapper
    assert y is o.x and y is not x and y.val == 1


def test_move_into_a_field():
    x = Inner(4)
    o = Outer(tether.move(x))
    assert o.x.val == 4 and o.x is not x
    with pytest.raises(tether.MovedError):
        x.val


def test_moved_token_is_consumed_once():
    m = tether.move(Inner(1))
    testing.discard(m)
    with pytest.raises(tether.MovedError):
        testing.discard(m)


def test_pickle_round_trip_keeps_shared_substructure():
    i = Inner(1)
    p = Pair(i, i)
    p2 = pickle.loads(pickle.dumps(p))
    assert p2.a is p2.b
    assert p2.a.val == 1 and p2.a is not i
    o2 = pickle.loads(pickle.dumps(Outer(Inner(3), name="n")))
    assert o2.x.val == 3 and o2.name == "n" and o2.x is o2.x


def test_pickle_of_self_containing_object_field_round_trips():
    from models import Holder

    h = Holder(None)
    h.payload = h  # through an `object` field: pickle's memo resolves the cycle
    h2 = pickle.loads(pickle.dumps(h))
    assert h2.payload is h2
    h.payload = h2.payload = None  # native cycles are not collected: break them


def test_pickle_of_recursive_native_structure_round_trips():
    n = Node(1)
    n.next = n  # a native cycle through a typed field
    n2 = pickle.loads(pickle.dumps(n))
    assert n2.next is n2
    n.next = None
    n2.next = None


def test_copy_shares_native_children_and_deepcopy_does_not():
    o = Outer(Inner(1))
    c = copy.copy(o)
    assert c is not o and c.x is o.x
    d = copy.deepcopy(o)
    assert d.x is not o.x and d.x.val == 1
    n = Node(1, Node(2))
    assert copy.deepcopy(n).next.value == 2


def test_make_tree_is_wrapped_lazily_and_canonically():
    base = tether.stats()
    t = testing.make_tree(10)
    assert tether.stats()["live_wrappers"] == base["live_wrappers"] + 1
    assert t.left is t.left
    assert (t.value, t.left.value, t.right.value, t.left.left.value) == (0, 1, 2, 3)
    assert type(t) is testing.TreeNode
    with pytest.raises(TypeError):
        testing.TreeNode()
    count = 0
    stack = [t]
    while stack:
        n = stack.pop()
        count += 1
        if n.left is not None:
            stack.append(n.left)
            stack.append(n.right)
    assert count == 2**11 - 1
    del t, n, stack
    assert tether.stats()["native_objects"] == base["native_objects"]


def test_threads_see_one_wrapper():
    o = Outer(Inner(1))
    errors = []

    def work():
        try:
            for _ in range(2000):
                p = o.x
                q = o.x
                assert p is q
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def test_keyword_arguments_to_a_native_function_get_a_clear_error():
    with pytest.raises(TypeError, match=r"positional arguments only \(got keyword argument sep\)"):
        testing.call(print, 1, sep="-")
    assert testing.call(lambda a, b: a + b, 1, 2) == 3
