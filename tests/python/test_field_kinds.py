"""Field kinds beyond the scalars and tether classes: enums, Literal, unions, Any, Annotated and
Final, the int/bool decision, and the errors a wrong value gets (issue 13, "More field kinds")."""

import copy
import enum
import pickle
from typing import Annotated, Any, Final, Literal, Optional, Union

import pytest
from conftest import describe, run_script

import tether


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Leaf(tether.Object):
    v: int


class Paint(tether.Object):
    color: Color
    maybe: Optional[Color] = None
    level: Level = Level.LOW
    plain_level: int = 0


# --- enums -----------------------------------------------------------------------------------


def test_an_enum_field_gives_back_the_member_itself():
    p = Paint(Color.RED)
    assert p.color is Color.RED
    p.color = Color.GREEN
    assert p.color is Color.GREEN
    assert p.maybe is None
    p.maybe = Color.RED
    assert p.maybe is Color.RED


def test_an_int_enum_keeps_its_identity_only_in_an_enum_field():
    p = Paint(Color.RED, level=Level.HIGH, plain_level=Level.HIGH)
    assert p.level is Level.HIGH
    assert p.plain_level == 2 and type(p.plain_level) is int  # an int field stores an int


def test_a_wrong_enum_value_names_the_field_and_changes_nothing():
    p = Paint(Color.RED)
    with pytest.raises(TypeError, match=r"field 'color': expected Color, got int 1"):
        p.color = 1
    with pytest.raises(TypeError, match=r"Paint\(\) field 'color': expected Color, got str"):
        Paint("RED")
    assert p.color is Color.RED


def test_enum_defaults_are_checked_at_class_creation():
    with pytest.raises(TypeError, match=r"default of Bad\.c: expected Color, got int"):

        class Bad(tether.Object):
            c: Color = 1


def test_enum_fields_survive_pickle_and_copy():
    p = Paint(Color.GREEN, maybe=Color.RED)
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p), copy.copy(p)):
        assert q.color is Color.GREEN and q.maybe is Color.RED


# --- Literal ---------------------------------------------------------------------------------


class Mode(tether.Object):
    mode: Literal["r", "w"] = "r"
    code: Optional[Literal[1, 2]] = None


def test_literal_fields_take_only_their_values():
    m = Mode()
    assert m.mode == "r"
    m.mode = "w"
    assert m.mode == "w"
    with pytest.raises(TypeError, match=r"field 'mode': expected Literal\['r', 'w'\], got str 'x'"):
        m.mode = "x"
    assert m.mode == "w"
    m.code = 2
    assert m.code == 2
    m.code = None
    with pytest.raises(TypeError, match=r"expected Literal\[1, 2\], got bool"):
        m.code = True  # equal to 1, but not of its type: refused, as type checkers do
    with pytest.raises(TypeError, match=r"default of BadMode\.mode"):

        class BadMode(tether.Object):
            mode: Literal["r", "w"] = "a"


# --- unions ----------------------------------------------------------------------------------


class U(tether.Object):
    u: Union[int, str] = 0
    num: Union[float, str] = 0.0
    flag: Union[int, bool] = 0
    obj: Optional[Union[Leaf, int]] = None
    pipe: "int | bytes | None" = None


def test_a_union_takes_each_alternative_and_refuses_the_rest():
    x = U()
    x.u = 5
    assert x.u == 5
    x.u = "five"
    assert x.u == "five"
    with pytest.raises(TypeError, match=r"field 'u': expected int \| str, got float"):
        x.u = 5.5
    assert x.u == "five"  # a failed assignment changes nothing
    x.pipe = b"raw"
    assert x.pipe == b"raw"
    x.pipe = None
    with pytest.raises(TypeError, match=r"expected int \| bytes \| None, got str"):
        x.pipe = "text"


def test_a_union_widens_an_int_only_for_a_float_alternative_and_keeps_bools():
    x = U()
    x.num = 1
    assert x.num == 1.0 and type(x.num) is float
    x.flag = True
    assert x.flag is True  # bool is its own alternative: not stored as the int 1
    x.flag = 3
    assert x.flag == 3 and type(x.flag) is int


def test_tether_objects_in_a_union_keep_their_canonical_wrapper():
    leaf = Leaf(7)
    x = U(obj=leaf)
    assert x.obj is leaf and x.obj is x.obj
    first = id(x.obj)
    del leaf
    noise = [Leaf(i) for i in range(64)]
    assert id(x.obj) == first  # parked and revived like any object field
    assert x.obj.v == 7
    x.obj = 3
    assert x.obj == 3
    with pytest.raises(TypeError, match=r"field 'obj': expected Leaf \| int \| None, got str"):
        x.obj = "nope"
    del noise


class Expr(tether.Object):
    left: Union["Expr", int]
    right: "Union[Expr, Num, int]" = 0


class Num(tether.Object):  # defined after Expr, which names it
    v: int


def test_unions_can_name_the_class_itself_and_classes_defined_later():
    e = Expr(Expr(1, 2), Num(3))
    assert e.left.left == 1 and e.right.v == 3
    assert e.left is e.left
    with pytest.raises(TypeError, match=r"expected the class itself \| int, got Num"):
        Expr(Num(1))


def test_a_union_with_any_is_any_and_unsupported_alternatives_are_refused():
    class A(tether.Object):
        a: Union[int, Any] = None

    sentinel = object()
    assert A(sentinel).a is sentinel
    with pytest.raises(TypeError, match=r"B\.b: list\[int\] cannot be one alternative of a union"):

        class B(tether.Object):
            b: Union[int, list[int]] = 0


# --- Any, Annotated, Final -------------------------------------------------------------------


class K(tether.Object):
    anything: Any = None
    size: Annotated[int, "bytes"] = 0
    ident: Final[int] = 0


def test_any_annotated_and_final():
    marker = object()
    k = K(marker, 5, ident=9)
    assert k.anything is marker
    assert k.size == 5
    k.size = 6  # Annotated[int, ...] is an int field
    with pytest.raises(TypeError, match="expected int, got str"):
        k.size = "6"
    assert k.ident == 9
    with pytest.raises(tether.FrozenInstanceError, match="'ident': it is Final"):
        k.ident = 10
    assert k.ident == 9
    assert tether.replace(k, ident=10).ident == 10  # a new object may choose its own
    with pytest.raises(TypeError, match=r"Final needs a type"):

        class BareFinal(tether.Object):
            x: Final = 3


# --- int and bool; errors --------------------------------------------------------------------


class Nums(tether.Object):
    i: int = 0
    s: str = ""


def test_int_fields_accept_bool_as_type_checkers_do_and_store_an_int():
    n = Nums(True)
    assert n.i == 1 and type(n.i) is int


def test_overflow_and_lone_surrogates_name_the_field_and_the_class():
    n = Nums(1, "ok")
    with pytest.raises(OverflowError, match=r"field 'i'.*64-bit"):
        n.i = 2**70
    with pytest.raises(OverflowError, match=r"Nums\(\) field 'i'"):
        Nums(2**64)
    with pytest.raises(ValueError, match=r"field 's': str with a lone surrogate at index 1"):
        n.s = "a\udc80b"
    assert (n.i, n.s) == (1, "ok")  # nothing changed


def test_the_new_kinds_under_future_annotations():
    """Every kind above written as a string annotation (the module-level __future__ import)."""
    proc = run_script(
        """
        from __future__ import annotations
        import enum
        from typing import Annotated, Any, Final, Literal, Optional, Union
        import tether

        class Color(enum.Enum):
            RED = 1

        class Node(tether.Object):
            color: Color
            mode: Literal["a", "b"] = "a"
            either: int | str = 0
            child: Optional[Node | int] = None
            anything: Any = None
            size: Annotated[int, "x"] = 0
            ident: Final[int] = 0

        n = Node(Color.RED, child=Node(Color.RED))
        assert n.color is Color.RED and n.child.color is Color.RED and n.child is n.child
        n.either = "s"
        n.child = 4
        try:
            n.mode = "c"
        except TypeError as e:
            assert "expected Literal['a', 'b']" in str(e), e
        else:
            raise AssertionError("accepted")
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", describe(proc)
