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
    stats,
    trim,
    tying_enabled,
)

__all__ = [
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
    "trim",
    "tying_enabled",
]

__version__ = "0.1.0"


def _after_full_collection(phase, info):
    if info.get("generation") != 2:
        return
    if phase == "start":
        # Classes are kept alive for their native objects; those whose types have none left are
        # given back now, so that this collection can free them (and their modules' globals).
        _native._release_idle_classes()
    elif phase == "stop":
        # Parked and freed wrapper memory lives in a slab pool whose automatic retention bound
        # is relative to its last trim; a trim after each full collection keeps it bounded.
        _native._trim_pool()


import atexit as _atexit  # noqa: E402
import gc as _gc  # noqa: E402

from . import _native  # noqa: E402

# One callback per process, even if this module is reloaded.
_gc.callbacks[:] = [
    cb for cb in _gc.callbacks if getattr(cb, "__qualname__", "") != "_after_full_collection"
]
_gc.callbacks.append(_after_full_collection)
_atexit.register(_native._at_exit)
