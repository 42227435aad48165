"""Annotations as Python users write them (part of the containers and field-types issue): string
annotations that mention the class itself inside a larger expression, `X | None`, every
annotation a string (`from __future__ import annotations`), classes defined in functions, a
re-run class definition (a notebook cell), and defaults that are refused: mutable ones, and
wrong-typed ones for self-typed fields."""

import copy
import gc
import importlib
import inspect
import pickle
import sys
import textwrap
from typing import Optional

import pytest

import tether


def linked(cls, n=3):
    """A chain of `n` objects of `cls` (fields `v`, `next`); returns its head."""
    head = None
    for i in reversed(range(n)):
        head = cls(i, head)
    return head


def assert_chain(head, n=3):
    node = head
    for i in range(n):
        assert node.v == i
        node = node.next
    assert node is None


@pytest.mark.parametrize(
    "annotation",
    ['Optional["Node"]', '"Optional[Node]"', '"Node | None"', "Optional['Node']"],
)
def test_self_references_in_every_spelling(annotation):
    ns = {"tether": tether, "Optional": Optional}
    exec(
        f"class Node(tether.Object):\n    v: int\n    next: {annotation} = None\n",
        ns,
    )
    node_cls = ns["Node"]
    assert_chain(linked(node_cls))
    with pytest.raises(TypeError, match="expected"):
        node_cls(1, "not a node")


def test_union_syntax_with_a_class_defined_before():
    class Leaf(tether.Object):
        v: int

    class Holder(tether.Object):
        leaf: Leaf | None = None

    assert Holder().leaf is None
    leaf = Leaf(1)
    assert Holder(leaf).leaf is leaf


def test_future_annotations_module(tmp_path, monkeypatch):
    (tmp_path / "future_mod.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from typing import Optional
            import tether

            class Node(tether.Object):
                v: int
                next: Optional[Node] = None

            class Pair(tether.Object):
                name: str
                first: Node
                second: Node | None = None
                weight: float = 1.0
                on: bool = True
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("future_mod")
    try:
        assert_chain(linked(mod.Node))
        p = mod.Pair("p", mod.Node(1))
        assert (p.name, p.first.v, p.second, p.weight, p.on) == ("p", 1, None, 1.0, True)
        with pytest.raises(TypeError, match="expected"):
            mod.Pair("p", 3)
    finally:
        sys.modules.pop("future_mod", None)


def test_a_class_defined_in_a_function_refers_to_itself():
    def make():
        class Local(tether.Object):
            v: int
            next: Optional["Local"] = None

        return Local

    first, second = make(), make()
    assert first is not second
    assert_chain(linked(first))
    # Each definition is its own type: a node of one is not a node of the other.
    with pytest.raises(TypeError, match="expected"):
        first(1, second(2))


def test_a_rerun_class_definition_refers_to_the_new_class():
    # What a notebook cell run twice does: the module's global name still names the old class
    # while the new one is being defined.
    ns = {"tether": tether, "Optional": Optional}
    src = "class Node(tether.Object):\n    v: int\n    next: Optional['Node'] = None\n"
    src_text = "class Node(tether.Object):\n    v: int\n    next: 'Optional[Node]' = None\n"
    exec(src, ns)
    old = ns["Node"]
    for code in (src, src_text):
        exec(code, ns)
        new = ns["Node"]
        assert new is not old
        assert_chain(linked(new))  # not "expected Node, got Node"
        with pytest.raises(TypeError, match="expected"):
            new(1, old(2))
        old = new


@pytest.mark.parametrize("default", [[], {}, set(), bytearray(b"x")])
def test_mutable_defaults_are_refused(default):
    with pytest.raises(TypeError, match="mutable default .* shared by every instance: use tether.field"):
        type(tether.Object)(
            "M", (tether.Object,), {"__annotations__": {"items": object}, "items": default}
        )


def test_immutable_defaults_and_none_are_fine():
    class M(tether.Object):
        a: object = None
        b: object = (1, 2)
        c: object = frozenset({1})

    m = M()
    assert (m.a, m.b, m.c) == (None, (1, 2), frozenset({1}))


def test_a_wrong_typed_default_for_a_self_typed_field_is_refused():
    with pytest.raises(TypeError, match="default"):

        class Node(tether.Object):
            v: int
            next: Optional["Node"] = 5  # type: ignore[assignment]


def test_classes_in_a_function_see_each_other_by_name():
    def make():
        class A(tether.Object):
            v: int

        class B(tether.Object):
            a: "A"
            others: "Optional[B]" = None

        return A, B

    a_cls, b_cls = make()
    b = b_cls(a_cls(1), b_cls(a_cls(2)))
    assert (b.a.v, b.others.a.v) == (1, 2)
    with pytest.raises(TypeError, match="expected A"):
        b_cls(b)


def test_string_classvar_annotations_are_class_variables_and_only_those():
    from typing import ClassVar  # noqa: F401 - resolved by name from the string below

    class ClassVarious(tether.Object):
        v: int = 0

    class C(tether.Object):
        count: "ClassVar[int]" = 3
        thing: "ClassVarious"

    assert C.count == 3
    assert [f.name for f in tether.fields(C)] == ["thing"]
    assert C(ClassVarious(5)).thing.v == 5


MUTUAL = """
{future}
from typing import Optional
import tether

class Parent(tether.Object):
    name: str
    child: {child} = None

class Child(tether.Object):
    name: str
    parent: Optional[Parent] = None

class Sub(Child):
    pass
"""


@pytest.mark.parametrize(
    "future, child",
    [
        ("", 'Optional["Child"]'),
        ("", '"Optional[Child]"'),
        ("", '"Child | None"'),
        ("from __future__ import annotations", "Optional[Child]"),
        ("from __future__ import annotations", "Child | None"),
    ],
)
def test_two_classes_refer_to_each_other(tmp_path, monkeypatch, future, child):
    (tmp_path / "mutual_mod.py").write_text(MUTUAL.format(future=future, child=child))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("mutual_mod")
    try:
        p = mod.Parent("p")
        c = mod.Child("c", parent=p)
        p.child = c
        assert p.child is c and c.parent is p and p.child.parent is p
        p.child = mod.Sub("s", parent=p)  # a subclass of the named class is accepted
        assert type(p.child) is mod.Sub
        with pytest.raises(TypeError, match="field 'child': expected Child, got Parent"):
            p.child = p
        assert type(p.child) is mod.Sub  # unchanged
        with pytest.raises(TypeError, match="expected Child, got Parent"):
            mod.Parent("q", p)
        p.child = c
        for p2 in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
            assert p2.child.parent is p2 and p2.child.name == "c"
        p.child = None  # break the native cycle
    finally:
        sys.modules.pop("mutual_mod", None)


def test_a_name_that_never_appears_is_reported_at_first_construction_and_by_resolve():
    """Resolution waits until first needed (the first construction, or tether.resolve()), then
    a name that names no tether class is a TypeError naming the class, the field and the name;
    once the class exists, everything works."""
    ns = {"tether": tether, "Optional": Optional}
    exec("class Q(tether.Object):\n    x: Optional['Nowhere'] = None\n", ns)
    q_cls = ns["Q"]
    with pytest.raises(TypeError, match="Q.x: the annotation 'Nowhere' names no tether class"):
        q_cls()
    with pytest.raises(TypeError, match="Q.x: the annotation 'Nowhere' names no tether class"):
        tether.resolve(q_cls)
    exec("class Nowhere(tether.Object):\n    pass\n", ns)
    tether.resolve(q_cls)
    q = q_cls(x=ns["Nowhere"]())
    assert isinstance(q.x, ns["Nowhere"])
    tether.resolve()  # every class defined so far


def test_a_metaclass_new_elsewhere_does_not_change_where_names_resolve(tmp_path, monkeypatch):
    (tmp_path / "meta_mod.py").write_text(
        textwrap.dedent(
            """
            import tether

            class Node(tether.Object):  # a different Node, where the metaclass lives
                w: str = ""

            class Meta(type(tether.Object)):
                def __new__(mcls, name, bases, ns, **kw):
                    return super().__new__(mcls, name, bases, ns, **kw)
            """
        )
    )
    (tmp_path / "user_mod.py").write_text(
        textwrap.dedent(
            """
            import tether
            from meta_mod import Meta

            class Node(tether.Object):
                v: int = 0

            class Holder(tether.Object, metaclass=Meta):
                n: "Node"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    user = importlib.import_module("user_mod")
    try:
        assert user.Holder(user.Node(3)).n.v == 3  # the user module's Node, not meta_mod's
        with pytest.raises(TypeError, match="expected Node"):
            user.Holder(sys.modules["meta_mod"].Node())
    finally:
        sys.modules.pop("user_mod", None)
        sys.modules.pop("meta_mod", None)


def test_field_default_factory_gives_each_object_its_own_value():
    made = []

    def fresh():
        made.append(1)
        return []

    class Bag(tether.Object):
        name: str
        items: object = tether.field(default_factory=fresh)
        n: int = tether.field(default=3)
        tags: object = tether.field(default_factory=dict)

    a, b = Bag("a"), Bag("b")
    a.items.append(1)
    assert (a.items, b.items, a.n, len(made)) == ([1], [], 3, 2)
    assert a.items is a.items and a.tags == {} and a.tags is not b.tags
    assert Bag("c", [9]).items == [9] and len(made) == 2  # given: the factory is not called
    f = {x.name: x for x in tether.fields(Bag)}
    assert f["items"].default is tether.MISSING and f["items"].default_factory is fresh
    assert f["n"].default == 3 and f["n"].default_factory is tether.MISSING
    assert str(inspect.signature(Bag)) == "(name: str, items: object = <factory>, n: int = 3, tags: object = <factory>)"
    # Copying restores the value, not a new one from the factory.
    a2 = copy.deepcopy(a)
    assert a2.items == [1] and a2.items is not a.items and len(made) == 2


def test_field_default_factory_results_are_type_checked_and_errors_change_nothing():
    class Counter(tether.Object):
        n: int = tether.field(default_factory=lambda: "not an int")

    with pytest.raises(TypeError, match="field 'n': expected int, got str"):
        Counter()
    assert Counter(5).n == 5

    def boom():
        raise RuntimeError("factory failed")

    class Fragile(tether.Object):
        x: object = tether.field(default_factory=boom)

    before = tether.stats()["native_objects"]
    with pytest.raises(RuntimeError, match="factory failed"):
        Fragile()
    assert tether.stats()["native_objects"] == before
    with pytest.raises(ValueError, match="not both"):
        tether.field(default=1, default_factory=list)
    with pytest.raises(TypeError, match="must be callable"):
        tether.field(default_factory=[])


def test_fields_report_evaluated_types():
    class Pt(tether.Object):
        x: int
        nxt: Optional["Pt"] = None

    f = {x.name: x for x in tether.fields(Pt)}
    assert f["x"].type is int
    # A string naming the class itself is reported as the class where typing can evaluate it
    # (here, a class in a function: its name is not in the module, so it stays as written).
    assert f["nxt"].type in (Optional[Pt], Optional["Pt"])
    assert tether.fields(Module)[1].type == Optional[Module]


class Module(tether.Object):
    v: int = 0
    nxt: Optional["Module"] = None


def test_a_keyword_that_is_not_valid_text_is_an_unknown_field():
    class K(tether.Object):
        v: int = 0

    with pytest.raises(TypeError, match="unexpected field"):
        K(**{"\ud800": 1})


def test_a_default_factory_does_not_keep_classes_alive():
    import weakref

    def make():
        class Inner(tether.Object):
            v: int = 0

        class K(tether.Object):
            child: object = tether.field(default_factory=Inner)
            me: object = tether.field(default_factory=lambda: K.__name__)

        assert K().me == "K"

        class Sub(K):  # inherits the factories
            extra: object = tether.field(default_factory=list)

        s = Sub()
        assert type(s.child) is Inner and s.me == "K" and s.extra == []
        return weakref.ref(K), weakref.ref(Inner), weakref.ref(Sub)

    refs = make()
    for _ in range(3):
        gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_factories_do_not_run_when_a_required_field_is_missing():
    made = []

    class P(tether.Object):
        req: int
        items: object = tether.field(default_factory=lambda: made.append(1) or [])

    with pytest.raises(TypeError, match="missing required field.*'req'"):
        P()
    assert made == []
    assert P(1).items == [] and made == [1]
