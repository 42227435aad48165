"""tether: native objects and their Python wrappers as one identity.

Declare classes whose fields are stored natively::

    import tether

    class Inner(tether.Object):
        val: int

    class Outer(tether.Object):
        x: Inner
        name: str = "o"

    a = Outer(Inner(1))
    assert a.x is a.x          # one canonical wrapper per native object

A wrapper that dies while its native object lives on is parked (its memory kept) and revived at
the same address on the next access, so ``id(a.x)`` is stable for the native object's lifetime.
"""

import atexit as _atexit
import gc as _gc
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from . import _native
from ._containers import Dict, List
from ._native import (
    Function,
    FrozenInstanceError,
    Moved,
    MovedError,
    Object,
    ObjectMeta,
    function,
    get_global,
    list_globals,
    move,
    register_global,
    set_tying,
    collect_cycles,
    stats,
    trim,
    tying_enabled,
)

__all__ = [
    "Dict",
    "List",
    "Field",
    "MISSING",
    "asdict",
    "Weak",
    "field",
    "fields",
    "replace",
    "resolve",
    "Function",
    "FrozenInstanceError",
    "Moved",
    "MovedError",
    "Object",
    "ObjectMeta",
    "function",
    "get_global",
    "list_globals",
    "move",
    "register_global",
    "set_tying",
    "stats",
    "collect_cycles",
    "trim",
    "tying_enabled",
]

__version__ = "0.1.0"

_T = TypeVar("_T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
"""The default of a field that has none (like ``dataclasses.MISSING``)."""


class Field:
    """One field of a tether class, as ``tether.fields`` reports it (``default`` and
    ``default_factory`` are ``MISSING`` when not given, as in ``dataclasses``)."""

    __slots__ = ("name", "type", "default", "default_factory")

    def __init__(self, name: str, type: Any, default: Any, default_factory: Any = MISSING) -> None:
        self.name = name
        self.type = type
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        extra = "" if self.default_factory is MISSING else f", default_factory={self.default_factory!r}"
        return f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r}{extra})"


if TYPE_CHECKING:
    # For type checkers a weak field reads like an optional one.
    from typing import Optional as Weak
else:

    class Weak:
        """``tether.Weak[Node]``: a weak field. It holds the object without keeping it alive
        (a parent pointer that does not make a cycle); reads give the object while it lives,
        else ``None``."""

        __slots__ = ("__tether_weak__",)

        def __init__(self, target):
            self.__tether_weak__ = target

        def __class_getitem__(cls, target):
            return cls(target)

        # `tether.Weak[Node] | None` means the same field (a weak field reads None anyway).
        def __or__(self, other):
            return self if other is None else NotImplemented

        def __ror__(self, other):
            return self if other is None else NotImplemented

        def __repr__(self):
            t = self.__tether_weak__
            return f"tether.Weak[{t if isinstance(t, str) else getattr(t, '__name__', t)}]"


class _FieldSpec:
    """What ``tether.field(...)`` returns in a class body (read by the metaclass)."""

    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Any) -> None:
        self.default = default
        self.default_factory = default_factory


def resolve(*classes: type) -> None:
    """Looks up now the classes that fields name by forward reference (a class defined later in
    the module: ``child: Optional["Child"]``, in unions and container elements too), for the
    given tether classes, or for every tether class defined so far. Without it this happens at
    a class's first construction. A name that still names no tether class raises ``TypeError``
    naming the class, the field and the name."""
    if not classes:
        seen: list[type] = []
        stack = [Object]
        while stack:
            c = stack.pop()
            for sub in c.__subclasses__():
                if sub not in seen:
                    seen.append(sub)
                    stack.append(sub)
        classes = tuple(seen)
    for c in classes:
        _native._resolve(c)


def field(*, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A field's default in a class body, like ``dataclasses.field``: ``default=`` a value, or
    ``default_factory=`` a callable called with no arguments for each object built without one
    (``items: object = tether.field(default_factory=list)``: every object gets its own list)."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("tether.field() takes default or default_factory, not both")
    if default_factory is not MISSING and not callable(default_factory):
        raise TypeError(f"default_factory must be callable, got {type(default_factory).__name__}")
    return _FieldSpec(default, default_factory)


def _class_of(cls_or_obj: Any) -> type:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    if not isinstance(cls, ObjectMeta):
        raise TypeError(f"tether.fields() takes a tether class or object, not {cls.__name__}")
    return cls


def _annotations(cls: type) -> dict[str, Any]:
    """Every field annotation of `cls` and its bases, evaluated like ``typing.get_type_hints``
    does (a string or a forward reference to a class becomes the class) where that works, else
    as written (a class whose annotations typing cannot all evaluate keeps its own as written)."""
    import typing

    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        raw = klass.__dict__.get("__annotations__", {})
        if not raw:
            continue
        try:
            hints = typing.get_type_hints(klass)
        except Exception:  # a name typing cannot resolve (a class local to a function, ...)
            hints = {}
        for name, ann in raw.items():
            out[name] = hints.get(name, ann)
    return out


def fields(cls_or_obj: Any) -> tuple[Field, ...]:
    """The fields of a tether class (or of an object's class), inherited first, as a tuple of
    ``Field(name, type, default)``; ``default`` is ``MISSING`` for required fields."""
    cls = _class_of(cls_or_obj)
    annotations = _annotations(cls)
    return tuple(
        Field(
            name,
            annotations.get(name),
            default if has else MISSING,
            MISSING if factory is None else factory,
        )
        for name, has, default, factory in _native._fields(cls)
    )


def asdict(obj: Any, *, dict_factory: Callable[..., Any] = dict) -> Any:
    """``{field: value}``, recursing into tether objects (like ``dataclasses.asdict``). A tether
    object reached twice on the current path (a cycle) raises ``ValueError`` instead of recursing
    for ever; one shared by two branches is converted in each."""

    def convert(o: Any, path: frozenset[int]) -> Any:
        if isinstance(type(o), ObjectMeta):
            if id(o) in path:
                raise ValueError(f"asdict: {type(o).__name__} object contains itself")
            path = path | {id(o)}
            return dict_factory((f.name, convert(getattr(o, f.name), path)) for f in fields(o))
        if isinstance(o, (list, tuple)):
            return type(o)(convert(v, path) for v in o)
        if isinstance(o, dict):
            return type(o)((convert(k, path), convert(v, path)) for k, v in o.items())
        return o

    if not isinstance(type(obj), ObjectMeta):
        raise TypeError("asdict() should be called on tether objects")
    return convert(obj, frozenset())


def replace(obj: _T, /, **changes: Any) -> _T:
    """A new object of ``obj``'s class with ``changes`` applied to its fields (like
    ``dataclasses.replace``); fields not named keep ``obj``'s values (shared, not copied)."""
    cls = _class_of(obj)
    _native._check_live(obj)  # a moved-from object raises MovedError, whatever `changes` holds
    names = {f.name for f in fields(cls)}
    unknown = set(changes) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    values = {n: changes[n] if n in changes else getattr(obj, n) for n in names}
    new: _T = cls(**values)
    return new


class _Factory:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _signature(cls):
    import inspect

    params = []
    for f in fields(cls):
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=(
                    inspect.Parameter.empty
                    if f.default is MISSING and f.default_factory is MISSING
                    else f.default if f.default is not MISSING else _FACTORY
                ),
                annotation=inspect.Parameter.empty if f.type is None else f.type,
            )
        )
    return inspect.Signature(params)


def _fields_eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    return all(getattr(self, n) == getattr(other, n) for n in self.__tether_fields__)


def _fields_hash(self):
    return hash((self.__class__, *(getattr(self, n) for n in self.__tether_fields__)))


def _finish_class(cls, eq, frozen):
    """Called by the metaclass on every new tether class, after it is registered. (The metaclass
    derives from abc.ABCMeta and has already set up the ABC state, ``__abstractmethods__``
    included.)"""
    # eq=True: field-wise equality (objects of the same class), like dataclasses; a frozen class
    # also hashes by its fields, a mutable one becomes unhashable. Identity is the default.
    if eq:
        if "__eq__" not in cls.__dict__:
            cls.__eq__ = _fields_eq
        if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
            cls.__hash__ = _fields_hash if frozen else None


# `inspect.signature(cls)` reads `cls.__signature__`: computed from the fields on demand.
ObjectMeta.__signature__ = property(_signature)


def _after_full_collection(phase, info):
    if info.get("generation") != 2:
        return
    if phase == "start":
        # Native cycles first (tether objects that only reference each other: reference
        # counting never frees them; docs/design.md, "Cycles"), then classes: they are kept
        # alive for their native objects, and those whose types have none left are given back
        # now, so that this collection can free them (and their modules' globals).
        if _gc.get_debug() & _gc.DEBUG_SAVEALL:
            # As CPython does with its own: the garbage is kept in gc.garbage, not freed.
            _gc.garbage.extend(_native._collect_cycles_saving())
        else:
            _native.collect_cycles()
        _native._release_idle_classes()
    elif phase == "stop":
        # Memory freed by the program goes back to the OS after each full collection: fully
        # free wrapper-pool slabs, and the pages mimalloc retains (tether.trim(); well under a
        # millisecond, measured with a million live objects).
        _native.trim()


# One callback per process, even if this module is reloaded.
_gc.callbacks[:] = [
    cb for cb in _gc.callbacks if getattr(cb, "__qualname__", "") != "_after_full_collection"
]
_gc.callbacks.append(_after_full_collection)
_atexit.register(_native._at_exit)
_native._set_class_hook(_finish_class)
_native._set_field_spec_type(_FieldSpec)
