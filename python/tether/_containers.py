"""``tether.List`` and ``tether.Dict``: Python list and dict semantics over the runtime's native
containers (``tether._native``'s ``_list_*``/``_dict_*`` primitives do the native work).

A container is a tether object: one canonical wrapper per native container, parked and revived
like any object's, so ``n.children is n.children``; its elements keep their identity the same
way. ``tether.List[Node]([a, b])`` and ``tether.Dict[str, int]({"a": 1})`` make one; a field
annotated ``list[Node]`` (or ``dict[str, int]``) holds one, converting a plain list (dict)
assigned to it and sharing a ``tether`` container of the same kind.

Every element is converted and checked on the way in, like a field's value: a wrong type raises
``TypeError`` naming the container, the index (key) and the types, and an ``extend`` or
``update`` with one bad item changes nothing.

Iteration: a list iterates by index, like Python's list (it sees changes made while it runs and
never fails because of them); a dict's iterators raise ``RuntimeError`` if keys are added or
removed while they run, like Python's dict.
"""

from __future__ import annotations

import types
from collections.abc import ItemsView, KeysView, Mapping, MutableMapping, MutableSequence, ValuesView
from typing import Any

from . import _native

List = _native.List
Dict = _native.Dict

_ANY_LIST = _native._list_spec(Any)
_ANY_DICT = _native._dict_spec(str, Any)


class _ContainerAlias(types.GenericAlias):
    """``tether.List[T]`` / ``tether.Dict[K, V]``: an annotation (``typing.get_origin`` and
    ``get_args`` work) and a constructor of containers of that kind."""

    def __call__(self, items=(), /):
        if self.__origin__ is List:
            return _native._list_new(_native._list_spec(*self.__args__), items)
        return _native._dict_new(_native._dict_spec(*self.__args__), items)

    def __repr__(self):
        names = ", ".join(getattr(a, "__qualname__", None) or repr(a) for a in self.__args__)
        return f"tether.{self.__origin__.__name__}[{names}]"


def _list_class_getitem(cls, elem):
    if isinstance(elem, tuple):
        raise TypeError("tether.List takes one element type: tether.List[T]")
    _native._list_spec(elem)  # resolves and checks it now
    return _ContainerAlias(List, (elem,))


def _dict_class_getitem(cls, kv):
    if not (isinstance(kv, tuple) and len(kv) == 2):
        raise TypeError("tether.Dict takes a key and a value type: tether.Dict[K, V]")
    _native._dict_spec(*kv)
    return _ContainerAlias(Dict, kv)


def _rebuild_list(spec):
    return _native._list_new(spec, ())


def _rebuild_dict(spec):
    return _native._dict_new(spec, ())


# --- tether.List --------------------------------------------------------------------------


def _list_new(cls, items=(), /):
    return _native._list_new(_ANY_LIST, items)


def _list_init(self, items=(), /):
    pass  # everything happened in __new__


def _slice_args(self, s):
    return s.indices(_native._list_len(self))


def _ne(self, other):
    eq = self.__eq__(other)
    return eq if eq is NotImplemented else not eq


class _ListMethods:
    """The methods of ``tether.List`` (copied onto the native class: it cannot take a Python
    base). Indexing, ``len``, iteration and ``append`` are C methods and slots, installed by
    ``_native._install_fast_slots``."""

    __slots__ = ()

    def _getslice(self, s):
        return _native._list_slice(self, *_slice_args(self, s))

    def __setitem__(self, i, value):
        if isinstance(i, slice):
            start, stop, step = _slice_args(self, i)
            if step == 1:
                stop = max(stop, start)
            _native._list_set_slice(self, start, stop, step, list(value) if value is self else value)
        else:
            _native._list_set(self, i.__index__(), value)

    def __delitem__(self, i):
        if isinstance(i, slice):
            _native._list_del_slice(self, *_slice_args(self, i))
        else:
            _native._list_del(self, i.__index__())

    def __reversed__(self):
        return reversed(_native._list_items(self))

    def __contains__(self, value):
        return any(x is value or x == value for x in self)

    def insert(self, i, value):
        _native._list_insert(self, i.__index__(), value)

    def extend(self, items):
        _native._list_extend(self, items)

    def pop(self, i=-1):
        return _native._list_pop(self, i.__index__())

    def remove(self, value):
        while True:
            items = _native._list_items(self)
            for i, x in enumerate(items):
                if x is value or x == value:
                    break
            else:
                raise ValueError(f"{value!r} is not in list")
            # Equality ran Python code: remove index i only if it still holds that element
            # (another thread may have changed the list meanwhile), else look again.
            if _native._list_remove_at(self, i, x):
                return

    def index(self, value, start=0, stop=None):
        items = _native._list_items(self)
        if stop is None:
            stop = len(items)
        for i in range(*slice(start, stop).indices(len(items))):
            if items[i] is value or items[i] == value:
                return i
        raise ValueError(f"{value!r} is not in list")

    def count(self, value):
        return sum(1 for x in self if x is value or x == value)

    def clear(self):
        _native._list_replace(self, ())

    def reverse(self):
        _native._list_reverse(self)

    def sort(self, *, key=None, reverse=False):
        items, version = _native._list_snapshot(self)
        items.sort(key=key, reverse=reverse)  # raises before anything changes
        if not _native._list_replace_if(self, version, items):
            raise ValueError("list modified during sort")

    def copy(self):
        return _native._list_slice(self, 0, _native._list_len(self), 1)

    def __add__(self, other):
        if not isinstance(other, (list, List)):
            return NotImplemented
        new = self.copy()
        new.extend(other)
        return new

    def __radd__(self, other):
        if not isinstance(other, list):
            return NotImplemented
        return other + _native._list_items(self)

    def __iadd__(self, other):
        self.extend(other)
        return self

    def __mul__(self, n):
        if not hasattr(n, "__index__"):
            return NotImplemented
        items = _native._list_items(self) * n
        return _native._list_new(_native._list_spec_of(self), items)

    __rmul__ = __mul__

    def __imul__(self, n):
        if not hasattr(n, "__index__"):
            return NotImplemented
        while True:
            items, version = _native._list_snapshot(self)
            if _native._list_replace_if(self, version, items * n):
                return self

    def __eq__(self, other):
        if isinstance(other, (list, List)):
            return _native._list_items(self) == (other if isinstance(other, list) else _native._list_items(other))
        return NotImplemented

    __ne__ = _ne

    __hash__ = None

    def __repr__(self):
        return repr(_native._list_items(self))

    def __reduce__(self):
        return (_rebuild_list, (_native._list_spec_of(self),), None, iter(_native._list_items(self)))

    def __copy__(self):
        return self.copy()


# --- tether.Dict --------------------------------------------------------------------------


def _dict_new(cls, items=(), /, **kw):
    # Untyped: str keys (like keyword arguments), any values.
    d = _native._dict_new(_ANY_DICT, items)
    if kw:
        _native._dict_update(d, kw)
    return d


def _dict_init(self, items=(), /, **kw):
    pass


_MISSING = object()


class _DictMethods:
    """The methods of ``tether.Dict``. Indexing, assignment, deletion, ``len`` and ``in`` are
    C methods and slots, installed by ``_native._install_fast_slots``."""

    __slots__ = ()

    def __iter__(self):
        return _native._dict_iter(self, 0)

    def keys(self):
        return KeysView(self)

    def values(self):
        return ValuesView(self)

    def items(self):
        return ItemsView(self)

    def get(self, key, default=None):
        return _native._dict_get_or(self, key, default)

    def setdefault(self, key, default=None):
        return _native._dict_setdefault(self, key, default)

    def pop(self, key, default=_MISSING):
        return _native._dict_pop(self, key, default, _MISSING)

    def popitem(self):
        return _native._dict_popitem(self)

    def clear(self):
        _native._dict_clear(self)

    def update(self, other=(), /, **kw):
        if isinstance(other, Dict):
            other = dict(_native._dict_items(other))
        elif not hasattr(other, "keys"):
            other = list(other)  # pairs: read them once
        if kw:
            merged = dict(other.items() if hasattr(other, "keys") else other)
            merged.update(kw)
            other = merged
        _native._dict_update(self, other)

    def copy(self):
        return _native._dict_new(_native._dict_spec_of(self), dict(_native._dict_items(self)))

    def __eq__(self, other):
        if isinstance(other, Dict):
            other = dict(_native._dict_items(other))
        if isinstance(other, Mapping):
            return dict(_native._dict_items(self)) == dict(other)
        return NotImplemented

    __ne__ = _ne

    __hash__ = None

    def __repr__(self):
        return repr(dict(_native._dict_items(self)))

    def __reduce__(self):
        return (_rebuild_dict, (_native._dict_spec_of(self),), None, None, iter(_native._dict_items(self)))

    def __copy__(self):
        return self.copy()


def _install():
    for cls, methods in ((List, _ListMethods), (Dict, _DictMethods)):
        for name, value in vars(methods).items():
            if name in ("__slots__", "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"):
                continue
            setattr(cls, name, value)
        cls.__doc__ = methods.__doc__
    List.__new__ = _list_new
    List.__init__ = _list_init
    List.__class_getitem__ = classmethod(_list_class_getitem)
    List.__doc__ = "A list of native elements of one kind: tether.List[T]([...]). Python list semantics."
    Dict.__new__ = _dict_new
    Dict.__init__ = _dict_init
    Dict.__class_getitem__ = classmethod(_dict_class_getitem)
    Dict.__doc__ = "An insertion-ordered native dict: tether.Dict[K, V]({...}). Python dict semantics."
    MutableSequence.register(List)
    MutableMapping.register(Dict)
    _native._install_fast_slots(List)
    _native._install_fast_slots(Dict)


_install()
