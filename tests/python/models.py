"""Classes shared by the tests (module level, so pickle can find them)."""

from typing import Optional

import tether


class Inner(tether.Object):
    val: int


class Outer(tether.Object):
    x: Inner
    name: str = "o"
    note: Optional[Inner] = None


class Point(tether.Object, frozen=True):
    x: float
    y: float


class Pair(tether.Object):
    a: Optional[Inner] = None
    b: Optional[Inner] = None


class Child(Inner):
    extra: str = "c"


class Holder(tether.Object):
    payload: object = None


class Node(tether.Object):
    value: int
    next: Optional["Node"] = None


class Mixed(tether.Object):
    i: int = 0
    f: float = 0.0
    b: bool = False
    s: str = ""
    raw: bytes = b""
