"""A randomized stateful test: operations in random order against a simple model, with the
identity, value and live-count invariants checked after every step and at the end."""

import gc
import pickle
import threading
import weakref
from typing import Optional

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from models import Inner, Outer

import tether
from tether import testing


class Point(tether.Object, frozen=True, eq=True):
    """Value equality and hashing from the fields (the eq=True protocol)."""

    x: int
    y: int


class Account(tether.Object):
    """A pickle hook: __getstate__ leaves the secret out."""

    owner: str
    secret: str = ""

    def __getstate__(self):
        return {"owner": self.owner}


class Bag(tether.Object):
    """A container field: its elements keep their identity like fields."""

    items: list[Inner] = tether.field(default_factory=list)


class Ring(tether.Object):
    """Rings of these are cycles: freed by the cycle collector once nothing outside holds them."""

    val: int
    next: Optional["Ring"] = None


class TieMachine(RuleBasedStateMachine):
    """Holds Inner and Outer objects; the model records each one's expected values."""

    @initialize()
    def setup(self):
        gc.collect()
        self.base = tether.stats()
        self.inners = []  # [(wrapper, val)]
        self.outers = []  # [(wrapper, expected child val, expected child wrapper id or None)]
        self.moved = []  # wrappers whose native object was moved out
        self.refs = []  # weak references to wrappers we still hold strongly elsewhere
        # Weak references that follow native objects: children of outers, keyed weakly while
        # their wrappers park and revive (or, having weak references, are kept).
        self.tags = weakref.WeakKeyDictionary()
        self.tagged = {}  # id(outer) -> id of the child wrapper tagged through it
        self.tokens = []  # one per weakref.finalize registered
        self.fired = []  # tokens whose finalizer ran
        self.rings = []  # [(a member we hold, ring length)]

    @rule(v=st.integers(-(2**63), 2**63 - 1))
    def create_inner(self, v):
        self.inners.append((Inner(v), v))

    @precondition(lambda self: self.inners)
    @rule(i=st.integers(0, 1000), name=st.text(max_size=5))
    def create_outer(self, i, name):
        inner, v = self.inners[i % len(self.inners)]
        o = Outer(inner, name=name)
        assert o.x is inner
        self.outers.append((o, v, name))

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def read_twice(self, i):
        o, v, name = self.outers[i % len(self.outers)]
        a = o.x
        others = [Inner(k) for k in range(3)]
        assert o.x is a and a.val == v and o.name == name
        del others

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000), v=st.integers(0, 100))
    def set_field(self, i, v):
        k = i % len(self.outers)
        o, _, name = self.outers[k]
        o.x = Inner(v)
        self.outers[k] = (o, v, name)
        self.tagged.pop(id(o), None)

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def bad_set_keeps_value(self, i):
        o, v, _ = self.outers[i % len(self.outers)]
        before = o.x
        try:
            o.x = "not an Inner"
        except TypeError:
            pass
        else:
            raise AssertionError("wrong-typed set accepted")
        assert o.x is before and o.x.val == v

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def tag_child(self, i):
        o, v, _ = self.outers[i % len(self.outers)]
        self.tags[o.x] = v
        token = len(self.tokens)
        self.tokens.append(token)
        weakref.finalize(o.x, self.fired.append, token)
        self.tagged[id(o)] = id(o.x)
        noise = [Inner(k) for k in range(3)]  # the child's wrapper has no reference now
        assert o.x in self.tags and id(o.x) == self.tagged[id(o)]
        del noise

    @precondition(lambda self: self.inners)
    @rule(i=st.integers(0, 1000))
    def drop_inner(self, i):
        self.inners.pop(i % len(self.inners))

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def drop_outer(self, i):
        o, _, _ = self.outers.pop(i % len(self.outers))
        self.tagged.pop(id(o), None)

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def move_child_out(self, i):
        o, v, _ = self.outers[i % len(self.outers)]
        x = o.x
        # A tag stays with the wrapper x, emptied by the move, whichever outer it was made
        # through (outers may share a child, and so its canonical wrapper).
        self.tagged = {k: v for k, v in self.tagged.items() if v != id(x)}
        testing.discard(tether.move(x))
        self.moved.append(x)
        # x may be the very wrapper some Inner entry holds (one canonical wrapper): it is moved too
        self.inners = [(w, val) for (w, val) in self.inners if w is not x]
        assert o.x is not x and o.x.val == v  # the field still yields a canonical wrapper

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def pickle_round_trip(self, i):
        o, v, name = self.outers[i % len(self.outers)]
        o2 = pickle.loads(pickle.dumps(o))
        assert o2.x.val == v and o2.name == name and o2.x is o2.x and o2.x is not o.x

    @rule(x=st.integers(-5, 5), y=st.integers(-5, 5))
    def frozen_eq_values(self, x, y):
        p = Point(x, y)
        q = pickle.loads(pickle.dumps(p))
        assert q == p and hash(q) == hash(p) and q is not p
        assert (Point(x, y + 1) == p) is False
        assert len({p, q, Point(x, y)}) == 1

    @rule(owner=st.text(max_size=4), secret=st.text(max_size=4))
    def pickle_hook_leaves_the_secret_out(self, owner, secret):
        a = Account(owner, secret)
        b = pickle.loads(pickle.dumps(a))
        assert b.owner == owner and b.secret == ""

    @precondition(lambda self: self.inners)
    @rule(i=st.integers(0, 1000), twice=st.booleans())
    def bag_holds_inners(self, i, twice):
        if not hasattr(self, "bag"):
            self.bag = Bag()
        x, v = self.inners[i % len(self.inners)]
        self.bag.items.append(x)
        if twice:
            self.bag.items.append(x)
        assert self.bag.items[-1] is x and self.bag.items[-1].val == v
        copy = pickle.loads(pickle.dumps(self.bag))
        if twice:
            assert copy.items[-1] is copy.items[-2]
        assert [y.val for y in copy.items] == [y.val for y in self.bag.items]
        if len(self.bag.items) > 6:
            self.bag.items.clear()

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def weakref_to_child(self, i):
        o, _, _ = self.outers[i % len(self.outers)]
        x = o.x
        r = weakref.ref(x)
        assert r() is x
        del x
        self.refs.append(r)

    @precondition(lambda self: self.outers)
    @rule(i=st.integers(0, 1000))
    def threads_agree(self, i):
        o, _, _ = self.outers[i % len(self.outers)]
        bad = []

        def work():
            for _ in range(50):
                if o.x is not o.x:
                    bad.append(1)

        ts = [threading.Thread(target=work) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not bad

    @rule(n=st.integers(1, 5), keep=st.booleans(), weak=st.booleans())
    def make_ring(self, n, keep, weak):
        nodes = [Ring(i) for i in range(n)]
        for i, x in enumerate(nodes):
            x.next = nodes[(i + 1) % n]
        if weak:  # a weakly referenced member: its wrapper is kept, then collected with it
            token = len(self.tokens)
            self.tokens.append(token)
            weakref.finalize(nodes[-1], self.fired.append, token)
        if keep:
            self.rings.append((nodes[0], n))

    @precondition(lambda self: self.rings)
    @rule(i=st.integers(0, 1000))
    def drop_ring(self, i):
        self.rings.pop(i % len(self.rings))

    @rule()
    def collect(self):
        gc.collect()

    @invariant()
    def held_rings_are_intact(self):
        for head, n in self.rings:
            x = head
            for k in range(n):
                assert x.val == k
                x = x.next
            assert x is head

    @invariant()
    def moved_wrappers_raise(self):
        for x in self.moved[-3:]:
            try:
                x.val
            except tether.MovedError:
                pass
            else:
                raise AssertionError("moved-from wrapper still usable")

    @invariant()
    def weak_references_follow_native_objects(self):
        for o, v, _ in self.outers:
            if id(o) in self.tagged:
                x = o.x
                assert id(x) == self.tagged[id(o)], "a tagged child changed identity"
                assert x in self.tags and self.tags[x] == v
        assert len(set(self.fired)) == len(self.fired), "a finalizer ran twice"

    @invariant()
    def values_hold(self):
        for inner, v in self.inners[-5:]:
            assert inner.val == v
        for o, v, _ in self.outers[-5:]:
            assert o.x.val == v

    def teardown(self):
        if hasattr(self, "bag"):
            del self.bag
        self.inners.clear()
        self.outers.clear()
        self.moved.clear()
        self.refs.clear()
        self.tagged.clear()
        self.rings.clear()
        gc.collect()
        assert len(self.tags) == 0, "weak keys outlived their native objects"
        assert sorted(self.fired) == self.tokens, "every finalizer ran, once"
        after = tether.stats()
        for key in ("native_objects", "parked_wrappers", "live_wrappers", "kept_wrappers"):
            assert after[key] == self.base[key], (key, after[key], self.base[key])


TieMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_tie_machine = TieMachine.TestCase
