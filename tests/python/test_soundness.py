"""Regression tests for soundness bugs: use-after-free through re-entrant Python code, re-entrant
initialization, crashes at exit and when freeing deep structures, moves lost on rejected
assignments, unfreezing a frozen class from a class body, and module globals never finalized.

Every scenario that could crash or corrupt the interpreter on a broken build runs in a fresh
interpreter (``run_script``) and is checked by its exit code and what it printed.
"""

import json
import os
import sys

import pytest

import tether

from conftest import SUBPROCESS_TIMEOUT, describe, run_script
from models import Holder, Inner, Node, Outer, Pair

TIMEOUT = SUBPROCESS_TIMEOUT


def assert_clean_exit(proc, marker="ok"):
    assert proc.returncode == 0, describe(proc)
    assert marker in proc.stdout.splitlines(), describe(proc)


def result_of(proc):
    """The JSON object the script printed on its `RESULT ` line (after a clean exit)."""
    assert_clean_exit(proc)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise AssertionError("no RESULT line\n" + describe(proc))


# --- 1. use-after-free in a field write ----------------------------------------------------------


def test_field_write_whose_conversion_moves_the_object_out_raises_moved_error():
    """Failure 1: `descr_set` borrowed the record without a count while converting the value; a
    conversion (`__float__` of an int subclass) that moves the object out and drops the token
    freed the record, and the write landed in freed memory (a bystander created meanwhile, which
    reused that memory, had its field changed). The write must raise MovedError instead."""
    proc = run_script(
        """
        import gc, json, tether
        from tether import testing

        class R(tether.Object):
            a: float = 0.0
            b: float = 0.0

        bystanders = []

        class Evil(int):
            def __float__(self):
                testing.discard(tether.move(r))  # the last reference: the record is freed
                bystanders.extend(R(1.0, 2.0) for _ in range(64))  # reuse its memory
                return 99.0

        r = R(3.0, 4.0)
        try:
            r.b = Evil(7)
            outcome = "no error"
        except tether.MovedError:
            outcome = "MovedError"
        except Exception as e:
            outcome = f"{type(e).__name__}: {e}"
        values = sorted({(x.a, x.b) for x in bystanders})
        try:
            r.b
            after = "readable"
        except tether.MovedError:
            after = "MovedError"
        del bystanders[:], r
        gc.collect()
        print("RESULT", json.dumps({"outcome": outcome, "values": values, "after": after}))
        print("ok")
        """
    )
    res = result_of(proc)
    assert res["values"] == [[1.0, 2.0]], f"a bystander's field was overwritten: {res}"
    assert res["outcome"] == "MovedError", res
    assert res["after"] == "MovedError", res


# --- 2. use-after-free in repr ---------------------------------------------------------------


def test_repr_survives_a_field_repr_that_moves_the_object_out():
    """Failure 2: `tp_repr` borrowed the record without a count and called `repr()` of each field
    value; a value whose `__repr__` moved the owner out (dropping the token) made the loop read
    the next field from freed memory. The repr must complete and show the values as they were."""
    proc = run_script(
        """
        import gc, json, tether
        from tether import testing

        class R(tether.Object):
            a: object = None
            b: object = None

        bystanders = []

        class Evil:
            def __repr__(self):
                testing.discard(tether.move(r))  # frees r's record mid-repr
                bystanders.extend(R("x", "bystander") for _ in range(64))
                return "EVIL"

        r = R(Evil(), "original")
        s = repr(r)
        del bystanders[:], r
        gc.collect()
        print("RESULT", json.dumps({"repr": s}))
        print("ok")
        """
    )
    res = result_of(proc)
    assert isinstance(res["repr"], str)
    assert "b='original'" in res["repr"], res
    assert "bystander" not in res["repr"], res
    assert "a=EVIL" in res["repr"], res


# --- 3. re-entrant __init__ / __setstate__ ---------------------------------------------------


def test_reentrant_init_and_setstate_are_rejected_and_do_not_leak():
    """Failure 3: the "already initialized" check ran before argument conversion; a conversion
    that initialized the same wrapper first (`obj.__init__` / `obj.__setstate__` from `__float__`)
    was then overwritten by the outer call, leaking one native object whose tie header named the
    wrapper. The outer call must raise TypeError, the inner values stay, nothing leaks."""
    proc = run_script(
        """
        import gc, json, tether

        class R(tether.Object):
            a: float
            b: int = 0

        def initialize(o, how, a, b):
            if how == "init":
                o.__init__(a, b)
            else:
                o.__setstate__({"a": a, "b": b})

        gc.collect()
        base = tether.stats()["native_objects"]
        results = {}
        for outer in ("init", "setstate"):
            for inner in ("init", "setstate"):
                obj = R.__new__(R)

                class Evil(int):
                    def __float__(self):
                        initialize(obj, inner, 1.5, 2)
                        return 9.5

                try:
                    initialize(obj, outer, Evil(3), 4)
                    err = "no error"
                except TypeError:
                    err = "TypeError"
                except Exception as e:
                    err = f"{type(e).__name__}: {e}"
                try:
                    values = [obj.a, obj.b]
                except Exception as e:
                    values = f"{type(e).__name__}: {e}"
                results[f"{outer}/{inner}"] = [err, values]
                del obj, Evil
        gc.collect()
        leaked = tether.stats()["native_objects"] - base
        print("RESULT", json.dumps({"results": results, "leaked": leaked}))
        print("ok")
        """
    )
    res = result_of(proc)
    for case, (err, values) in res["results"].items():
        assert err == "TypeError", f"{case}: outer call gave {err} ({res})"
        assert values == [1.5, 2], f"{case}: the inner call's values were replaced ({res})"
    assert res["leaked"] == 0, f"native objects leaked: {res}"


# --- 4. abort at interpreter exit ------------------------------------------------------------


def test_object_field_alive_at_exit_does_not_abort():
    """Failure 4: an object with an `object` field alive at interpreter exit made the process
    abort (exit code 134: the Python handle was released after finalization)."""
    proc = run_script(
        """
        import tether

        class R(tether.Object):
            x: object

        r = R([1, 2, 3])
        nested = R(R({"k": "v"}))
        print("ok")
        """
    )
    assert_clean_exit(proc)


# --- 5. stack overflow freeing deep structures -----------------------------------------------

DEEP_CHAIN = """
import gc, sys, threading, tether
from typing import Optional

class Node(tether.Object):
    v: int
    next: Optional["Node"] = None

class Holder(tether.Object):
    x: object = None

kind, n, in_thread = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "thread"
gc.collect()
base = tether.stats()["native_objects"]
done = []

def work():
    head = None
    if kind == "typed":
        for i in range(n):
            head = Node(i, head)
    else:
        for i in range(n):
            head = Holder(head)
    assert tether.stats()["native_objects"] - base == n
    del head  # frees the whole chain
    done.append(True)

if in_thread:
    threading.stack_size(256 * 1024)
    t = threading.Thread(target=work)
    t.start()
    t.join()
else:
    work()
gc.collect()
left = tether.stats()["native_objects"] - base
assert done == [True], done
assert left == 0, f"{left} native objects left"
print("ok")
"""


def test_freeing_a_million_deep_typed_chain_on_the_main_thread():
    """Failure 5: dropping a deep `Optional[Node]` linked list recursed once per node and
    overflowed the stack (200,000 nodes segfaulted); a 10^6-deep chain must free cleanly."""
    assert_clean_exit(run_script(DEEP_CHAIN, "typed", 10**6, "main"))


def test_freeing_a_deep_typed_chain_in_a_thread_with_a_small_stack():
    """Failure 5: in a thread with a 256 KiB stack, freeing a 20,000-node chain crashed; a
    10^5-deep chain must build and free there."""
    assert_clean_exit(run_script(DEEP_CHAIN, "typed", 10**5, "thread"))


def test_freeing_a_deep_chain_through_object_fields():
    """Failure 5: a chain through `object` fields (`Holder(Holder(...))`) crashed when freed at
    about 7,000 levels; a 10^5-deep one must free cleanly."""
    assert_clean_exit(run_script(DEEP_CHAIN, "object", 10**5, "main"))


# --- 6. rejected assignments must not destroy moved objects ----------------------------------


def test_rejected_move_keeps_the_object_in_the_token():
    """Failure 6: a move token passed to a field of the wrong type raised TypeError but was
    consumed and its native object destroyed; the message named `Moved` instead of `Inner`.
    After the TypeError the token must still hold its object, and the message must name the
    object's real type."""
    tok = tether.move(Inner(5))
    with pytest.raises(TypeError) as e:
        Node(1, tok)
    assert "Inner" in str(e.value) and "Moved" not in str(e.value), str(e.value)
    # the token still holds Inner(5): a correct place accepts it, values intact
    o = Outer(Inner(0))
    o.x = tok
    assert o.x.val == 5
    with pytest.raises(tether.MovedError):
        o.x = tok  # consumed by the successful store
    assert o.x.val == 5


def test_rejected_move_token_can_be_used_again():
    """Failure 6: after `h.a = tether.move(b)` is rejected (wrong type), the token must still be
    usable in a correct place, with the object's values (and its children) intact."""
    b = Node(3, Node(4))
    tok = tether.move(b)
    p = Pair()
    with pytest.raises(TypeError) as e:
        p.a = tok
    assert "Node" in str(e.value) and "Moved" not in str(e.value), str(e.value)
    assert p.a is None
    head = Node(2, tok)  # Node.next is Optional[Node]: the right type
    assert head.next.value == 3 and head.next.next.value == 4
    with pytest.raises(tether.MovedError):
        b.value


def test_move_into_object_field_stores_the_native_object():
    """Failure 6: moving into an `object` field stored the token itself (`<tether.Moved
    (pending)>`), killing the object. The field must hold the native object (its wrapper)."""
    i = Inner(6)
    h = Holder(tether.move(i))
    assert isinstance(h.payload, Inner), repr(h.payload)
    assert h.payload.val == 6
    assert h.payload is h.payload
    h.payload = tether.move(Inner(7))
    assert isinstance(h.payload, Inner) and h.payload.val == 7, repr(h.payload)
    with pytest.raises(tether.MovedError):
        i.val


def test_move_token_is_consumed_only_once_by_successful_stores():
    """Failure 6: a token can be consumed only once: after a successful store (typed or
    `object` field), reusing it raises MovedError."""
    tok = tether.move(Inner(8))
    h = Holder(tok)
    with pytest.raises(tether.MovedError):
        Holder(tok)
    with pytest.raises(tether.MovedError):
        h.payload = tok
    assert isinstance(h.payload, Inner) and h.payload.val == 8, repr(h.payload)

    tok = tether.move(Inner(9))
    o = Outer(tok)
    with pytest.raises(tether.MovedError):
        Outer(tok)
    assert o.x.val == 9


# --- 7. a class body must not unfreeze a frozen class ----------------------------------------


def test_class_body_cannot_replace_the_class_of_a_frozen_type():
    """Failure 7: `__tether_native_type__ = idx` in any class body replaced the registered class
    of type index `idx`: objects of a frozen class then came back as the new class, with writable
    fields. Such a class body must be rejected or have no effect on the frozen class."""
    proc = run_script(
        """
        import json, tether
        from tether import testing

        class P(tether.Object, frozen=True):
            zz_probe_field: int

        class Box(tether.Object):
            x: P

        p = P(1)
        box = Box(p)

        # Find P's type index: a native-type class body takes the fields of that type.
        hit = None
        for idx in range(256):
            try:
                class Evil(tether.Object):
                    __tether_native_type__ = idx
            except Exception:
                continue
            if "zz_probe_field" in Evil.__dict__:
                hit = idx
                break

        def try_assign(o):
            try:
                o.zz_probe_field = 5
                return "assigned"
            except tether.FrozenInstanceError:
                return "FrozenInstanceError"
            except Exception as e:
                return f"{type(e).__name__}: {e}"

        fresh = testing.echo_fresh(p)  # a new wrapper, of the registered class
        out = {"hit": hit, "fresh": type(fresh).__name__, "fresh_assign": try_assign(fresh)}
        del fresh, p
        revived = box.x  # p's parked wrapper memory revived (or a new wrapper)
        out["revived"] = type(revived).__name__
        out["revived_assign"] = try_assign(revived)
        out["value"] = box.x.zz_probe_field
        print("RESULT", json.dumps(out))
        print("ok")
        """
    )
    res = result_of(proc)
    assert res["fresh"] == "P" and res["revived"] == "P", res
    assert res["fresh_assign"] == "FrozenInstanceError", res
    assert res["revived_assign"] == "FrozenInstanceError", res
    assert res["value"] == 1, res


# --- 8. classes must not be immortal ---------------------------------------------------------


def test_module_globals_are_finalized_at_exit_with_a_tether_class_method(tmp_path):
    """Failure 8: a module declaring a tether class with a method never had its globals finalized
    at exit (the immortal class's function held the module's globals): an open file at module
    level was never flushed (data lost) and `__del__` of module globals never ran."""
    path = tmp_path / "out.txt"
    proc = run_script(
        """
        import os, sys, tether

        f = open(sys.argv[1], "w")
        f.write("payload-123")  # not closed: flushed when the file object is finalized

        class C(tether.Object):
            x: int

            def m(self):
                return self.x

        class Finalized:
            def __del__(self, _write=os.write):
                _write(1, b"DEL-MARKER\\n")

        marker = Finalized()
        print("ok", flush=True)
        """,
        path,
    )
    assert_clean_exit(proc)
    assert path.read_text() == "payload-123", "the module-level file was never flushed"
    assert "DEL-MARKER" in proc.stdout, describe(proc)


def test_unused_classes_are_collected_and_classes_with_live_objects_are_kept():
    """Failure 8: tether classes were immortal. A class with no instances and no Python
    references must be collected (its weak reference dies), while a class whose native objects
    are still alive stays usable through them (right class, right values)."""
    proc = run_script(
        """
        import gc, json, weakref, tether

        class Holder(tether.Object):
            x: tether.Object

        def make_obj():
            class K(tether.Object):
                val: int

                def get(self):
                    return self.val

            return K(7)

        h = Holder(make_obj())  # the only references to K are K's native objects
        gc.collect()
        first = h.x
        kept = [type(first).__name__, first.val, first.get()]
        del first
        gc.collect()
        kept += [type(h.x).__name__, h.x.val, h.x.get()]

        def never_instantiated():
            class Lonely(tether.Object):
                val: int

                def get(self):
                    return self.val

            return weakref.ref(Lonely)

        def all_instances_gone():
            class Gone(tether.Object):
                val: int

                def get(self):
                    return self.val

            g = Gone(1)
            assert g.get() == 1
            del g
            return weakref.ref(Gone)

        lonely = never_instantiated()
        gone = all_instances_gone()
        gc.collect()
        out = {
            "kept": kept,
            "lonely_alive": lonely() is not None,
            "gone_alive": gone() is not None,
        }
        del h
        gc.collect()
        print("RESULT", json.dumps(out))
        print("ok")
        """
    )
    res = result_of(proc)
    assert res["kept"] == ["K", 7, 7, "K", 7, 7], res
    assert not res["lonely_alive"], f"a class without instances or references stayed alive: {res}"
    assert not res["gone_alive"], f"a class whose instances all died stayed alive: {res}"
