"""tether.List and tether.Dict: identity of containers and elements, Python list and dict
semantics against the built-in models, type errors that change nothing, reference semantics of
container fields, pickle and copy sharing, iteration under mutation, deep structures."""

from __future__ import annotations

import collections.abc
import copy
import gc
import pickle
import threading
from typing import Optional

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tether


class Node(tether.Object):
    name: str
    children: list[Node] = tether.field(default_factory=list)
    attrs: dict[str, int] = tether.field(default_factory=dict)
    parent: tether.Weak[Node] = None


class Grid(tether.Object):
    rows: list[list[int]] = tether.field(default_factory=list)
    groups: dict[str, list[Node]] = tether.field(default_factory=dict)
    maybe: list[Optional[Node]] = tether.field(default_factory=list)
    by_node: dict[Node, int] = tether.field(default_factory=dict)
    spare: Optional[list[int]] = None


def noise(n=64):
    return [Node(str(i)) for i in range(n)]


# --- identity ------------------------------------------------------------------------------


def test_the_issue_example():
    n = Node("root")
    c = Node("c", parent=n)
    n.children.append(c)
    assert n.children is n.children
    assert n.children[0] is n.children[0] is c
    first = id(n.children[0])
    del c
    junk = noise()
    assert id(n.children[0]) == first
    assert n.children[0].parent is n
    del junk


def test_the_container_wrapper_itself_is_parked_and_revived():
    n = Node("n")
    n.children.append(Node("a"))
    first = id(n.children)
    junk = [tether.List[int]([i]) for i in range(64)]
    assert id(n.children) == first
    del junk


def test_iteration_and_reversed_give_the_canonical_wrappers():
    kids = [Node(str(i)) for i in range(5)]
    n = Node("n", children=kids)
    assert [c for c in n.children] == kids
    assert all(a is b for a, b in zip(n.children, kids))
    assert all(a is b for a, b in zip(reversed(n.children), reversed(kids)))
    assert kids[2] in n.children and Node("x") not in n.children


# --- list semantics against the model -------------------------------------------------------


def ints(xs):
    return tether.List[int](xs)


def test_every_list_method_against_a_python_list():
    model = [3, 1, 2]
    t = ints(model)
    assert isinstance(t, collections.abc.MutableSequence)
    ops = [
        lambda l: l.append(4),
        lambda l: l.extend([5, 6]),
        lambda l: l.insert(0, 0),
        lambda l: l.insert(-1, 9),
        lambda l: l.insert(100, 7),
        lambda l: l.pop(),
        lambda l: l.pop(0),
        lambda l: l.remove(9),
        lambda l: l.reverse(),
        lambda l: l.sort(),
        lambda l: l.sort(reverse=True, key=lambda x: x % 3),
        lambda l: l.__setitem__(1, 42),
        lambda l: l.__setitem__(-1, 43),
        lambda l: l.__setitem__(slice(1, 3), [10, 11, 12]),
        lambda l: l.__setitem__(slice(None, None, 2), [0] * len(range(0, len(l), 2))),
        lambda l: l.__delitem__(0),
        lambda l: l.__delitem__(slice(None, None, 2)),
        lambda l: l.__iadd__([8, 8]),
        lambda l: l.__imul__(2),
    ]
    for op in ops:
        r1, r2 = op(model), op(t)
        if not isinstance(r1, list):
            assert r1 == r2
        assert t == model and list(t) == model, op
        assert len(t) == len(model)
        assert repr(t) == repr(model)
    assert t[-1] == model[-1] and t[0] == model[0]
    assert t[1:4] == model[1:4] and t[::-1] == model[::-1] and t[::2] == model[::2]
    assert isinstance(t[1:3], tether.List)
    assert t.index(8) == model.index(8) and t.count(8) == model.count(8)
    assert (t + [1]) == model + [1] and ([1] + t) == [1] + model
    assert t * 2 == model * 2 and 2 * t == 2 * model
    assert t.copy() == model and t.copy() is not t
    assert t == ints(model) and t != ints(model + [1])
    with pytest.raises(IndexError):
        t[100]
    with pytest.raises(ValueError):
        t.remove(12345)
    with pytest.raises(ValueError):
        t.index(12345)
    t.clear()
    assert t == [] and len(t) == 0
    with pytest.raises(IndexError, match="pop from empty list"):
        t.pop()
    with pytest.raises(TypeError):
        hash(t)


def test_slices_share_elements_and_slice_assignment_checks_lengths():
    kids = [Node(str(i)) for i in range(4)]
    l = tether.List[Node](kids)
    part = l[1:3]
    assert part[0] is kids[1] and part[1] is kids[2]
    with pytest.raises(ValueError, match="extended slice of size 2"):
        l[::2] = [Node("x")]
    assert list(l) == kids


# --- type errors change nothing -------------------------------------------------------------


def test_a_wrong_element_names_the_container_the_index_and_the_types_and_changes_nothing():
    n = Node("n", children=[Node("a")])
    before = list(n.children)
    with pytest.raises(TypeError, match=r"tether.List\[Node\] index 1: expected Node, got int"):
        n.children.append(5)
    with pytest.raises(TypeError, match=r"index 2: expected Node, got str"):
        n.children.extend([Node("b"), "c"])
    with pytest.raises(TypeError, match=r"expected Node, got int"):
        n.children[0] = 1
    with pytest.raises(TypeError):
        n.children[0:1] = [Node("x"), 3]
    with pytest.raises(TypeError):
        n.children += [None]
    with pytest.raises(TypeError, match=r"expected Node"):
        n.children.insert(0, "z")
    assert list(n.children) == before
    with pytest.raises(TypeError, match=r"tether.Dict\[str, int\] key 'b': expected int, got str"):
        n.attrs.update({"a": 1, "b": "two"})
    assert dict(n.attrs) == {}
    with pytest.raises(TypeError, match="expected a str key, got int"):
        n.attrs[1] = 1
    with pytest.raises(OverflowError):
        n.attrs["big"] = 2**70
    assert dict(n.attrs) == {}


def test_nested_element_kinds():
    g = Grid(rows=[[1, 2], [3]])
    assert g.rows == [[1, 2], [3]]
    assert isinstance(g.rows[0], tether.List)
    assert g.rows[0] is g.rows[0]
    g.rows[1].append(4)
    assert g.rows[1] == [3, 4]
    with pytest.raises(
        TypeError, match=r"tether.List\[list\[int\]\] index 2: tether.List\[int\] index 0: expected int"
    ):
        g.rows.append(["x"])
    assert len(g.rows) == 2
    a, b = Node("a"), Node("b")
    g.groups["x"] = [a, b]
    assert g.groups["x"][1] is b
    g.maybe.extend([None, a])
    assert g.maybe[0] is None and g.maybe[1] is a
    g.by_node[a] = 1
    g.by_node[b] = 2
    assert g.by_node[a] == 1 and list(g.by_node) == [a, b]
    assert Node("a") not in g.by_node  # keys by identity
    g.spare = [1]
    assert g.spare == [1]
    g.spare = None
    assert g.spare is None


# --- reference semantics --------------------------------------------------------------------


def test_fields_share_containers_of_one_kind_and_convert_plain_ones():
    a, b = Node("a"), Node("b")
    a.children = b.children
    assert a.children is b.children
    b.children.append(Node("c"))
    assert len(a.children) == 1
    plain = [Node("x")]
    a.children = plain
    assert a.children is not b.children and a.children == plain
    plain.append(Node("y"))
    assert len(a.children) == 1  # converted: a new native list
    a.children = (Node(str(i)) for i in range(3))  # any iterable
    assert len(a.children) == 3
    with pytest.raises(TypeError, match=r"expected tether.List\[Node\], got tether.List\[int\]"):
        a.children = tether.List[int]([1])
    a.attrs = {"k": 1}
    assert a.attrs == {"k": 1}
    with pytest.raises(TypeError):
        a.children = "not a list"


def test_a_container_field_default_must_be_a_factory():
    with pytest.raises(TypeError, match="default_factory"):

        class Bad(tether.Object):
            items: list[int] = ()


# --- dict semantics -------------------------------------------------------------------------


def test_every_dict_method_against_a_python_dict():
    model = {"a": 1, "b": 2}
    t = tether.Dict[str, int](model)
    assert isinstance(t, collections.abc.MutableMapping)
    assert t == model and repr(t) == repr(model) and len(t) == 2
    assert list(t) == list(model) and list(t.keys()) == list(model.keys())
    assert list(t.values()) == list(model.values()) and list(t.items()) == list(model.items())
    assert t.get("a") == 1 and t.get("z") is None and t.get("z", 5) == 5
    assert "a" in t and "z" not in t and 3 not in t
    assert t.setdefault("c", 3) == 3 and t.setdefault("c", 4) == 3
    model.setdefault("c", 3)
    assert t.pop("a") == model.pop("a")
    assert t.pop("zz", 9) == 9
    with pytest.raises(KeyError):
        t.pop("zz")
    with pytest.raises(KeyError):
        t["zz"]
    t.update({"d": 4}, e=5)
    model.update({"d": 4}, e=5)
    t.update([("f", 6)])
    model.update([("f", 6)])
    assert t == model and list(t) == list(model)  # insertion order
    assert t.popitem() == model.popitem()
    del t["b"]
    del model["b"]
    assert t == model
    c = t.copy()
    assert c == t and c is not t
    t.clear()
    assert t == {} and len(t) == 0
    with pytest.raises(KeyError):
        t.popitem()
    assert tether.Dict[int, str]({1: "x"})[1] == "x"
    assert tether.Dict[bytes, int]({b"k": 1})[b"k"] == 1
    with pytest.raises(TypeError):
        hash(t)


def test_iteration_while_mutating():
    t = ints([1, 2, 3])
    seen = []
    for x in t:  # like a Python list: by index, sees changes, never fails
        seen.append(x)
        if x == 1:
            t.append(4)
    assert seen == [1, 2, 3, 4]
    d = tether.Dict[str, int]({"a": 1, "b": 2})
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        for k in d:
            d["new" + k] = 0


# --- pickle and copy ------------------------------------------------------------------------


def test_pickle_and_copies_keep_shared_substructure():
    a = Node("a")
    n = Node("n", children=[a, a])
    m = Node("m")
    m.children = n.children
    for p_n, p_m in (
        pickle.loads(pickle.dumps((n, m))),
        copy.deepcopy((n, m)),
    ):
        assert p_n.children is p_m.children
        assert p_n.children[0] is p_n.children[1]
        assert p_n.children[0] is not a
        assert p_n.children[0].name == "a"
    s = copy.copy(n)
    assert s.children is n.children  # a shallow copy shares the container
    l2 = pickle.loads(pickle.dumps(tether.List[Node]([a, a])))
    assert l2[0] is l2[1] and isinstance(l2, tether.List)
    d2 = pickle.loads(pickle.dumps(tether.Dict[str, int]({"x": 1})))
    assert d2 == {"x": 1}


def test_a_cycle_through_a_container_is_refused_on_restore_with_a_clear_error():
    """Two-phase restore covers cycles through typed fields (test_pickle_cycles.py); a
    container cannot hold an object before the object exists, so a cycle through one is
    refused, and nothing is left half made."""
    n = Node("n")
    n.children.append(n)
    data = pickle.dumps(n)
    with pytest.raises(TypeError, match="reaches itself through a container"):
        pickle.loads(data)
    with pytest.raises(TypeError, match="reaches itself through a container"):
        copy.deepcopy(n)
    n.children.clear()  # break the cycle (native cycles are not collected yet)


# --- deep structures and threads ------------------------------------------------------------


def test_freeing_a_deep_chain_of_containers_uses_bounded_stack():
    """Node -> its children list -> Node -> ...: 200,000 native objects deep, freed when the
    head goes (through the runtime's trashcan, not recursion)."""
    gc.collect()
    base = tether.stats()["native_objects"]
    chain = tether.List[Node]([])
    cur = Node("0")
    chain.append(cur)
    for i in range(100_000):
        nxt = Node(str(i))
        cur.children.append(nxt)
        cur = nxt
    del cur, nxt, chain
    gc.collect()
    assert tether.stats()["native_objects"] <= base


def test_one_container_wrapper_for_every_thread():
    n = Node("n", children=[Node("a")])
    seen = []

    def read():
        for _ in range(2000):
            c = n.children
            seen.append(c is n.children and c[0] is n.children[0])

    ts = [threading.Thread(target=read) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(seen) and len(seen) == 8000


# --- containers made by Rust code -----------------------------------------------------------


def test_containers_built_natively_keep_the_identity_of_their_elements():
    from tether import testing

    nodes, by_index = testing.make_list(5)
    assert isinstance(nodes, tether.List) and isinstance(by_index, tether.Dict)
    assert len(nodes) == 5 and [n.value for n in nodes] == [0] * 5
    assert nodes[2] is nodes[2] is by_index[2]  # one wrapper per native node, both ways
    first = id(nodes[3])
    junk = [testing.make_tree(0) for _ in range(64)]
    assert id(nodes[3]) == first
    nodes.append(testing.make_tree(0))  # the element kind is TreeNode, natively
    with pytest.raises(TypeError, match="expected TreeNode, got int"):
        nodes.append(1)
    with pytest.raises(TypeError, match="made by Rust code"):
        pickle.dumps(nodes)
    del junk


# --- the stateful model ---------------------------------------------------------------------


class ListAndDictMachine(RuleBasedStateMachine):
    """tether.List[Node] and tether.Dict[str, int] driven side by side with a list and a dict,
    with wrapper deaths (the elements are only held by the containers) and allocation noise."""

    def __init__(self):
        super().__init__()
        self.t = tether.List[Node]([])
        self.m = []  # names of the nodes, in order
        self.td = tether.Dict[str, int]({})
        self.md = {}
        self.made = 0

    def node(self):
        self.made += 1
        return Node(f"n{self.made}")

    @rule()
    def append(self):
        x = self.node()
        self.t.append(x)
        self.m.append(x.name)

    @rule(i=st.integers(-5, 5))
    def insert(self, i):
        x = self.node()
        self.t.insert(i, x)
        self.m.insert(i, x.name)

    @precondition(lambda self: self.m)
    @rule(i=st.integers(-5, 5))
    def pop(self, i):
        if -len(self.m) <= i < len(self.m):
            assert self.t.pop(i).name == self.m.pop(i)

    @rule(k=st.integers(0, 4), bad=st.booleans())
    def extend(self, k, bad):
        xs = [self.node() for _ in range(k)]
        if bad:
            with pytest.raises(TypeError):
                self.t.extend(xs + [1])
        else:
            self.t.extend(xs)
            self.m.extend(x.name for x in xs)

    @rule(a=st.integers(-6, 6), b=st.integers(-6, 6), k=st.integers(0, 3))
    def set_slice(self, a, b, k):
        xs = [self.node() for _ in range(k)]
        self.t[a:b] = xs
        self.m[a:b] = [x.name for x in xs]

    @rule(a=st.integers(-6, 6), b=st.integers(-6, 6))
    def del_slice(self, a, b):
        del self.t[a:b]
        del self.m[a:b]

    @rule()
    def reverse_sort(self):
        self.t.reverse()
        self.m.reverse()
        self.t.sort(key=lambda n: n.name)
        self.m.sort()

    @rule()
    def churn(self):
        junk = noise(8)
        del junk

    @rule(k=st.sampled_from("abcde"), v=st.integers(-3, 3))
    def dict_set(self, k, v):
        self.td[k] = v
        self.md[k] = v

    @rule(k=st.sampled_from("abcde"))
    def dict_pop(self, k):
        assert self.td.pop(k, None) == self.md.pop(k, None)

    @rule(bad=st.booleans())
    def dict_update(self, bad):
        new = {"f": 1, "a": 2}
        if bad:
            with pytest.raises(TypeError):
                self.td.update({**new, "g": "x"})
        else:
            self.td.update(new)
            self.md.update(new)

    @invariant()
    def same(self):
        assert [n.name for n in self.t] == self.m
        assert len(self.t) == len(self.m)
        if self.m:
            assert self.t[0] is self.t[0]
        assert dict(self.td.items()) == self.md and list(self.td) == list(self.md)


TestListAndDict = ListAndDictMachine.TestCase
TestListAndDict.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_move_tokens_are_consumed_only_by_a_change_that_happens():
    """A tether.move() token goes into a container only if the change happens: a refused
    extend, a setdefault that finds its key, and a sort that loses its race keep the token's
    object for the next use."""
    a, b = Node("a"), Node("b")
    d = tether.Dict[str, Node]({"a": a})
    t = tether.move(b)
    assert d.setdefault("a", t) is a  # the key is there: the token is not used
    d["b"] = t  # ... so it still carries its object
    assert d["b"].name == "b"
    l = tether.List[Node]([])
    t2 = tether.move(d["b"])
    with pytest.raises(TypeError):
        l.extend([t2, 5])
    l.append(t2)
    assert l[0].name == "b"
