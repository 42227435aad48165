"""What a full collection costs with tether's cycle collector (the cycle-collection issue).

* `gc.collect()` with 10^6 live acyclic objects: a chain of tether `Node`s (each holds the
  next: tracked and scanned), the same number of `Node`s that hold nothing (leaves: not
  tracked until they hold a reference), tether objects of a scalar-only class (never tracked),
  and a chain of `__slots__` objects with the same fields (tracked by CPython's collector); ns
  per live object, best of 3.
* `gc.collect()` freeing 10^5 two-object cycles (`a.next = b; b.next = a`), tether and
  `__slots__`; ns per cycle, best of 3.

    .venv/bin/python benches/cycles_py.py
"""

import gc
import time
from typing import Optional

import tether


class Node(tether.Object):
    val: int
    next: Optional["Node"] = None


class Leaf(tether.Object):
    val: int
    other: int = 0


class SNode:
    __slots__ = ("val", "next")

    def __init__(self, val, next=None):
        self.val = val
        self.next = next


def timed_collect():
    t = time.perf_counter()
    gc.collect()
    return time.perf_counter() - t


def chain(make, n):
    objs = [make(0)]
    for i in range(1, n):
        o = make(i)
        o.next = objs[-1]
        objs.append(o)
    return objs


def live(make, n=1_000_000, linked=False):
    gc.disable()
    objs = chain(make, n) if linked else [make(i) for i in range(n)]
    gc.enable()
    gc.collect()
    best = min(timed_collect() for _ in range(3))
    del objs
    gc.collect()
    return best / n * 1e9


def cycles(make, n=100_000):
    best = float("inf")
    for _ in range(3):
        gc.disable()  # so that the timed collection is the one that frees them all
        for i in range(n):
            a = make(i)
            b = make(i)
            a.next = b
            b.next = a
        del a, b
        gc.enable()
        best = min(best, timed_collect())
    return best / n * 1e9


def main():
    gc.collect()
    empty = min(timed_collect() for _ in range(3)) * 1e9
    print(f"gc.collect() with nothing extra alive: {empty / 1e3:.0f} us")
    print("per live object, 10^6 alive:")
    print(f"  tether Node chain (tracked)     {live(Node, linked=True):6.1f} ns")
    print(f"  tether Node leaves (untracked)  {live(Node):6.1f} ns")
    print(f"  tether Leaf (scalar-only)       {live(Leaf):6.1f} ns")
    print(f"  __slots__ SNode chain           {live(SNode, linked=True):6.1f} ns")
    print("per two-object cycle freed, 10^5 cycles:")
    print(f"  tether Node                     {cycles(Node):6.1f} ns")
    print(f"  __slots__ SNode                 {cycles(SNode):6.1f} ns")


if __name__ == "__main__":
    main()
