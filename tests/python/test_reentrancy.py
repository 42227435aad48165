"""A re-entrancy fuzzer: hostile Python code runs while tether is in the middle of an operation.

Hypothesis generates a *plan* (plain data, so it shrinks and prints): a few random tether classes
(1-5 fields of kinds int, float, bool, str, bytes, object, Optional[int/float/str], a tether class
``Leaf``, ``Optional[Leaf]`` and ``Optional[<itself>]``; trailing defaults; sometimes frozen,
sometimes ``eq=True`` where the build has it, sometimes with a hostile ``__del__``), bystander
objects, target objects and a list of steps. A step is an operation on a target: field
assignment, field read, repr, pickle round trip, copy/deepcopy, construction (positional or
keyword), ``__new__`` + ``__init__``/``__setstate__``, re-``__init__``, ``tether.move``, dropping
an object or a child wrapper, ``gc.collect()``, ``==``, ``hash``, and where the build has them
``tether.asdict``/``tether.replace``.

Values given to operations are valid, wrong-typed, out of range, ``tether.move`` tokens (of the
right or the wrong class, or already consumed), moved-from wrappers, shared children, or *evil*:
an ``int`` subclass whose ``__float__``/``__index__``/``__int__``/``__repr__``/``__eq__``/
``__hash__`` fire, a ``str``/``bytes`` subclass, an object whose ``__repr__``/``__del__``/
``__reduce_ex__``/``__deepcopy__``/... fire, or a tether object with a weakref callback. Firing
runs hostile *atoms* on the object being worked on: ``tether.move`` it (token dropped or kept, or
dropped and the freed memory refilled with same-sized "churn" objects carrying marker values),
move a child out, assign other fields, ``__init__``/``__setstate__`` it again, mutate the state
dict being restored, reassign its ``__class__``, read its fields, repr/pickle/copy/compare/hash
it, drop the last references (or resurrect it from ``__del__``), collect.

Invariants, checked after every step: no crash; every operation succeeds or raises an ordinary
Python exception (never ``SystemError``: "tether internal error" is a caught Rust panic); with
nothing hostile interfering, an operation does exactly what it documents and a failed one changes
nothing (old field values kept, ``tether.move`` tokens still holding their objects, no native
allocated); bystanders (and every target not acted on) keep their values and identities; no read
ever returns a churn marker (that is freed memory being read); at the end of each example, once
everything is dropped and collected, ``tether.stats()``'s ``native_objects``, ``live_wrappers``
and ``parked_wrappers`` are back to where they were.

Environment:

- ``TETHER_FUZZ_EXAMPLES``: number of examples (default 200). Runs are derandomized, no database.
- ``TETHER_FUZZ_SUBPROCESS=1``: run the fuzz in a child ``pytest`` process instead, so a crash
  (segfault, abort, ASan report) is a test failure showing the exit code, the output tail and the
  plan and steps of the example that was running (written to a trace file as it goes).
- ``TETHER_FUZZ_TRACE=<path>``: write that trace (each example's plan, steps, firings, outcomes)
  to a file in-process too; after a crash it ends with the example that crashed.

A failure names its kind (``InternalError``, ``FreedMemory``, ``TokenLost``, ``Leak``,
``WrongBehaviour``), the step, and the trace of the shrunk example (what fired, on what, and what
each operation returned).
"""

import copy
import gc
import os
import pickle
import re
import signal
import subprocess
import sys
import types
import weakref
from collections import namedtuple
from typing import Optional

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings

import tether
from tether import testing

EXAMPLES = int(os.environ.get("TETHER_FUZZ_EXAMPLES", "200"))
SUBPROCESS = os.environ.get("TETHER_FUZZ_SUBPROCESS") == "1"
TRACE_FILE = os.environ.get("TETHER_FUZZ_TRACE")

MAX_DEPTH = 2  # hostile code inside hostile code, at most this deep
STEP_BUDGET = 8  # firings per step
# Same-sized objects made after a hostile move, to refill the freed memory (it may take hundreds
# before the allocator hands the block out again). Under AddressSanitizer freed memory is held in
# quarantine, never handed out, and the access itself is reported: a few will do.
UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")
CHURN = 16 if UNDER_ASAN else 1000
MAX_TARGETS = 8

# Exceptions an operation may raise. SystemError (a caught Rust panic) is not among them, nor is
# pyo3's PanicException (a BaseException).
ALLOWED = (
    TypeError,
    ValueError,
    OverflowError,
    RuntimeError,  # includes tether.MovedError
    AttributeError,  # includes tether.FrozenInstanceError
    pickle.PickleError,
    copy.Error,
)


class Leaf(tether.Object):
    val: int


def _supports_eq():
    try:
        types.new_class("_EqProbe", (tether.Object,), {"eq": True},
                        lambda d: d.update({"__annotations__": {"x": int}, "__module__": __name__}))
    except TypeError:
        return False
    return True


# Newer builds: `eq=True` classes (field-wise ==, hash when frozen), tether.asdict/replace. Each
# runs Python code (__eq__, __hash__, deepcopy, conversions) while reading or building objects.
HAS_EQ = _supports_eq()
HAS_ASDICT = hasattr(tether, "asdict")
HAS_REPLACE = hasattr(tether, "replace")


class Other(tether.Object):
    tag: str


class FuzzFailure(AssertionError):
    """A broken invariant (subclasses keep hypothesis from shrinking one kind into another)."""


class InternalError(FuzzFailure):
    """SystemError / a caught Rust panic."""


class FreedMemory(FuzzFailure):
    """A read or write of freed memory (churn markers seen, or churn objects changed)."""


class TokenLost(FuzzFailure):
    """A failed operation destroyed (or a successful one did not consume) a tether.move token."""


class Leak(FuzzFailure):
    """Native objects or wrappers left over after everything was dropped."""


class WrongBehaviour(FuzzFailure):
    """Anything else: a value changed, a wrong outcome, an unexpected exception type."""


def categorize(msg):
    if "(a Rust panic or internal error)" in msg or "unraisable:" in msg:
        return InternalError
    if "churn object" in msg or "freed memory" in msg:
        return FreedMemory
    if "tether.move token" in msg or "the token's object" in msg:
        return TokenLost
    if msg.startswith("leak"):
        return Leak
    return WrongBehaviour


# ---------------------------------------------------------------------------------------------
# Plan data (hashable tuples; hypothesis prints them)

ClassSpec = namedtuple("ClassSpec", "kinds ndefaults frozen eq del_spec")
EvilSpec = namedtuple("EvilSpec", "atoms raise_kind limit")
Plan = namedtuple("Plan", "classes bystanders targets steps")

KINDS = (
    "int",
    "float",
    "bool",
    "str",
    "bytes",
    "object",
    "opt_int",
    "opt_float",
    "opt_str",
    "leaf",
    "opt_leaf",
    "opt_self",
)
TETHER_KINDS = ("leaf", "opt_leaf", "opt_self")
MUTATING = {"move", "move_child", "set", "init", "init_kw", "setstate", "mutate_state", "drop_refs",
            "reclass"}


def base_of(kind):
    return kind[4:] if kind.startswith("opt_") else kind


# ---------------------------------------------------------------------------------------------
# The shared context the hostile code acts through


class _Ctx:
    def __init__(self):
        self.reset()

    def reset(self):
        self.active = False  # hostile code fires only while an operation runs
        self.target = None  # the object being worked on
        self.state = None  # the dict being handed to __setstate__
        self.run = None
        self.depth = 0
        self.budget = 0
        self.fired = []  # (source, atoms, id of the object acted on)
        self.errors = []  # failures seen inside hostile code
        self.kept = []  # tokens and objects kept on purpose (dropped at the end of the example)
        self.moved = {}  # id -> wrapper moved out by the fuzzer (kept, so ids stay unique)
        # ids of wrappers whose weakref callbacks ran: code in a callback that asks for the same
        # object gets a new wrapper (documented), so the object's address may change
        self.unstable = set()
        self.weakrefs = []
        self.trace = []
        self.unraisable = []
        self.reclassed = []  # (object, its class) whose __class__ hostile code reassigned

    def begin(self, target, state=None):
        self.active = True
        self.target = target
        self.state = state
        self.budget = STEP_BUDGET
        self.fired = []

    def end(self):
        self.active = False
        self.target = None
        self.state = None
        # Give reassigned objects their classes back before the checks, unless hostile code
        # re-initialized the (moved-out) object under another one: then its native record is
        # that class's, and reads under the others raise TypeError.
        chains = {}
        for obj, cls, new in self.reclassed:
            chains.setdefault(id(obj), (obj, [cls]))[1].append(new)
        self.reclassed = []
        for obj, classes in chains.values():
            for cls in classes:
                obj.__class__ = cls
                try:
                    getattr(obj, FIELDS[cls][0][0])
                except TypeError:
                    continue
                except Exception:  # noqa: BLE001 - MovedError: no record, any class will do
                    pass
                break

    def mutated_ids(self):
        return {tid for (_, atoms, tid) in self.fired if tid is not None and any(a[0] in MUTATING for a in atoms)}


CTX = _Ctx()
_CURRENT = object()


def log(line):
    CTX.trace.append(line)
    if _TRACE is not None:
        _TRACE.write(line + "\n")
        _TRACE.flush()


_TRACE = open(TRACE_FILE, "a", buffering=1) if TRACE_FILE else None


def label(o):
    if o is None:
        return "None"
    return f"{type(o).__name__}@{id(o):#x}"


def fire(spec, source, target=_CURRENT):
    """Runs the hostile atoms of `spec` on the object being worked on (or `target`)."""
    if not CTX.active or CTX.depth >= MAX_DEPTH or CTX.budget <= 0:
        return False
    CTX.budget -= 1
    t = CTX.target if target is _CURRENT else target
    CTX.fired.append((source, spec.atoms, id(t) if t is not None else None))
    log(f"    {source} fires on {label(t)}: {spec.atoms}")
    CTX.depth += 1
    try:
        for atom in spec.atoms:
            try:
                do_atom(atom, t)
            except ALLOWED as e:
                log(f"      {atom[0]} -> {type(e).__name__}")
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - SystemError, PanicException, ...
                msg = f"hostile {atom!r} (from {source}) raised {type(e).__name__}: {safe_str(e)}"
                if isinstance(e, SystemError) or "internal error" in msg or "Panic" in type(e).__name__:
                    msg += " (a Rust panic or internal error)"
                log("      FAILURE " + msg)
                CTX.errors.append(msg)
    finally:
        CTX.depth -= 1
    return True


def safe_str(e):
    try:
        return str(e)[:300]
    except BaseException:  # noqa: BLE001
        return "<unprintable>"


class EvilError(ValueError):
    pass


class EvilTypeError(TypeError):
    """Raised by an evil dunder; its __str__ (called when tether annotates a TypeError) fires too."""

    def __init__(self, spec):
        super().__init__("evil")
        self.spec = spec

    def __str__(self):
        fire(EvilSpec(self.spec.atoms, None, 1), "EvilTypeError.__str__")
        return "evil"


class _Fires:
    """Mixin of the evil values: `_go` fires at most `limit` times, then maybe raises."""

    __slots__ = ()

    def _go(self, source, may_raise=True):
        spec = self._spec
        if not CTX.active or self._n >= spec.limit:
            return
        self._n += 1
        fired = fire(spec, source)
        if fired and may_raise and spec.raise_kind == "value":
            raise EvilError(source)
        if fired and may_raise and spec.raise_kind == "type":
            raise EvilTypeError(spec)


class EvilInt(_Fires, int):
    def __new__(cls, v, spec):
        o = int.__new__(cls, v)
        o._spec = spec
        o._n = 0
        return o

    def __float__(self):
        self._go("EvilInt.__float__")
        return float(int.__int__(self))

    def __index__(self):
        self._go("EvilInt.__index__")
        return int.__int__(self)

    def __int__(self):
        self._go("EvilInt.__int__")
        return int.__int__(self)

    def __repr__(self):
        self._go("EvilInt.__repr__")
        return int.__repr__(self)

    def __eq__(self, other):
        self._go("EvilInt.__eq__")
        return int.__eq__(self, other)

    def __hash__(self):
        self._go("EvilInt.__hash__")
        return int.__hash__(self)

    def __reduce__(self):
        return (EvilInt, (int.__int__(self), self._spec))


class EvilStr(_Fires, str):
    def __new__(cls, v, spec):
        o = str.__new__(cls, v)
        o._spec = spec
        o._n = 0
        return o

    def __repr__(self):
        self._go("EvilStr.__repr__")
        return str.__repr__(self)

    def __eq__(self, other):
        self._go("EvilStr.__eq__")
        return str.__eq__(self, other)

    def __hash__(self):
        self._go("EvilStr.__hash__")
        return str.__hash__(self)

    def __reduce__(self):
        return (EvilStr, (str.__str__(self), self._spec))


class EvilBytes(_Fires, bytes):
    def __new__(cls, v, spec):
        o = bytes.__new__(cls, v)
        o._spec = spec
        o._n = 0
        return o

    def __repr__(self):
        self._go("EvilBytes.__repr__")
        return bytes.__repr__(self)

    def __eq__(self, other):
        self._go("EvilBytes.__eq__")
        return bytes.__eq__(self, other)

    def __hash__(self):
        self._go("EvilBytes.__hash__")
        return bytes.__hash__(self)

    def __reduce__(self):
        return (EvilBytes, (bytes(self), self._spec))


class EvilObj(_Fires):
    """Held as itself by `object` fields; every dunder tether or pickle/copy may call fires."""

    __slots__ = ("_spec", "_n", "__weakref__")

    def __init__(self, spec):
        self._spec = spec
        self._n = 0

    def __repr__(self):
        self._go("EvilObj.__repr__")
        return "EvilObj()"

    def __eq__(self, other):
        self._go("EvilObj.__eq__")
        return self is other

    def __hash__(self):
        self._go("EvilObj.__hash__")
        return id(self) >> 4

    def __float__(self):
        self._go("EvilObj.__float__")
        return 1.0

    def __index__(self):
        self._go("EvilObj.__index__")
        return 1

    def __int__(self):
        self._go("EvilObj.__int__")
        return 1

    def __bool__(self):
        self._go("EvilObj.__bool__")
        return True

    def __reduce_ex__(self, protocol):
        self._go("EvilObj.__reduce_ex__")
        return (EvilObj, (self._spec,))

    def __copy__(self):
        self._go("EvilObj.__copy__")
        return self

    def __deepcopy__(self, memo):
        self._go("EvilObj.__deepcopy__")
        return self

    def __del__(self):
        self._go("EvilObj.__del__", may_raise=False)


class WeakCallback:
    def __init__(self, spec, what, wid):
        self.spec = spec
        self.what = what
        self.wid = wid
        self.n = 0

    def __call__(self, _ref):
        if CTX.active and self.n < self.spec.limit:
            self.n += 1
            CTX.unstable.add(self.wid)
            fire(self.spec, f"weakref callback of {self.what}")


def watch(obj, spec, what):
    CTX.weakrefs.append(weakref.ref(obj, WeakCallback(spec, what, id(obj))))


# ---------------------------------------------------------------------------------------------
# Generated classes

_CLASSES = {}  # ClassSpec -> class
FIELDS = {Leaf: [("val", "int")], Other: [("tag", "str")]}  # class -> [(name, kind)]
FROZEN = set()
EQ = set()  # classes declared with eq=True
DEFAULTS = {Leaf: {}, Other: {}}  # class -> {name: expectation of the default}


def has_del(cls):
    return getattr(cls, "__del__", None) is not None


def build_class(spec):
    cls = _CLASSES.get(spec)
    if cls is not None:
        return cls
    name = f"Gen{len(_CLASSES)}"
    names = [f"f{i}_{k}" for i, k in enumerate(spec.kinds)]
    annotations = {}
    for n, k in zip(names, spec.kinds):
        annotations[n] = {
            "int": int,
            "float": float,
            "bool": bool,
            "str": str,
            "bytes": bytes,
            "object": object,
            "opt_int": Optional[int],
            "opt_float": Optional[float],
            "opt_str": Optional[str],
            "leaf": Leaf,
            "opt_leaf": Optional[Leaf],
            "opt_self": Optional[name],
        }[k]
    defaults = {}
    for n, k in reversed(list(zip(names, spec.kinds))):
        if len(defaults) >= spec.ndefaults or k == "leaf":
            break
        defaults[n] = (default_value(k), default_expect(k))
    ns = {"__annotations__": annotations, "__module__": __name__, "__qualname__": name}
    ns.update({n: v for n, (v, _) in defaults.items()})
    if spec.del_spec is not None:
        del_spec = spec.del_spec

        def __del__(self):
            if CTX.active:
                fire(del_spec, f"{name}.__del__", target=self)

        ns["__del__"] = __del__
    kwds = {"frozen": spec.frozen}
    if spec.eq and HAS_EQ:
        kwds["eq"] = True
    cls = types.new_class(name, (tether.Object,), kwds, lambda d: d.update(ns))
    globals()[name] = cls  # pickle finds classes by module and name
    FIELDS[cls] = list(zip(names, spec.kinds))
    DEFAULTS[cls] = {n: e for n, (_, e) in defaults.items()}
    if spec.frozen:
        FROZEN.add(cls)
    if "eq" in kwds:
        EQ.add(cls)
    _CLASSES[spec] = cls
    return cls


def default_value(kind):
    return {"int": -7, "float": 2.5, "bool": True, "str": "dflt", "bytes": b"d", "object": 0}.get(kind)


def default_expect(kind):
    v = default_value(kind)
    if v is None:
        return ("none",)
    return ("eq", v)


# ---------------------------------------------------------------------------------------------
# Values


class Mat:
    """A materialized value: what to pass, what the field should then hold, what may go wrong.

    exc: None (must succeed), or a tuple of exception types (must fail with one of them); either
    way, once anything hostile fired during the operation, any allowed outcome is fine.
    tokens: [(token, class, value, when)] to check afterwards: "consume" tokens must be consumed
    if the operation succeeded, and every token must still hold its object if it failed.
    """

    __slots__ = ("value", "expect", "exc", "tokens", "omit", "may_fail")

    def __init__(self, value, expect, exc=None, tokens=(), omit=False, may_fail=()):
        self.value = value
        self.expect = expect
        self.exc = exc
        self.tokens = list(tokens)
        self.omit = omit
        self.may_fail = may_fail  # errors tolerated where the documented behaviour leaves a choice


INT_SPECIAL = (0, -1, 2**63 - 1, -(2**63), 1 << 40)


def int_of(seed):
    return INT_SPECIAL[seed % 5] if seed % 11 == 0 else seed * 3 - 40


def float_of(seed):
    return (float("nan"), -0.0, 1e308, float("inf"))[seed % 4] if seed % 13 == 0 else seed / 4 - 3


def valid_value(kind, seed, cls, depth):
    """A fresh valid value for a field of `kind` and what the field then holds."""
    if kind.startswith("opt_"):
        if seed % 3 == 0:
            return None, ("none",)
        kind = base_of(kind)
    if kind == "int":
        v = int_of(seed)
        return v, ("eq", v)
    if kind == "float":
        if seed % 5 == 1:
            v = seed - 9  # an int is accepted and widened
            return v, ("eq", float(v))
        v = float_of(seed)
        return v, ("eq", v)
    if kind == "bool":
        return seed % 2 == 0, ("eq", seed % 2 == 0)
    if kind == "str":
        v = ("", f"s{seed}", "é✓" * (seed % 3))[seed % 3]
        return v, ("eq", v)
    if kind == "bytes":
        v = bytes([seed % 256]) * (seed % 4)
        return v, ("eq", v)
    if kind == "object":
        v = (None, 10**20 + seed, (seed, "t"), None)[seed % 4]
        if seed % 4 == 3:
            v = Leaf(seed)
        return v, is_expect(v)
    if kind == "leaf":
        w = Leaf(int_of(seed))
        return w, child_expect(w)
    if kind == "self":
        if depth >= 1:
            return None, ("none",)
        w = cls(*[v for v, _ in valid_args(cls, seed + 1, depth + 1)])
        return w, child_expect(w)
    raise AssertionError(kind)


def valid_args(cls, seed, depth):
    return [valid_value(k, seed + i, cls, depth) for i, (_, k) in enumerate(FIELDS[cls])]


def child_expect(w):
    """What a field holding the native object of wrapper `w` yields (w must be canonical, or moved
    out: then only its type is checked)."""
    wid = None if has_del(type(w)) else id(w)  # a class with __del__ is never parked
    val = w.val if type(w) is Leaf and id(w) not in CTX.moved else None
    return ("child", wid, type(w), val)


BAD = {
    "int": [("1", TypeError), (1.5, TypeError), (None, TypeError), (2**64, OverflowError),
            (-(2**63) - 1, OverflowError), (b"1", TypeError)],
    "float": [("1.0", TypeError), (None, TypeError), (2**1100, OverflowError), (b"", TypeError)],
    "bool": [(0, TypeError), (1, TypeError), ("True", TypeError), (None, TypeError)],
    "str": [(b"s", TypeError), (1, TypeError), (None, TypeError)],
    "bytes": [("s", TypeError), (bytearray(b"x"), TypeError), (None, TypeError)],
    "object": [],
    "opt_int": [("1", TypeError), (2**64, OverflowError)],
    "opt_float": [("x", TypeError), (2**1100, OverflowError)],
    "opt_str": [(1, TypeError), (b"x", TypeError)],
    "leaf": [(None, TypeError), (1, TypeError), (lambda: Other("b"), TypeError)],
    "opt_leaf": [(1, TypeError), (lambda: Other("b"), TypeError)],
    "opt_self": [(lambda: Leaf(1), TypeError), ("x", TypeError)],
}


def fresh_tether(kind, seed, cls):
    """A fresh object for a tether-typed field of `kind` (Leaf, or an instance of `cls`)."""
    if base_of(kind) == "self":
        return cls(*[v for v, _ in valid_args(cls, seed + 1, 1)])
    return Leaf(int_of(seed))


def note_moved(w):
    CTX.moved[id(w)] = w


def materialize(kind, vs, cls, mode, T=None):
    """The value for spec `vs` in a field of `kind` of class `cls`.

    mode: "op" (assignment, re-init), "construct" (may share the target `T` and its children),
    "initial" (objects made before the steps: nothing that fails), "bystander" (the same, and
    nothing hostile but evil objects in `object` fields), "hostile" (from inside hostile code).
    """
    tag = vs[0]
    base = base_of(kind)
    tk = kind in TETHER_KINDS
    seed = vs[1] if len(vs) > 1 and isinstance(vs[1], int) else 0
    if mode in ("initial", "bystander") and tag not in ("valid", "share", "token", "evil", "default"):
        tag = "valid"
    if mode == "bystander" and tag == "evil" and kind != "object":
        tag = "valid"
    if tag == "default":
        return Mat(None, None, omit=True)
    if tag == "bad":
        cands = BAD[kind]
        if cands:
            v, exc = cands[seed % len(cands)]
            return Mat(v() if callable(v) else v, None, (exc,))
    elif tag == "token":
        if tk:
            w = fresh_tether(kind, seed, cls)
            e = child_expect(w)
            e = ("child", None, e[2], e[3])
            tok = tether.move(w)
            return Mat(tok, e, tokens=[(tok, type(w), e[3], "consume")])
        if base == "object":  # stored as the token, or (documented now) as its native object
            tok = tether.move(Leaf(int_of(seed)))
            return Mat(tok, ("tok_or_obj", tok, Leaf, int_of(seed)), tokens=[(tok, Leaf, int_of(seed), "keep")])
    elif tag == "bad_token":
        tok = tether.move(Other(f"o{seed}"))
        if base == "object":
            return Mat(tok, ("tok_or_obj", tok, Other, None), tokens=[(tok, Other, f"o{seed}", "keep")])
        return Mat(tok, None, (TypeError,), tokens=[(tok, Other, f"o{seed}", "keep")])
    elif tag in ("moved", "consumed"):
        if tag == "moved":
            v = fresh_tether(kind, seed, cls) if tk else Leaf(seed)
            testing.discard(tether.move(v))
            note_moved(v)
        else:
            v = tether.move(Leaf(seed))
            testing.discard(v)
        if base == "object":  # held as the Python object, or refused
            e = ("tok_or_obj", v, None, None) if tag == "consumed" else is_expect(v)
            return Mat(v, e, may_fail=(tether.MovedError,))
        return Mat(v, None, (tether.MovedError, TypeError))
    elif tag == "share":
        run = CTX.run
        if run is not None and run.pool and (kind in ("leaf", "opt_leaf") or base == "object"):
            p, val = run.pool[seed % len(run.pool)]
            if base == "object":
                return obj_mat(p)
            if id(p) in CTX.moved:
                return Mat(p, None, (tether.MovedError,))
            return Mat(p, ("child", id(p), Leaf, val))
    elif tag == "evil":
        spec = vs[1]
        n = int_of(len(spec.atoms) + 3)
        if base in ("int", "float"):
            v = EvilInt(n, spec)
            return Mat(v, ("eq", float(n) if base == "float" else n))
        if base == "str":
            return Mat(EvilStr(f"e{n}", spec), ("eq", f"e{n}"))
        if base == "bytes":
            return Mat(EvilBytes(b"ev", spec), ("eq", b"ev"))
        if base == "bool":
            return Mat(EvilObj(spec), None, (TypeError,))
        if base == "object":
            v = EvilObj(spec)
            return Mat(v, is_expect(v))
        w = fresh_tether(kind, seed, cls)
        watch(w, spec, f"value {type(w).__name__}")
        return Mat(w, child_expect(w))
    elif tag == "target" and mode == "construct" and T is not None:
        if base == "object":
            return obj_mat(T)
        if base == "self" and type(T) is cls:
            if T_moved(T):
                return Mat(T, None, (tether.MovedError,))
            return Mat(T, child_expect(T))
    elif tag == "child" and mode == "construct" and T is not None and tk and not T_moved(T):
        want = cls if base == "self" else Leaf
        for name, k in FIELDS[type(T)]:
            c = getattr(T, name) if k in TETHER_KINDS else None
            if c is not None and type(c) is want:
                return Mat(c, child_expect(c))
    v, e = valid_value(kind, seed, cls, 0)
    return Mat(v, e)


def obj_mat(v):
    """`v` for an `object` field: a moved-out wrapper may be held as itself or refused."""
    moved = isinstance(v, tether.Object) and id(v) in CTX.moved
    return Mat(v, is_expect(v), may_fail=(tether.MovedError,) if moved else ())


def T_moved(T):
    try:
        getattr(T, FIELDS[type(T)][0][0])
    except tether.MovedError:
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Hostile atoms


def do_atom(atom, t):
    kind = atom[0]
    if kind == "gc":
        gc.collect()
        return
    if kind == "mutate_state":  # the dict being restored changes size under tether's iteration
        d = CTX.state
        if d is not None:
            if atom[1] % 3 == 0 or not d:
                d[f"zz_unknown{len(d)}"] = 0
            elif atom[1] % 3 == 1:
                del d[next(reversed(d))]
            else:
                d.clear()
        return
    if kind == "churn":
        if t is not None:
            CTX.run.churn(type(t))
        return
    if t is None:
        return
    cls = type(t)
    fields = FIELDS[cls]
    if kind == "move":
        tok = tether.move(t)
        note_moved(t)
        if atom[1] == "keep":
            CTX.kept.append(tok)
        else:
            testing.discard(tok)
            if atom[1] == "drop_churn":
                CTX.run.churn(cls)
    elif kind == "move_child":
        tfields = [n for n, k in fields if k in TETHER_KINDS]
        if tfields:
            c = getattr(t, tfields[atom[1] % len(tfields)])
            if c is not None:
                tok = tether.move(c)
                note_moved(c)
                testing.discard(tok)
    elif kind == "set":
        name, k = fields[atom[1] % len(fields)]
        m = materialize(k, atom[2], cls, "hostile")
        setattr(t, name, None if m.omit else m.value)
    elif kind == "init":
        t.__init__(*[v for v, _ in valid_args(cls, atom[1], 1)])
    elif kind == "init_kw":
        t.__init__(**{n: v for (n, _), (v, _) in zip(fields, valid_args(cls, atom[1], 1))})
    elif kind == "setstate":
        t.__setstate__({n: v for (n, _), (v, _) in zip(fields, valid_args(cls, atom[1], 1))})
    elif kind == "read":
        for name, _ in fields:
            scan(getattr(t, name), f"hostile read of {cls.__name__}.{name}", hostile=True)
    elif kind == "repr":
        scan_repr(repr(t), "hostile repr", hostile=True)
    elif kind == "pickle":
        pickle.loads(pickle.dumps(t))
    elif kind == "copy":
        copy.copy(t)
    elif kind == "deepcopy":
        copy.deepcopy(t)
    elif kind == "drop_refs":
        CTX.run.forget(t)
        if CTX.target is t:
            CTX.target = None
    elif kind == "resurrect":
        CTX.kept.append(t)
    elif kind == "eq":
        t == t  # noqa: B015 - field-wise for eq=True classes
    elif kind == "hash":
        hash(t)
    elif kind == "asdict":
        if HAS_ASDICT:
            tether.asdict(t)
    elif kind == "reclass":  # every tether class has the wrapper's layout, so CPython allows it
        choices = [c for c in CTX.run.classes + [Leaf, Other] if c is not cls]
        if choices:
            new = choices[atom[1] % len(choices)]
            CTX.reclassed.append((t, cls, new))
            t.__class__ = new
    else:
        raise AssertionError(atom)


MARK_INT = 7_770_000
_MARK_RE = re.compile(r"CHURN|777\d{4}")


def is_marker(v):
    if type(v) is int or type(v) is float:
        return MARK_INT <= v < MARK_INT + 10_000
    if type(v) is str:
        return "CHURN" in v
    if type(v) is bytes:
        return b"CHURN" in v
    return False


def scan(v, where, hostile=False):
    if is_marker(v) or (type(v) is Leaf and is_marker(_try(lambda: v.val))):
        msg = f"{where} returned {v!r}: a value of a churn object (freed memory was read)"
        if hostile:
            CTX.errors.append(msg)
        else:
            raise AssertionError(msg)


def scan_repr(s, where, hostile=False):
    if type(s) is not str:
        msg = f"{where}: repr returned {type(s).__name__}"
    elif _MARK_RE.search(s):
        msg = f"{where} shows a churn object's values (freed memory was read): {s[:300]}"
    else:
        return
    if hostile:
        CTX.errors.append(msg)
    else:
        raise AssertionError(msg)


def _try(f):
    try:
        return f()
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------------------------
# Models and checks


class Tracked:
    """An object and what its fields should hold (model None: moved out)."""

    __slots__ = ("obj", "model", "name")

    def __init__(self, obj, model, name):
        self.obj = obj
        self.model = model
        self.name = name


def same_scalar(got, exp):
    if type(got) is not type(exp):
        return False
    if type(exp) is float and exp != exp:
        return got != got
    return got == exp


def check_expect(got, exp, where):
    tag = exp[0]
    if tag == "none":
        ok = got is None
    elif tag == "eq":
        ok = same_scalar(got, exp[1])
    elif tag == "is":
        ok = got is exp[1]
    elif tag == "isw":
        held = exp[1]()
        ok = held is not None and got is held
    elif tag == "tok_or_obj":
        _, tok, cls, val = exp
        ok = got is tok or (
            cls is not None and type(got) is cls and (val is None or same_scalar(_try(lambda: got.val), val))
        )
    elif tag == "any":
        ok = True
    elif tag == "child":
        _, wid, cls, val = exp
        ok = type(got) is cls
        if ok and wid is not None and wid not in CTX.moved and wid not in CTX.unstable and id(got) != wid:
            raise AssertionError(f"{where}: the child's wrapper moved address ({id(got):#x}, was {wid:#x})")
        if ok and val is not None and wid not in CTX.moved and id(got) not in CTX.moved:
            got_val = got.val
            if not same_scalar(got_val, val):
                raise AssertionError(f"{where}: child value {got_val!r}, expected {val!r}")
    else:
        raise AssertionError(exp)
    if not ok:
        shown = repr(exp[1]) if tag == "eq" else tag
        raise AssertionError(f"{where}: got {short(got)}, expected {shown}")


def short(v):
    if isinstance(v, (EvilObj, EvilInt, EvilStr, EvilBytes)):
        return f"<{type(v).__name__}>"
    if isinstance(v, tether.Object):
        return label(v)
    r = repr(v)
    return r if len(r) < 120 else r[:120] + "..."


def expect_of(got):
    if got is None:
        return ("none",)
    if type(got) in (int, float, bool, str, bytes):
        return ("eq", got)
    if isinstance(got, tether.Object) and type(got) in FIELDS:
        return child_expect(got)
    return is_expect(got)


def is_expect(v):
    """("is", v), held weakly where v allows it: a model that kept the value alive would stop its
    __del__ (and a tether object's release) from running inside the operation that drops it.
    A tether object (held as itself, or natively) is checked by type and address."""
    if isinstance(v, tether.Object) and type(v) in FIELDS:
        return child_expect(v)
    try:
        return ("isw", weakref.ref(v))
    except TypeError:
        return ("is", v)


def expect_of_field(kind, got):
    if kind == "object":
        return is_expect(got)
    return expect_of(got)


def check_tracked(tr, markers=True):
    try:
        _check_tracked(tr, markers)
    except AssertionError as e:
        if tr.name.startswith("churn"):
            raise AssertionError(
                f"{e} -- {tr.name} was made right after hostile code freed an object: something "
                f"wrote into that freed memory (churn object changed)"
            ) from None
        raise


def _check_tracked(tr, markers=True):
    """The object's fields match its model; a moved-out object raises MovedError everywhere;
    `markers`: no field holds a churn marker (for everything but the churn objects)."""
    obj = tr.obj
    fields = FIELDS[type(obj)]
    for i, (name, kind) in enumerate(fields):
        where = f"{tr.name}.{name}"
        if tr.model is None:
            try:
                getattr(obj, name)
            except tether.MovedError:
                continue
            raise AssertionError(f"{where}: readable after the object was moved out")
        try:
            got = getattr(obj, name)
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"{where}: reading raised {type(e).__name__}: {safe_str(e)}") from None
        if kind in TETHER_KINDS and got is not None and getattr(obj, name) is not got:
            raise AssertionError(f"{where}: two reads gave two wrappers")
        check_expect(got, tr.model[i], where)
        if markers:
            scan(got, where)


def snapshot(tr, where):
    """Re-reads the model of an object something hostile acted on."""
    obj = tr.obj
    fields = FIELDS[type(obj)]
    try:
        vals = [getattr(obj, n) for n, _ in fields]
    except tether.MovedError:
        tr.model = None
        check_tracked(tr)  # every field raises
        return
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{where}: reading {tr.name} raised {type(e).__name__}: {safe_str(e)}") from None
    for (n, _), v in zip(fields, vals):
        scan(v, f"{where}: {tr.name}.{n}")
    tr.model = [expect_of_field(k, v) for (_, k), v in zip(fields, vals)]
    check_tracked(tr)


def check_tokens(mats, succeeded, where):
    for m in mats:
        for tok, cls, val, when in m.tokens:
            if succeeded and when == "consume":
                try:
                    testing.echo(tok)
                except tether.MovedError:
                    continue
                raise AssertionError(f"{where}: succeeded but its tether.move token was not consumed")
            if not succeeded:
                try:
                    w = testing.echo(tok)
                except tether.MovedError:
                    raise AssertionError(
                        f"{where}: failed, and the tether.move token it was given no longer holds "
                        f"its object (a failed operation must change nothing)"
                    ) from None
                if type(w) is not cls or (val is not None and getattr(w, FIELDS[cls][0][0]) != val):
                    raise AssertionError(f"{where}: the token's object came back as {short(w)}")


def fail_if_bad_exc(err, where):
    if err is None:
        return
    if isinstance(err, SystemError) or "internal error" in safe_str(err):
        raise AssertionError(f"{where} raised {type(err).__name__} (a Rust panic or internal error): {safe_str(err)}")
    if not isinstance(err, ALLOWED):
        raise AssertionError(f"{where} raised an unexpected {type(err).__name__}: {safe_str(err)}")


def call(f):
    """Runs f(); returns (result, exception)."""
    try:
        r = f()
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001
        e.__traceback__ = None
        log(f"    -> {type(e).__name__}: {safe_str(e)[:100]}")
        return None, e
    log("    -> ok")
    return r, None


# ---------------------------------------------------------------------------------------------
# The run of one example


class Run:
    def __init__(self, plan):
        self.classes = [build_class(c) for c in plan.classes]
        self.pool = []  # [(Leaf, val)]: shared children
        self.bystanders = []  # [Tracked]
        self.targets = []  # [Tracked]
        self.churned = []  # [Tracked]: churn objects of this step (checked and dropped at its end)
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def cls(self, i):
        return self.classes[i % len(self.classes)]

    def target(self, i):
        return self.targets[i % len(self.targets)] if self.targets else None

    def add_target(self, obj, model, prefix="t"):
        if len(self.targets) >= MAX_TARGETS:
            return None
        tr = Tracked(obj, model, self.name(prefix))
        self.targets.append(tr)
        return tr

    def forget(self, obj):
        self.targets = [tr for tr in self.targets if tr.obj is not obj]

    def churn(self, cls):
        """Same-sized objects with marker values, made right after a hostile move freed memory;
        checked at the end of the step, so a write into freed memory shows up as a changed value."""
        if len(self.churned) >= 2 * CHURN:
            return
        marks = {
            "int": lambda k: MARK_INT + k,
            "float": lambda k: MARK_INT + k + 0.5,
            "bool": lambda k: True,
            "str": lambda k: f"CHURN{k}",
            "bytes": lambda k: b"CHURN",
            "object": lambda k: None,
            "opt_int": lambda k: MARK_INT + k,
            "opt_float": lambda k: MARK_INT + k + 0.5,
            "opt_str": lambda k: "CHURN",
            "leaf": lambda k: Leaf(MARK_INT + k),
            "opt_leaf": lambda k: None,
            "opt_self": lambda k: None,
        }
        fields = FIELDS[cls]
        for k in range(CHURN):
            vals = [marks[kind](k) for _, kind in fields]
            obj = cls(*vals)
            model = [
                child_expect(v) if isinstance(v, Leaf) else ("none",) if v is None else ("eq", v)
                for v in vals
            ]
            del vals
            self.churned.append(Tracked(obj, model, self.name("churn")))

    def check_all(self, skip=()):
        for p, val in self.pool:
            if id(p) in CTX.moved:
                continue
            if p.val != val:
                raise AssertionError(f"shared Leaf changed: {p.val!r}, expected {val!r}")
        for tr in self.bystanders:
            check_tracked(tr)
        churned, self.churned = self.churned, []
        for tr in churned:
            check_tracked(tr, markers=False)
        for tr in self.targets:
            if tr.obj is not None and id(tr.obj) not in skip:
                check_tracked(tr)

    def clear(self):
        self.churned.clear()
        self.pool.clear()
        self.bystanders.clear()
        self.targets.clear()


def build(cls, mats, kw):
    fields = FIELDS[cls]
    if kw:
        d = {n: m.value for (n, _), m in zip(fields, mats) if not m.omit}
        return lambda: cls(**d)
    args = [m.value for m in mats]
    return lambda: cls(*args)


def arg_mats(run, cls, vspecs, mode, T=None, kw=True):
    fields = FIELDS[cls]
    specs = list(vspecs[: len(fields)]) + [("valid", 5 + i) for i in range(len(vspecs), len(fields))]
    mats = []
    for (name, kind), vs in zip(fields, specs):
        m = materialize(kind, vs, cls, mode, T)
        if m.exc and mode in ("initial", "bystander"):
            m = materialize(kind, ("valid", 3), cls, mode)
        if m.omit:
            if not kw:
                v, e = valid_value(kind, 1, cls, 0)
                m = Mat(v, e)
            elif name in DEFAULTS[cls]:
                m.expect = DEFAULTS[cls][name]
            else:
                m.exc = (TypeError,)  # a required field left out
        mats.append(m)
    return mats


def check_outcome(err, mats, fired, where):
    """With nothing fired: fail exactly when a value is bad, with one of the expected errors."""
    fail_if_bad_exc(err, where)
    if fired:
        return
    excs = tuple(e for m in mats if m.exc for e in m.exc)
    tolerated = tuple(e for m in mats for e in m.may_fail)
    if excs and err is None:
        raise AssertionError(f"{where}: succeeded, expected one of {[e.__name__ for e in excs]}")
    if tolerated and err is not None and isinstance(err, tolerated):
        return
    if not excs and err is not None:
        raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)} (all values valid)")
    if excs and err is not None and not isinstance(err, excs):
        raise AssertionError(
            f"{where}: raised {type(err).__name__}: {safe_str(err)}, expected one of "
            f"{[e.__name__ for e in excs]}"
        )


def run_step(run, i, step):
    op = step[0]
    where = f"step {i} {op}"
    log(f"  step {i}: {step!r}")
    CTX.fired = []
    natives_checked = None
    tr = None
    if op in ("set", "get", "repr", "pickle", "copy", "init", "move", "drop", "drop_child", "watch",
              "eq", "hash", "asdict", "replace"):
        tr = run.target(step[1])
        if tr is None:
            return
        t = tr.obj
        cls = type(t)
        fields = FIELDS[cls]
        frozen = cls in FROZEN
        where += f" on {tr.name} ({cls.__name__} {[k for _, k in fields]}{' frozen' if frozen else ''})"
    skip = set()  # targets checked by the op itself

    if op == "set":
        fi = step[2] % len(fields)
        name, kind = fields[fi]
        where += f" .{name} = {step[3]!r}"
        m = materialize(kind, step[3], cls, "op")
        if m.omit:
            m = materialize(kind, ("valid", 2), cls, "op")
        CTX.begin(t)
        _, err = call(lambda: setattr(t, name, m.value))
        n_fired = len(CTX.fired)
        m.value = None
        CTX.end()
        fail_if_bad_exc(err, where)
        mutated = CTX.mutated_ids()
        if id(t) not in mutated and tr in run.targets:
            own = (m.exc or ()) + m.may_fail  # a build may convert the value before checking
            if tr.model is None:
                if n_fired == 0 and not isinstance(err, (tether.MovedError, tether.FrozenInstanceError) + own):
                    raise AssertionError(f"{where}: on a moved-out object gave {err!r}, expected MovedError")
            elif frozen:
                if n_fired == 0 and not isinstance(err, (tether.FrozenInstanceError,) + own):
                    raise AssertionError(f"{where}: frozen, gave {err!r}, expected FrozenInstanceError")
            else:
                check_outcome(err, [m], n_fired, where)
                if err is None:
                    if m.expect is not None:
                        check_expect(getattr(t, name), m.expect, where)
                    tr.model[fi] = expect_of_field(kind, getattr(t, name))
            skip.add(id(t))
        check_tokens([m], err is None, where)

    elif op == "get":
        name, kind = fields[step[2] % len(fields)]
        CTX.begin(t)
        v, err = call(lambda: getattr(t, name))
        CTX.end()
        fail_if_bad_exc(err, where)
        if tr.model is None:
            if not isinstance(err, tether.MovedError):
                raise AssertionError(f"{where}: on a moved-out object gave {short(v)} / {err!r}")
        elif err is not None:
            raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)}")
        else:
            scan(v, where)
        del v

    elif op == "repr":
        CTX.begin(t)
        s, err = call(lambda: repr(t))
        n_fired = len(CTX.fired)
        CTX.end()
        fail_if_bad_exc(err, where)
        if err is None:
            scan_repr(s, where)
        elif n_fired == 0 and not isinstance(err, tether.MovedError):
            raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)}")

    elif op == "pickle" or op == "copy":
        deep = op == "copy" and step[2]
        if op == "pickle":
            f = lambda: pickle.loads(pickle.dumps(t))  # noqa: E731
        elif deep:
            f = lambda: copy.deepcopy(t)  # noqa: E731
        else:
            f = lambda: copy.copy(t)  # noqa: E731
        where += " deep" if deep else ""
        CTX.begin(t)
        t2, err = call(f)
        n_fired = len(CTX.fired)
        CTX.end()
        fail_if_bad_exc(err, where)
        if err is None and type(t2) is not cls:
            raise AssertionError(f"{where}: gave {short(t2)}")
        if n_fired == 0 and tr.model is not None and id(t) not in CTX.mutated_ids():
            plain = all(
                e[0] in ("none", "eq")
                or (e[0] == "child" and e[2] is Leaf and (k != "object" or e[1] not in CTX.moved))
                or (e[0] == "is" and type(e[1]) in (int, tuple, type(None)))
                for (_, k), e in zip(fields, tr.model)
            )
            if err is not None and plain:
                raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)}")
            if err is None:
                for (name, kind), e in zip(fields, tr.model):
                    got, orig = getattr(t2, name), getattr(t, name)
                    if e[0] == "child":
                        if op == "copy" and not deep:
                            if got is not orig:
                                raise AssertionError(f"{where}: copy.copy did not share .{name}")
                        elif got is orig:
                            raise AssertionError(f"{where}: .{name} shared with the original")
                        elif type(got) is Leaf and got.val != orig.val:
                            raise AssertionError(f"{where}: .{name}.val {got.val!r} != {orig.val!r}")
                    elif e[0] in ("none", "eq"):
                        check_expect(got, e, f"{where} .{name}")
                    elif e[0] == "is" and type(e[1]) in (int, tuple):
                        if type(got) is not type(e[1]) or got != e[1]:
                            raise AssertionError(f"{where}: .{name} = {short(got)}")
        elif err is None and tr.model is None and n_fired == 0:
            raise AssertionError(f"{where}: copied a moved-out object")
        if err is None:
            tr2 = run.add_target(t2, None, "copy")
            if tr2 is not None:
                snapshot(tr2, where)
        t2 = None

    elif op == "construct" or op == "new_init":
        cls = run.cls(step[1])
        fields = FIELDS[cls]
        mode = "construct" if op == "construct" else step[3]
        kw = step[3] if op == "construct" else mode in ("init_kw", "setstate")
        T_tr = run.target(step[4]) if op == "construct" else None
        T = T_tr.obj if T_tr is not None else None
        where += f" {cls.__name__} {[k for _, k in fields]} {mode}{' kw' if kw else ''}"
        mats = arg_mats(run, cls, step[2], "construct" if op == "construct" else "op", T, kw)
        o = None
        if op == "new_init":
            o = cls.__new__(cls)
        before = tether.stats()["native_objects"]
        state = None
        if mode == "setstate":
            state = {n: m.value for (n, _), m in zip(fields, mats) if not m.omit}
        CTX.begin(o if o is not None else T, state)
        if op == "construct":
            res, err = call(build(cls, mats, kw))
        elif mode == "init":
            args = [m.value for m in mats]
            res, err = call(lambda: o.__init__(*args))
            args = None
        elif mode == "init_kw":
            d = {n: m.value for (n, _), m in zip(fields, mats) if not m.omit}
            res, err = call(lambda: o.__init__(**d))
            d = None
        else:
            res, err = call(lambda: o.__setstate__(state))
        n_fired = len(CTX.fired)
        natives_checked = tether.stats()["native_objects"] if err is not None else None
        state = None
        for m in mats:
            m.value = None
        CTX.end()
        obj = res if op == "construct" else o
        res = None
        o = None
        check_outcome(err, mats, n_fired, where)
        check_tokens(mats, err is None, where)
        if err is not None and n_fired == 0 and natives_checked != before:
            raise AssertionError(
                f"{where}: failed but the native object count went {before} -> {natives_checked}"
            )
        mutated = CTX.mutated_ids()
        if err is None:
            if op == "new_init" and id(obj) in mutated:
                tr2 = run.add_target(obj, None, "n")
                if tr2 is not None:
                    snapshot(tr2, where)
            else:
                for (name, kind), m in zip(fields, mats):
                    if m.expect is not None:
                        check_expect(getattr(obj, name), m.expect, f"{where} .{name}")
                tr2 = run.add_target(obj, None, "n")
                if tr2 is not None:
                    snapshot(tr2, where)
        elif op == "new_init" and obj is not None:
            if id(obj) not in mutated:
                try:
                    getattr(obj, fields[0][0])
                except tether.MovedError:
                    pass
                else:
                    raise AssertionError(f"{where}: failed but left the object initialized")
            else:
                tr2 = run.add_target(obj, None, "n")
                if tr2 is not None:
                    snapshot(tr2, where)
        obj = None
        T = None

    elif op == "init":
        mode = step[3]
        where += f" {mode}"
        mats = arg_mats(run, cls, step[2], "op", None, mode != "init")
        fdict = None
        if mode == "init":
            args = [m.value for m in mats]
            f = lambda: t.__init__(*args)  # noqa: E731
        elif mode == "init_kw":
            fdict = {n: m.value for (n, _), m in zip(fields, mats) if not m.omit}
            f = lambda: t.__init__(**fdict)  # noqa: E731
        else:
            fdict = {n: m.value for (n, _), m in zip(fields, mats) if not m.omit}
            f = lambda: t.__setstate__(fdict)  # noqa: E731
        CTX.begin(t, fdict if mode == "setstate" else None)
        _, err = call(f)
        n_fired = len(CTX.fired)
        f = args = fdict = None
        for m in mats:
            m.value = None
        CTX.end()
        fail_if_bad_exc(err, where)
        if tr.model is not None and id(t) not in CTX.mutated_ids():
            own = tuple(e for m in mats for e in (m.exc or ()) + m.may_fail)
            if n_fired == 0 and not isinstance(err, (TypeError,) + own):
                raise AssertionError(f"{where}: on an initialized object gave {err!r}, expected TypeError")
            if err is None:
                snapshot(tr, where)
            skip.add(id(t))
        elif tr.model is None:
            snapshot(tr, where)
            skip.add(id(t))
        check_tokens(mats, err is None, where)

    elif op == "move":
        CTX.begin(t)

        def mv():
            tok = tether.move(t)
            note_moved(t)
            if step[2] == "keep":
                CTX.kept.append(tok)
            elif step[2] == "discard":
                testing.discard(tok)

        _, err = call(mv)
        CTX.end()
        fail_if_bad_exc(err, where)
        if tr.model is None:
            if not isinstance(err, tether.MovedError):
                raise AssertionError(f"{where}: moving a moved-out object gave {err!r}")
        elif err is not None:
            raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)}")
        tr.model = None  # (re-read after the step if something hostile acted on it)

    elif op == "drop":
        victim = run.target(step[2])
        run.targets.remove(tr)
        tr.obj = None
        v = victim.obj if victim is not tr else None
        where += f" (victim {victim.name if v is not None else None})"
        CTX.begin(v)
        del t
        gc.collect(0)
        CTX.end()
        v = None

    elif op == "drop_child":
        tnames = [n for n, k in fields if k in TETHER_KINDS]
        if not tnames or tr.model is None:
            return
        name = tnames[step[2] % len(tnames)]
        c = getattr(t, name)
        if c is None:
            return
        watch(c, step[3], f"child {tr.name}.{name}")
        CTX.begin(t)
        del c  # the wrapper dies (parks) with the callback running inside tp_dealloc
        CTX.end()

    elif op == "watch":
        watch(t, step[2], tr.name)

    elif op == "eq":
        other = run.target(step[2])
        u = other.obj
        where += f" == {other.name}"
        CTX.begin(t)
        r, err = call(lambda: t == u)
        n_fired = len(CTX.fired)
        CTX.end()
        fail_if_bad_exc(err, where)
        if n_fired == 0:
            if cls not in EQ or type(u) is not cls:
                if err is not None or r is not (t is u):
                    raise AssertionError(f"{where}: gave {r!r} / {err!r}, expected identity ({t is u})")
            elif err is None and type(r) is not bool:
                raise AssertionError(f"{where}: gave {short(r)}")
            elif err is not None and not isinstance(err, tether.MovedError):
                raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)}")
        u = r = None

    elif op == "hash":
        CTX.begin(t)
        h, err = call(lambda: hash(t))
        n_fired = len(CTX.fired)
        CTX.end()
        fail_if_bad_exc(err, where)
        if n_fired == 0:
            if cls not in EQ:
                if err is not None or h != hash(t):
                    raise AssertionError(f"{where}: identity hash gave {h!r} / {err!r}")
            elif not frozen:
                if not isinstance(err, TypeError):
                    raise AssertionError(f"{where}: eq=True without frozen must be unhashable, gave {h!r} / {err!r}")
            elif err is not None and not isinstance(err, (tether.MovedError, TypeError)):
                raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)}")

    elif op == "asdict":
        if not HAS_ASDICT:
            return
        CTX.begin(t)
        d, err = call(lambda: tether.asdict(t))
        n_fired = len(CTX.fired)
        CTX.end()
        fail_if_bad_exc(err, where)
        if err is None:
            scan_repr(repr(list(d.keys())) + " ".join(repr(v) for v in d.values() if type(v) in (int, float, str, bytes)), where)
        if n_fired == 0 and tr.model is not None and id(t) not in CTX.mutated_ids():
            if err is None:
                for (name, kind), e in zip(fields, tr.model):
                    if e[0] in ("none", "eq"):
                        check_expect(d[name], e, f"{where}[{name!r}]")
            elif not isinstance(err, ValueError):  # ValueError: a cycle
                plain = all(e[0] in ("none", "eq") or (e[0] == "child" and e[2] is Leaf) for e in tr.model)
                if plain:
                    raise AssertionError(f"{where}: raised {type(err).__name__}: {safe_str(err)}")
        d = None

    elif op == "replace":
        if not HAS_REPLACE:
            return
        fi = step[2] % len(fields)
        name, kind = fields[fi]
        where += f" {name}={step[3]!r}"
        m = materialize(kind, step[3], cls, "op")
        if m.omit:
            m = materialize(kind, ("valid", 4), cls, "op")
        CTX.begin(t)
        t2, err = call(lambda: tether.replace(t, **{name: m.value}))
        n_fired = len(CTX.fired)
        m.value = None
        CTX.end()
        fail_if_bad_exc(err, where)
        if n_fired == 0 and id(t) not in CTX.mutated_ids():
            if tr.model is None:
                if err is None:
                    raise AssertionError(f"{where}: replaced a moved-out object")
            else:
                check_outcome(err, [m], 0, where)
                if err is None:
                    if type(t2) is not cls:
                        raise AssertionError(f"{where}: gave {short(t2)}")
                    if m.expect is not None:
                        check_expect(getattr(t2, name), m.expect, f"{where} .{name}")
                    for (n2, k2), e in zip(fields, tr.model):
                        if n2 != name and e[0] in ("none", "eq", "child"):
                            check_expect(getattr(t2, n2), e, f"{where} .{n2} (unchanged)")
        check_tokens([m], err is None, where)
        if err is None:
            tr2 = run.add_target(t2, None, "r")
            if tr2 is not None:
                snapshot(tr2, where)
        t2 = None

    elif op == "gc":
        v = run.target(step[1])
        CTX.begin(v.obj if v is not None else None)
        gc.collect()
        CTX.end()
        v = None

    else:
        raise AssertionError(op)

    t = None
    finish_step(run, where, skip)


def finish_step(run, where, skip=()):
    if CTX.errors:
        raise AssertionError(f"{where}: inside hostile code: " + "; ".join(CTX.errors))
    bad = [u for u in CTX.unraisable if "SystemError" in u or "tether internal error" in u or "Panic" in u]
    if bad:
        raise AssertionError(f"{where}: unraisable: {bad} (a Rust panic or internal error)")
    mutated = CTX.mutated_ids()
    for tr in list(run.targets):
        if id(tr.obj) in mutated:
            snapshot(tr, f"{where} (after hostile actions on {tr.name})")
            skip = set(skip) | {id(tr.obj)}
    run.check_all(skip)


def make_objects(run, specs, prefix, mode):
    for ci, vspecs in specs:
        cls = run.cls(ci)
        mats = arg_mats(run, cls, vspecs, mode, None, False)
        obj, err = call(build(cls, mats, False))
        if err is not None:
            raise AssertionError(f"building {prefix} {cls.__name__} {FIELDS[cls]} raised {err!r}")
        for (name, _), m in zip(FIELDS[cls], mats):
            if m.expect is not None:
                check_expect(getattr(obj, name), m.expect, f"new {prefix} .{name}")
        tr = Tracked(obj, None, run.name(prefix))
        snapshot(tr, f"new {prefix}")
        (run.bystanders if prefix == "b" else run.targets).append(tr)
        obj = mats = None


def execute(plan):
    run = Run(plan)  # classes first: they live for the process
    gc.collect()  # what a previous example left behind
    base = tether.stats()
    CTX.reset()
    CTX.run = run
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: CTX.unraisable.append(f"{u.exc_type.__name__}: {safe_str(u.exc_value)}")
    if _TRACE is not None:
        _TRACE.seek(0)
        _TRACE.truncate()
    log(f"example: {plan!r}")
    failure = None
    try:
        run.pool = [(Leaf(901 + k), 901 + k) for k in range(3)]
        make_objects(run, plan.bystanders, "b", "bystander")
        make_objects(run, plan.targets, "t", "initial")
        finish_step(run, "setup")
        for i, step in enumerate(plan.steps):
            run_step(run, i, step)
    except AssertionError as e:
        # Re-raised below without the traceback: its frames hold the example's objects, which
        # must go now (the leak check of the next example; and a build that crashes when tether
        # objects holding Python objects outlive the interpreter would turn a failure into one).
        failure = str(e)
        del e
    finally:
        note("\n".join(CTX.trace[-60:]))
        CTX.active = False
        run.clear()
        CTX.reset()
        sys.unraisablehook = old_hook
    if failure is not None:
        raise categorize(failure)(failure)
    # Only increases count: objects a previous failing example left in a traceback may go now.
    keys = ("native_objects", "live_wrappers", "parked_wrappers")
    after = tether.stats()
    if any(after[k] > base[k] for k in keys):
        gc.collect()  # only exception tracebacks make cycles here
        after = tether.stats()
    leaks = {k: (base[k], after[k]) for k in keys if after[k] > base[k]}
    if leaks:
        raise Leak(f"leak after dropping everything: {{key: (before, after)}} = {leaks}")


# ---------------------------------------------------------------------------------------------
# Strategies

seeds = st.integers(0, 60)
idx = st.integers(0, 15)


def weighted(*pairs):
    """A choice among strategies with integer weights: (weight, strategy), ... (one_of would treat
    a repeated strategy as one branch)."""
    return st.sampled_from([s for w, s in pairs for _ in range(w)]).flatmap(lambda s: s)


_simple_atoms = weighted(
    (5, st.tuples(st.just("move"), st.sampled_from(("drop_churn", "drop_churn", "drop", "keep")))),
    (2, st.tuples(st.sampled_from(("churn", "read", "repr", "pickle", "copy", "deepcopy", "gc",
                                   "drop_refs", "resurrect", "eq", "hash", "asdict")))),
    (3, st.tuples(st.just("mutate_state"), seeds)),
    (1, st.tuples(st.just("reclass"), seeds)),
    (1, st.tuples(st.just("move_child"), idx)),
    (2, st.tuples(st.sampled_from(("init", "init_kw", "setstate")), seeds)),
)


def evil_specs(atoms):
    return st.builds(
        EvilSpec,
        atoms=st.lists(atoms, min_size=1, max_size=3).map(tuple),
        raise_kind=st.sampled_from((None, None, "value", "type")),
        limit=st.sampled_from((1, 2, 2, 3)),
    )


_shallow_values = st.one_of(
    st.tuples(st.just("valid"), seeds),
    st.tuples(st.just("bad"), seeds),
    st.tuples(st.sampled_from(("token", "bad_token")), seeds),
    st.tuples(st.just("evil"), evil_specs(_simple_atoms)),
)
atoms = weighted((4, _simple_atoms), (1, st.tuples(st.just("set"), idx, _shallow_values)))
evil = evil_specs(atoms)
evil_values = st.tuples(st.just("evil"), evil)

values = weighted(
    (3, st.tuples(st.just("valid"), seeds)),
    (1, st.tuples(st.just("bad"), seeds)),
    (1, st.tuples(st.sampled_from(("token", "token", "bad_token", "moved", "consumed")), seeds)),
    (1, st.tuples(st.just("share"), seeds)),
    (4, evil_values),
    (1, st.tuples(st.sampled_from(("default", "target")))),
    (1, st.tuples(st.just("child"), seeds)),
)
value_lists = st.lists(values, min_size=5, max_size=5).map(tuple)  # cut to the class's fields

# float and object fields are where Python code runs inside tether (__float__ of an int subclass;
# __repr__, __del__, __reduce_ex__ of held objects), so they come up more often
class_kinds = st.sampled_from(KINDS + ("float", "opt_float", "object", "object", "leaf"))
class_specs = st.builds(
    ClassSpec,
    kinds=st.lists(class_kinds, min_size=1, max_size=5).map(tuple),
    ndefaults=st.integers(0, 2),
    frozen=st.sampled_from((False, False, False, False, True)),
    eq=st.sampled_from((False, False, True)),
    del_spec=st.one_of(st.none(), st.none(), st.none(), evil_specs(_simple_atoms)),
)

init_modes = st.sampled_from(("init", "init_kw", "setstate", "setstate"))
steps = weighted(
    (2, st.tuples(st.just("set"), idx, idx, values)),
    (4, st.tuples(st.just("set"), idx, idx, evil_values)),
    (1, st.tuples(st.just("get"), idx, idx)),
    (3, st.tuples(st.just("repr"), idx)),
    (1, st.tuples(st.just("pickle"), idx)),
    (1, st.tuples(st.just("copy"), idx, st.booleans())),
    (2, st.tuples(st.just("construct"), idx, value_lists, st.booleans(), idx)),
    (3, st.tuples(st.just("new_init"), idx, value_lists, init_modes)),
    (1, st.tuples(st.just("init"), idx, value_lists, init_modes)),
    (1, st.tuples(st.just("move"), idx, st.sampled_from(("keep", "drop", "discard")))),
    (1, st.tuples(st.just("drop"), idx, idx)),
    (1, st.tuples(st.just("drop_child"), idx, idx, evil)),
    (1, st.tuples(st.just("watch"), idx, evil)),
    (1, st.tuples(st.just("gc"), idx)),
    (2, st.tuples(st.just("eq"), idx, idx)),
    (1, st.tuples(st.just("hash"), idx)),
    (1, st.tuples(st.just("asdict"), idx)),
    (2, st.tuples(st.just("replace"), idx, idx, values)),
)

plans = st.builds(
    Plan,
    classes=st.lists(class_specs, min_size=1, max_size=3).map(tuple),
    bystanders=st.lists(st.tuples(idx, value_lists), max_size=2).map(tuple),
    targets=st.lists(st.tuples(idx, value_lists), min_size=1, max_size=3).map(tuple),
    steps=st.integers(1, 20).flatmap(lambda n: st.lists(steps, min_size=n, max_size=n)).map(tuple),
)


# ---------------------------------------------------------------------------------------------
# The tests


@pytest.fixture
def frozen_gc():
    """Moves everything alive before the fuzz (pytest's and hypothesis' own objects) out of the
    collector's sight for its duration: the fuzz collects often, and only its own objects matter."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.skipif(SUBPROCESS, reason="TETHER_FUZZ_SUBPROCESS=1: runs in a child process instead")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    report_multiple_bugs=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=list(HealthCheck),
)
@given(plan=plans)
def test_reentrancy_fuzz(frozen_gc, plan):
    execute(plan)


@pytest.mark.skipif(not SUBPROCESS, reason="set TETHER_FUZZ_SUBPROCESS=1 to run the fuzz in a child process")
def test_reentrancy_fuzz_subprocess(tmp_path):
    trace = tmp_path / "trace.txt"
    env = dict(os.environ, TETHER_FUZZ_SUBPROCESS="0", TETHER_FUZZ_TRACE=str(trace))
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [sys.executable, "-m", "pytest", f"{os.path.abspath(__file__)}::test_reentrancy_fuzz",
           "-x", "-q", "-p", "no:cacheprovider"]
    timeout = int(os.environ.get("TETHER_FUZZ_TIMEOUT", "3600"))
    proc = subprocess.run(cmd, cwd=here, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0:
        return
    rc = proc.returncode
    if rc < 0:
        how = f"the child crashed: killed by {signal.Signals(-rc).name}"
    elif rc == 1:
        how = "a test failure in the child (exit code 1)"
    else:
        how = f"the child crashed or could not run: exit code {rc}"
    last = trace.read_text(errors="replace").splitlines()[-80:] if trace.exists() else []
    pytest.fail(
        f"the fuzz in a child process failed: {how}\n--- stdout (tail) ---\n{proc.stdout[-6000:]}\n"
        f"--- stderr (tail) ---\n{proc.stderr[-6000:]}\n"
        "--- the example that was running when it ended (trace) ---\n" + "\n".join(last),
        pytrace=False,
    )
