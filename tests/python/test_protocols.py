"""Python protocols users rely on (part of the protocols issue): introspection (`__match_args__`,
`inspect.signature`, `tether.fields`, `asdict`, `replace`, `__tether_fields__`), pickle honouring a
class's `__getstate__`, and clear refusals (`@dataclass`, `functools.cached_property`,
`ObjectMeta(5)`), and the tying switch's spellings."""

import copy
import dataclasses
import functools
import inspect
import os
import pickle
import subprocess
import sys
from typing import Optional

import pytest

import tether


class Point(tether.Object):
    x: int
    y: float = 2.0


class Labeled(Point):
    label: str = "p"


class Tree(tether.Object):
    v: int
    left: Optional["Tree"] = None
    right: Optional["Tree"] = None


def test_match_args_and_pattern_matching():
    assert Point.__match_args__ == ("x", "y")
    assert Labeled.__match_args__ == ("x", "y", "label")
    match Labeled(1, 3.0, "q"):
        case Labeled(x, y, label):
            assert (x, y, label) == (1, 3.0, "q")
        case _:
            pytest.fail("no match")


def test_own_match_args_are_kept():
    class Swapped(tether.Object):
        __match_args__ = ("b", "a")
        a: int
        b: int

    assert Swapped.__match_args__ == ("b", "a")
    assert Swapped.__tether_fields__ == ("a", "b")


def test_signature():
    sig = inspect.signature(Labeled)
    assert str(sig) == "(x: int, y: float = 2.0, label: str = 'p')"
    assert sig.bind(1).arguments == {"x": 1}
    with pytest.raises(TypeError):
        sig.bind(1, nope=2)


def test_fields():
    fs = tether.fields(Labeled)
    assert [f.name for f in fs] == ["x", "y", "label"]
    assert fs[0].default is tether.MISSING and fs[1].default == 2.0 and fs[0].type is int
    assert [f.name for f in tether.fields(Labeled(1))] == ["x", "y", "label"]
    with pytest.raises(TypeError, match="tether class or object"):
        tether.fields(object())


def test_asdict_recurses_and_refuses_cycles():
    t = Tree(1, Tree(2), Tree(3, Tree(4)))
    assert tether.asdict(t) == {
        "v": 1,
        "left": {"v": 2, "left": None, "right": None},
        "right": {"v": 3, "left": {"v": 4, "left": None, "right": None}, "right": None},
    }
    shared = Tree(9)
    both = Tree(0, shared, shared)
    assert tether.asdict(both)["left"] == tether.asdict(both)["right"] == {
        "v": 9,
        "left": None,
        "right": None,
    }
    loop = Tree(5)
    loop.left = loop
    with pytest.raises(ValueError, match="contains itself"):
        tether.asdict(loop)
    with pytest.raises(TypeError):
        tether.asdict(5)


def test_replace():
    p = Labeled(1, 3.0, "a")
    q = tether.replace(p, label="b")
    assert (q.x, q.y, q.label) == (1, 3.0, "b") and q is not p and type(q) is Labeled
    child = Tree(2)
    t2 = tether.replace(Tree(1, child), v=7)
    assert t2.left is child  # unchanged fields are shared, not copied
    with pytest.raises(TypeError, match="no field"):
        tether.replace(p, nope=1)


def test_dataclass_decorator_is_refused():
    class D(tether.Object):
        a: int

    with pytest.raises(TypeError, match="@dataclass cannot be applied"):
        dataclasses.dataclass(D)
    assert D(1).a == 1  # the class is unchanged


def test_cached_property_is_refused_with_advice():
    with pytest.raises(TypeError, match="cached_property needs an instance __dict__"):

        class C(tether.Object):
            a: int

            @functools.cached_property
            def twice(self):
                return 2 * self.a


def test_objectmeta_called_like_type_with_one_argument():
    with pytest.raises(TypeError, match="takes exactly 3 arguments"):
        tether.ObjectMeta(5)


class Account(tether.Object):
    user: str
    password: str = ""

    def __getstate__(self):
        return {"user": self.user}


def test_getstate_decides_what_is_pickled():
    a = Account("ann", "secret")
    data = pickle.dumps(a)
    assert b"secret" not in data
    b = pickle.loads(data)
    assert (b.user, b.password) == ("ann", "")


class Reduced(tether.Object):
    v: int

    def __reduce__(self):
        return (Reduced, (self.v + 100,))


class ReducedEx(tether.Object):
    v: int

    def __reduce_ex__(self, protocol):
        return (ReducedEx, (self.v * 2 + protocol * 0,))


class Copied(tether.Object):
    v: int

    def __copy__(self):
        return Copied(-1)

    def __deepcopy__(self, memo):
        return Copied(-2)


class Restated(tether.Object):
    v: int
    w: int = 0

    def __setstate__(self, state):
        tether.Object.__setstate__(self, {**state, "w": 42})


NEW_CALLS = []


class NewArgs(tether.Object):
    v: int

    def __new__(cls, *args, **kwargs):
        NEW_CALLS.append((args, kwargs))
        return super().__new__(cls)

    def __getnewargs__(self):
        return (self.v, "from getnewargs")


class NewArgsEx(NewArgs):
    def __getnewargs_ex__(self):
        return ((self.v,), {"flag": True})


class BadNewArgs(tether.Object):
    v: int

    def __getnewargs__(self):
        return [self.v]


def test_pickle_and_copy_hooks_are_honoured_as_for_plain_classes():
    assert pickle.loads(pickle.dumps(Reduced(1))).v == 101
    assert copy.copy(Reduced(1)).v == 101
    assert pickle.loads(pickle.dumps(ReducedEx(3))).v == 6
    assert copy.deepcopy(ReducedEx(3)).v == 6
    assert copy.copy(Copied(1)).v == -1
    assert copy.deepcopy(Copied(1)).v == -2
    r = pickle.loads(pickle.dumps(Restated(1)))
    assert (r.v, r.w) == (1, 42)
    assert copy.deepcopy(Restated(1)).w == 42


def test_getnewargs_reaches_the_classes_own_new():
    NEW_CALLS.clear()
    n = pickle.loads(pickle.dumps(NewArgs(7)))
    assert n.v == 7 and type(n) is NewArgs
    assert NEW_CALLS[-1] == ((7, "from getnewargs"), {})
    e = pickle.loads(pickle.dumps(NewArgsEx(8)))
    assert e.v == 8
    assert NEW_CALLS[-1] == ((8,), {"flag": True})
    assert copy.deepcopy(NewArgs(9)).v == 9
    assert NEW_CALLS[-1] == ((9, "from getnewargs"), {})
    with pytest.raises(TypeError, match="__getnewargs__ should return a tuple, not 'list'"):
        pickle.dumps(BadNewArgs(1))


def test_set_tying_takes_any_truthy_value():
    try:
        tether.set_tying(0)
        assert not tether.tying_enabled()
        tether.set_tying(1)
        assert tether.tying_enabled()
        tether.set_tying([])
        assert not tether.tying_enabled()
    finally:
        tether.set_tying(True)


@pytest.mark.parametrize(
    "value, on", [("0", False), ("off", False), ("False", False), ("no", False), ("1", True), ("yes", True)]
)
def test_tying_environment_spellings(value, on):
    out = subprocess.run(
        [sys.executable, "-c", "import tether; print(tether.tying_enabled())"],
        env={**os.environ, "TETHER_TYING": value},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(on)


def test_tying_environment_nonsense_warns():
    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", "import tether"],
        env={**os.environ, "TETHER_TYING": "maybe"},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "not understood" in out.stderr


def test_reload_adds_no_second_gc_callback():
    import gc
    import importlib

    before = len(gc.callbacks)
    importlib.reload(tether)
    assert len(gc.callbacks) == before


class Vec2(tether.Object, frozen=True, eq=True):
    x: float
    y: float


class Counter(tether.Object, eq=True):
    n: int


def test_eq_true_compares_fields_and_frozen_hashes_them():
    assert Vec2(1.0, 2.0) == Vec2(1.0, 2.0) and Vec2(1.0, 2.0) != Vec2(1.0, 3.0)
    assert hash(Vec2(1.0, 2.0)) == hash(Vec2(1.0, 2.0))
    assert len({Vec2(1.0, 2.0), Vec2(1.0, 2.0)}) == 1
    assert pickle.loads(pickle.dumps(Vec2(1.0, 2.0))) == Vec2(1.0, 2.0)
    assert Counter(1) == Counter(1)
    with pytest.raises(TypeError, match="unhashable"):
        hash(Counter(1))
    assert Point(1) != Point(1)  # the default is identity: each object is its own


def test_abstract_methods_refuse_instantiation():
    import abc

    class Shape(tether.Object):
        name: str = "s"

        @abc.abstractmethod
        def area(self): ...

    class Square(Shape):
        side: float = 1.0

        def area(self):
            return self.side**2

    with pytest.raises(TypeError, match="Can't instantiate abstract class Shape with abstract method area"):
        Shape()
    assert Square(side=2.0).area() == 4.0


def test_runtime_checkable_protocol():
    from typing import Protocol, runtime_checkable

    @runtime_checkable
    class HasX(Protocol):
        x: int

    assert isinstance(Point(1), HasX)


def test_native_types_refuse_pickling_at_dumps():
    from tether import testing

    with pytest.raises(TypeError, match="cannot pickle TreeNode"):
        pickle.dumps(testing.make_tree(1))


def test_getsizeof_reports_the_native_object_too():
    from tether import testing

    class Leaf(tether.Object):
        v: int
        child: Optional["Leaf"] = None

    class Wide(tether.Object):
        a: int = 0
        b: float = 0.0
        c: str = ""

    class Scalar(tether.Object):
        v: int
        w: int = 0

    leaf = Leaf(1)
    # The wrapper (32 bytes; 48 on free-threaded builds, whose object header is larger), the
    # 16-byte allocator header, the record: a 16-byte header and two 8-byte slots (an int and a
    # pointer), what RSS per object measures (docs/benchmarks.md). Classes that can form cycles
    # cost no more (the cycle collector's index is in the allocator header's owner word).
    wrapper = 48 if tether._native.FREE_THREADED else 32
    assert tether._native.WRAPPER_BYTES == wrapper
    assert sys.getsizeof(leaf) == wrapper + 16 + 32
    assert sys.getsizeof(Scalar(1)) == wrapper + 16 + 32
    assert sys.getsizeof(Wide()) > sys.getsizeof(leaf)  # a str field is a 24-byte value slot
    assert sys.getsizeof(testing.make_tree(1)) > wrapper  # native types report their size too
    moved = Leaf(2)
    tether.move(moved)
    assert sys.getsizeof(moved) == wrapper  # only the wrapper is left


def test_abc_abc_as_a_base_abstract_methods_and_register():
    """`class S(tether.Object, abc.ABC)` is no metaclass conflict (ObjectMeta derives from
    ABCMeta): abstract classes refuse instantiation, concrete subclasses work, `register` makes
    virtual subclasses, and isinstance of real instances stays a native check."""
    import abc

    class Shape(tether.Object, abc.ABC):
        side: float

        @abc.abstractmethod
        def area(self): ...

    with pytest.raises(TypeError, match="Can't instantiate abstract class Shape"):
        Shape(1.0)

    class Square(Shape):
        def area(self):
            return self.side**2

    sq = Square(3.0)
    assert sq.area() == 9.0
    assert isinstance(sq, Shape) and issubclass(Square, Shape) and isinstance(sq, abc.ABC)
    assert not isinstance(1, Shape) and not issubclass(int, Shape)

    class Elsewhere:
        pass

    Shape.register(Elsewhere)
    assert isinstance(Elsewhere(), Shape) and issubclass(Elsewhere, Shape)
    assert isinstance(tether.Object, abc.ABCMeta) and issubclass(type(Shape), abc.ABCMeta)

    class Half(Shape):  # still abstract: area is not defined
        pass

    with pytest.raises(TypeError, match="abstract method area"):
        Half(1.0)


class Holds(tether.Object):
    o: object = None
    items: list[object] = tether.field(default_factory=list)
    by_name: dict[str, object] = tether.field(default_factory=dict)
    n: int = 0


class OnlyNative(tether.Object):
    n: int = 0
    child: Optional["OnlyNative"] = None


def test_gc_get_referents_lists_the_python_objects_an_object_holds():
    import gc

    x, y, z = [1], {"k": 2}, object()
    h = Holds(x, [y, "s"], {"a": z})
    refs = gc.get_referents(h)
    assert any(r is x for r in refs) and any(r is y for r in refs) and any(r is z for r in refs)
    assert not gc.is_tracked(h)  # visible to the tools, never collected through (yet)
    lst = tether.List[object]([x, z])
    assert [r for r in gc.get_referents(lst)] == [x, z]
    d = tether.Dict[str, object]({"q": y})
    assert y in gc.get_referents(d)
    # Through nested containers, and after the wrapper parked and revived.
    class Nest(tether.Object):
        rows: list[list[object]] = tether.field(default_factory=list)

    n = Nest([[x], [z]])
    assert {id(r) for r in gc.get_referents(n)} >= {id(x), id(z)}
    keep = Holds(None, [], {}, 0)
    keep.o = h  # a tether object in an object field is stored natively
    del h
    noise = [Holds() for _ in range(64)]
    assert any(r is x for r in gc.get_referents(keep.o))
    del noise
    # Moved-out wrappers have nothing to show.
    m = Holds(x)
    tether.move(m)
    assert gc.get_referents(m) == []


def test_only_classes_that_can_hold_python_objects_are_gc_classes():
    HAVE_GC = 1 << 14
    assert Holds.__flags__ & HAVE_GC
    assert not OnlyNative.__flags__ & HAVE_GC
    assert gc_referents_of_native_only() == []
    # A GC class's wrapper carries CPython's GC head on GIL builds (sys.getsizeof counts it).
    head = 0 if tether._native.FREE_THREADED else 16
    h = Holds()
    assert sys.getsizeof(h) == h.__sizeof__() + head
    # CPython refuses __class__ assignment between GC and non-GC classes.
    with pytest.raises(TypeError):
        OnlyNative().__class__ = Holds


def gc_referents_of_native_only():
    import gc

    return gc.get_referents(OnlyNative(1, OnlyNative(2)))
