"""Wall-clock cost of the weak-reference paths, in ns per operation (best of 5 runs of 10^6),
against a `__slots__` class with `__weakref__`: a child read through a kept wrapper (its weak
reference alive) against a parked one, calling a weak reference, making one, and a holder and
child made, weakly referenced and dropped (the wrapper kept, then released with its object).

    .venv/bin/python benches/weakrefs_py.py
"""
import gc
import time
import timeit
import weakref

import tether

class Node(tether.Object):
    val: int
    child: "Node | None" = None

class SNode:
    __slots__ = ("val", "child", "__weakref__")
    def __init__(self, val, child=None):
        self.val = val; self.child = child

def best(stmt, g, n=1_000_000):
    return min(timeit.repeat(stmt, globals=g, number=n, repeat=5)) / n * 1e9

gc.disable()
a = Node(0, Node(1)); s = SNode(0, SNode(1))
parked = Node(0, Node(1))
g = dict(a=a, s=s, parked=parked, weakref=weakref)
print("a.child, parked wrapper (revive)      %6.1f" % best("parked.child", g))
r = weakref.ref(a.child)
g["r"] = r
print("a.child, kept wrapper (weak ref alive) %6.1f" % best("a.child", g))
print("__slots__ s.child                      %6.1f" % best("s.child", g))
rs = weakref.ref(s.child); g["rs"] = rs
print("r() of a kept wrapper                  %6.1f" % best("r()", g))
print("r() of a __slots__ object              %6.1f" % best("rs()", g))
print("weakref.ref(a.child) (kept)            %6.1f" % best("weakref.ref(a.child)", g))
print("weakref.ref(s.child)                   %6.1f" % best("weakref.ref(s.child)", g))
def churn_t(n=200_000):
    t = time.perf_counter()
    for i in range(n):
        h = Node(i, Node(i)); weakref.ref(h.child); del h
    return (time.perf_counter() - t) / n * 1e9
def churn_s(n=200_000):
    t = time.perf_counter()
    for i in range(n):
        h = SNode(i, SNode(i)); weakref.ref(h.child); del h
    return (time.perf_counter() - t) / n * 1e9
print("make holder+child, weakref, drop (kept then released) %6.1f" % min(churn_t() for _ in range(3)))
print("same, __slots__                                       %6.1f" % min(churn_s() for _ in range(3)))
