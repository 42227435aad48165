"""Bad input: each case gives a clear error and leaves every other object intact.
One test per row of the table in docs/bad-input.md."""

import gc
import pickle
import sys
import types

import pytest
from models import Inner, Mixed, Node, Outer, Pair, Point

import tether
from tether import testing


@pytest.fixture
def bystanders():
    """Objects that must come through every failure untouched."""
    o = Outer(Inner(11), name="keep")
    x = o.x
    yield o, x
    assert o.x is x and x.val == 11 and o.name == "keep"


def test_wrong_field_type_on_set(bystanders):
    m = Mixed(i=1, s="a")
    for field, bad in [("i", "1"), ("i", 1.5), ("f", "x"), ("b", 0), ("s", 1), ("raw", "str")]:
        with pytest.raises(TypeError, match="expected"):
            setattr(m, field, bad)
    assert (m.i, m.s) == (1, "a")


def test_wrong_field_type_on_construction(bystanders):
    before = tether.stats()["native_objects"]
    with pytest.raises(TypeError, match="field 'x': expected Inner, got str"):
        Outer("nope")
    assert tether.stats()["native_objects"] == before


def test_missing_field(bystanders):
    with pytest.raises(TypeError, match="missing required field"):
        Inner()


def test_unknown_field(bystanders):
    with pytest.raises(TypeError, match="unexpected field 'nope'"):
        Inner(val=1, nope=2)


def test_moved_from_object(bystanders):
    x = Inner(1)
    testing.discard(tether.move(x))
    with pytest.raises(tether.MovedError, match="moved out"):
        x.val
    with pytest.raises(tether.MovedError):
        Outer(x)
    with pytest.raises(tether.MovedError):
        pickle.dumps(x)
    assert "moved" in repr(x)


def test_recursive_structure_in_pickle(bystanders):
    # A structure that contains itself through a typed field round-trips (two-phase restore,
    # tests/python/test_pickle_cycles.py); the error case left is a state naming an object that
    # is not initialized where the field cannot wait for it.
    n = Node(1)
    n.next = n
    n2 = pickle.loads(pickle.dumps(n))
    assert n2.next is n2 and n2.value == 1
    n.next = None  # break the native cycles (not collected otherwise)
    n2.next = None
    empty = tether._native._reconstruct(Inner)
    m = tether._native._reconstruct(Mixed)
    with pytest.raises(TypeError, match="cannot restore Mixed field 'i': expected int, got Inner"):
        m.__setstate__({"i": empty, "s": "x"})


def test_absurd_allocation_size(bystanders):
    before = tether.stats()["native_objects"]
    with pytest.raises(MemoryError):
        testing.alloc_blob(2**62)
    with pytest.raises(MemoryError):
        testing.alloc_blob(sys.maxsize - 16)  # size + header overflows: rejected, no abort
    assert tether.stats()["native_objects"] == before
    b = testing.alloc_blob(1 << 20)
    assert b.size == 1 << 20
    del b
    assert tether.stats()["native_objects"] == before


def test_field_name_clashing_with_method(bystanders):
    with pytest.raises(TypeError, match="clashes with a method"):

        class Clash(tether.Object):
            area: float

            @property
            def area(self):
                return 1.0


def test_declaring_the_same_class_twice(bystanders):
    ns = {}
    src = "import tether\nclass Twice(tether.Object):\n    v: int\n"
    exec(src, ns)
    first = ns["Twice"]
    exec(src, ns)
    second = ns["Twice"]
    assert first is not second
    a, b = first(1), second(2)
    assert (a.v, b.v) == (1, 2) and type(a) is first and type(b) is second


def test_unpickling_data_from_a_changed_class(bystanders):
    mod = types.ModuleType("tether_tests_changing")
    sys.modules[mod.__name__] = mod
    try:
        exec(
            "import tether\nclass Rec(tether.Object):\n    a: int\n    b: str = ''\n",
            mod.__dict__,
        )
        data = pickle.dumps(mod.Rec(1, "x"))
        exec("import tether\nclass Rec(tether.Object):\n    a: int\n", mod.__dict__)
        with pytest.raises(TypeError, match="field 'b' the class does not declare"):
            pickle.loads(data)
        exec("import tether\nclass Rec(tether.Object):\n    a: str\n    b: str\n", mod.__dict__)
        with pytest.raises(TypeError, match="field 'a'"):
            pickle.loads(data)
    finally:
        del sys.modules[mod.__name__]
    gc.collect()


def test_int_out_of_range(bystanders):
    with pytest.raises(OverflowError):
        Inner(2**63)


def test_deleting_a_field(bystanders):
    i = Inner(1)
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del i.val
    assert i.val == 1


def test_native_type_cannot_be_built_from_python(bystanders):
    with pytest.raises(TypeError, match="native type"):
        testing.TreeNode()


def test_init_twice(bystanders):
    i = Inner(1)
    with pytest.raises(TypeError, match="initialized"):
        i.__init__(2)
    assert i.val == 1


def test_wrong_callable_argument(bystanders):
    with pytest.raises(TypeError, match="callable"):
        testing.call(5)
    with pytest.raises(TypeError, match="exactly one argument"):
        testing.echo()


def test_move_token_passed_twice_in_one_call(bystanders):
    tok = tether.move(Inner(3))
    with pytest.raises(tether.MovedError, match="passed twice"):
        Pair(tok, tok)
    p = Pair(tok)  # the failed call consumed nothing
    assert p.a.val == 3
    with pytest.raises(tether.MovedError, match="already consumed"):
        Pair(tok)


def test_move_token_rejected_by_a_later_argument_keeps_its_object(bystanders):
    before = tether.stats()["native_objects"]
    tok = tether.move(Inner(4))
    with pytest.raises(TypeError, match="field 'name': expected str, got int"):
        Outer(tok, 5)
    o = Outer(tok, "fine")
    assert o.x.val == 4
    del o, tok
    gc.collect()
    assert tether.stats()["native_objects"] == before


def test_move_token_into_native_function_only_when_all_arguments_convert(bystanders):
    tok = tether.move(Inner(6))
    with pytest.raises(tether.MovedError, match="passed twice"):
        testing.echo(tok, tok)
    back = testing.echo(tok)
    assert type(back) is Inner and back.val == 6


def test_class_body_native_type_hook_is_an_ordinary_attribute(bystanders):
    class Plain(tether.Object):
        __tether_native_type__ = 0
        v: int

    assert Plain(1).v == 1 and Plain.__tether_native_type__ == 0
    assert type(Point(1.0, 2.0)) is Point
    with pytest.raises(tether.FrozenInstanceError):
        Point(1.0, 2.0).x = 3.0


def test_state_dict_resized_by_a_conversion(bystanders):
    """Found by the re-entrancy fuzzer: converting a value of the state being restored ran code
    that added a key, and iterating the dict panicked (SystemError)."""
    state = {}

    class Grow(int):
        def __float__(self):
            state["zz"] = 1
            return 1.5

    state["f"] = Grow(1)
    m = Mixed.__new__(Mixed)
    m.__setstate__(state)  # the items were snapshot before converting
    assert m.f == 1.5 and "zz" in state
    again = Mixed.__new__(Mixed)
    with pytest.raises(TypeError, match="field 'zz' the class does not declare"):
        again.__setstate__(state)


def test_replace_of_a_moved_object_raises(bystanders):
    x = Inner(1)
    testing.discard(tether.move(x))
    with pytest.raises(tether.MovedError):
        tether.replace(x, val=2)


def test_header_less_native_type_is_refused(bystanders):
    """A Rust type declared header-less (no tie header, 16 bytes saved) never crosses into
    Python: returning one raises a clear TypeError, and nothing leaks."""
    before = tether.stats()["native_objects"]
    with pytest.raises(TypeError, match="header-less"):
        testing.make_plain()
    assert tether.stats()["native_objects"] == before


@pytest.mark.parametrize("name", ["__init__", "__eq__", "__hash__", "__class__"])
def test_dunder_field_names_are_refused(name):
    # A field descriptor named like a protocol method would shadow it (a class whose
    # `__init__` is a field cannot be constructed at all).
    with pytest.raises(TypeError, match=f"field '{name}'.*reserved"):
        type(tether.Object)("Bad", (tether.Object,), {"__annotations__": {name: int}})
    # Mangled private names and single underscores are ordinary fields.
    class Fine(tether.Object):
        __hidden: int = 1
        _private: int = 2
        x__: int = 3

    f = Fine()
    assert (f._Fine__hidden, f._private, f.x__) == (1, 2, 3)
