"""Declaring classes: field kinds, defaults, errors, frozen classes, methods, repr."""

import pytest
from models import Child, Holder, Inner, Mixed, Outer, Point

import tether


def test_positional_and_keyword_construction():
    a = Outer(Inner(1))
    b = Outer(x=Inner(val=1))
    assert a.x.val == b.x.val == 1
    assert a.name == "o" and a.note is None


def test_all_scalar_kinds_round_trip():
    m = Mixed(i=-(2**63), f=1.5, b=True, s="héllo", raw=b"\x00\xff")
    assert (m.i, m.f, m.b, m.s, m.raw) == (-(2**63), 1.5, True, "héllo", b"\x00\xff")
    m.f = 3  # ints are accepted for float fields
    assert m.f == 3.0 and isinstance(m.f, float)


def test_str_and_bytes_are_exempt_from_identity():
    m = Mixed(s="abc", raw=b"xyz")
    assert m.s == "abc" and type(m.s) is str
    assert m.raw == b"xyz" and type(m.raw) is bytes


def test_wrong_type_raises_type_error_and_keeps_old_value():
    a = Outer(Inner(1))
    old = a.x
    with pytest.raises(TypeError, match="expected Inner"):
        a.x = 5
    assert a.x is old
    m = Mixed(i=1)
    with pytest.raises(TypeError):
        m.i = "1"
    with pytest.raises(TypeError):
        m.i = 1.0
    with pytest.raises(TypeError):
        m.b = 1
    with pytest.raises(TypeError):
        m.s = b"x"
    assert m.i == 1


def test_int_overflow_is_a_clear_error():
    m = Mixed()
    with pytest.raises(OverflowError):
        m.i = 2**64
    assert m.i == 0


def test_wrong_type_at_construction():
    with pytest.raises(TypeError, match="field 'x'"):
        Outer("not an inner")
    with pytest.raises(TypeError):
        Inner(val="1")


def test_missing_and_unknown_fields():
    with pytest.raises(TypeError, match="missing required field"):
        Outer()
    with pytest.raises(TypeError, match="unexpected field 'z'"):
        Inner(1, z=2)
    with pytest.raises(TypeError, match="multiple values"):
        Inner(1, val=2)
    with pytest.raises(TypeError, match="at most 1 positional"):
        Inner(1, 2)


def test_optional_fields():
    a = Outer(Inner(1))
    a.note = Inner(2)
    assert a.note.val == 2 and a.note is a.note
    a.note = None
    assert a.note is None


def test_object_field_holds_any_python_object_as_itself():
    payload = {"k": [1, 2]}
    h = Holder(payload)
    assert h.payload is payload
    h.payload = h  # even the holder itself
    assert h.payload is h
    h.payload = None


def test_frozen_class():
    p = Point(1.0, 2.0)
    assert (p.x, p.y) == (1.0, 2.0)
    with pytest.raises(tether.FrozenInstanceError):
        p.x = 3.0
    with pytest.raises(AttributeError):
        p.y = 3.0
    assert p.x == 1.0


def test_fields_cannot_be_deleted():
    a = Inner(1)
    with pytest.raises(AttributeError):
        del a.val


def test_no_instance_dict():
    a = Inner(1)
    with pytest.raises(AttributeError):
        a.undeclared = 1


def test_methods_properties_classmethods():
    class Rect(tether.Object):
        w: float
        h: float

        def area(self):
            return self.w * self.h

        @property
        def square(self):
            return self.w == self.h

        @classmethod
        def unit(cls):
            return cls(1.0, 1.0)

    r = Rect(2.0, 3.0)
    assert r.area() == 6.0 and not r.square
    assert Rect.unit().square


def test_subclass_adds_fields():
    c = Child(1, "x")
    assert (c.val, c.extra) == (1, "x")
    assert isinstance(c, Inner)
    c2 = Child(val=2)
    assert c2.extra == "c"


def test_repr_shows_fields():
    assert repr(Inner(3)) == "Inner(val=3)"
    assert repr(Outer(Inner(1))) == "Outer(x=Inner(val=1), name='o', note=None)"


def test_recursive_repr():
    h = Holder(None)
    h.payload = h
    assert repr(h) == "Holder(payload=Holder(...))"
    h.payload = None


def test_eq_and_hash_are_identity():
    a, b = Inner(1), Inner(1)
    assert a != b and a == a
    assert hash(a) == hash(a)
    o = Outer(a)
    d = {o.x: "found"}
    assert d[a] == "found"


def test_unsupported_annotation_is_rejected():
    with pytest.raises(TypeError, match="unsupported field type"):

        class Bad(tether.Object):
            xs: list


def test_field_clashing_with_method_is_rejected():
    with pytest.raises(TypeError, match="clashes"):

        class Bad(tether.Object):
            val: int

            def val(self):
                return 1


def test_redeclaring_a_field_is_rejected():
    with pytest.raises(TypeError, match="already declared"):

        class Bad(Inner):
            val: int


def test_declaring_the_same_class_twice_gives_two_classes():
    def make():
        class Same(tether.Object):
            v: int

        return Same

    A, B = make(), make()
    assert A is not B
    assert A(1).v == B(2).v - 1
    with pytest.raises(TypeError):
        Outer(A(1))  # neither is an Inner


def test_slots_with_names_are_rejected():
    with pytest.raises(TypeError, match="__slots__"):

        class Bad(tether.Object):
            __slots__ = ("a",)


def test_mixin_with_dict_is_rejected():
    class Mixin:
        pass

    with pytest.raises(TypeError):

        class Bad(tether.Object, Mixin):
            v: int


def test_slot_free_mixin_is_accepted():
    class Greeter:
        __slots__ = ()

        def hello(self):
            return f"hi {self.v}"

    class Ok(tether.Object, Greeter):
        v: int

    assert Ok(2).hello() == "hi 2"


def test_abstract_class_refuses_instantiation():
    import abc

    class Shape(tether.Object):
        @abc.abstractmethod
        def area(self): ...

    Shape.__abstractmethods__ = frozenset({"area"})
    with pytest.raises(TypeError, match="abstract"):
        Shape()


def test_class_assignment_between_tether_classes_is_checked():
    c = Child(1, "x")
    assert c.extra == "x"
    i = Inner(1)
    i.__class__ = Child
    with pytest.raises(TypeError, match="does not apply"):
        i.extra
    with pytest.raises(TypeError, match="native type"):
        repr(i)
    with pytest.raises(TypeError, match="native type"):
        i.__reduce__()


def test_uninitialized_object_raises_cleanly():
    class Lazy(tether.Object):
        v: int

        def __init__(self):
            pass  # never calls super().__init__

    o = Lazy()
    with pytest.raises(tether.MovedError):
        o.v
    assert "moved" in repr(o)


def test_init_override_calling_super():
    class Scaled(tether.Object):
        v: int

        def __init__(self, v, factor=2):
            super().__init__(v * factor)

    assert Scaled(3).v == 6
    assert Scaled(3, factor=10).v == 30


def test_init_and_new_overrides_are_honoured_by_calls_later_assigned_too():
    # Calls of a tether class take a direct construction path; any __init__ or __new__ that
    # is not tether's own, declared in the class body or assigned later, must still run.
    class P(tether.Object):
        v: int

    calls = []

    def init(self, v):
        calls.append(v)
        super(P, self).__init__(v + 1)

    assert P(1).v == 1
    P.__init__ = init
    assert P(1).v == 2 and calls == [1]
    del P.__init__
    assert P(v=5).v == 5 and calls == [1]

    class Q(tether.Object):
        v: int

        def __new__(cls, *args, **kw):
            calls.append("new")
            return super().__new__(cls)

    assert Q(3).v == 3 and calls[-1] == "new"
    with pytest.raises(TypeError, match="unexpected field 'w'"):
        P(1, w=2)
    with pytest.raises(TypeError, match="multiple values for field 'v'"):
        P(1, v=2)
    with pytest.raises(TypeError, match="missing required field"):
        P()


def test_a_metaclass_call_override_decides_what_a_call_does():
    # Calls of a tether class skip type.__call__; a metaclass __call__ (a subclass's, or one
    # assigned to tether.ObjectMeta later) must still be what runs, on every CPython.
    from conftest import describe, run_script

    proc = run_script(
        """
        import tether

        class D(tether.Object):
            x: int = 0

        meta = type(tether.Object)
        meta.__call__ = lambda cls, *a, **k: "hijacked"
        out = [D(x=1), D(*(), **{"x": 1}), D()]
        del meta.__call__
        assert out == ["hijacked"] * 3, out
        assert D(x=2).x == 2

        class Counting(meta):
            calls = 0
            def __call__(cls, *a, **k):
                Counting.calls += 1
                return super().__call__(*a, **k)

        class E(tether.Object, metaclass=Counting):
            y: int = 0

        assert E(y=3).y == 3 and Counting.calls == 1
        print("ok")
        """
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)
