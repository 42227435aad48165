"""tether against a pure-Python ``__slots__`` class: time per operation and memory per object.

Run ``python -m tether.bench`` (``--quick`` for a shorter run, ``--json FILE`` to save the
figures, ``--scaling`` to add the sweep over 10^3..10^6 live pairs, ``--threads`` to add 1 and
2 threads doing field reads, writes and construct + drop, ``--containers`` for element access,
iteration and appends of ``list[Node]`` fields). Nothing is asserted: the
targets (issue 11) are printed beside the figures with a pass/miss mark.

Three variants of one node class with two fields, ``v`` (an int) and ``child`` (an optional
node), so ``Node(1)`` is a leaf and ``Node(1, Node(2))`` a pair:

* ``__slots__``: :class:`SlotsNode`, pure Python, the floor;
* tether: :class:`Node` (a ``tether.Object``), tying on: one canonical wrapper per native object;
  a wrapper that dies while its object lives on is parked and revived on the next access;
* tying off: the same :class:`Node` with ``tether.set_tying(False)``, a fresh wrapper per access
  (what bindings without tying do).

Time: each case is one statement run as ``for _ in range(n): <stmt>`` inside a function compiled
for it, which takes its objects as arguments (locals, like real code, and like
``benches/callgrind_py.py``). A repeat times one call of that function with the CPU time of this
thread (``time.thread_time_ns``: time spent descheduled by neighbours on a shared machine is
left out) with the garbage collector off (as ``timeit`` does). The three variants' repeats are
interleaved, so a slow spell on the machine hits all of them; each figure is the median over the
repeats, in ns per operation. Every figure includes the loop's own cost, reported once as the
first row (an empty ``pass`` loop).

Memory: each (variant, shape) is measured in a fresh interpreter (``sys.executable -c``), with
N = 10^6 objects. It preallocates a list of N slots (so the list's 8 bytes per element are
outside the figure), reads the RSS (``/proc/self/statm``) after ``gc.collect()``, fills the list
with ``Node(i)`` leaves or ``Node(i, Node(i))`` pairs (only the outer node held by the list;
tether parks the inner node's wrapper, by design), and reads the RSS again after
``gc.collect()``: the growth over N is the bytes per live object with its wrapper. For
``__slots__`` that includes the int object of each distinct ``i`` (tether stores ints
natively). It then drops the objects and reads again after ``gc.collect()`` (no
``tether.trim()``), and once more after ``tether.trim()``; the table shows the share of the
pairs' growth still held at each point.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

import tether


class Node(tether.Object):
    v: int
    child: Optional["Node"] = None


class SlotsNode:
    __slots__ = ("v", "child")

    def __init__(self, v, child=None):
        self.v = v
        self.child = child


VARIANTS = ("slots", "tether", "off")
"""``__slots__``, tether (tying on), tether with tying off."""

VARIANT_NAMES = {"slots": "__slots__", "tether": "tether", "off": "tying off"}


class Case(NamedTuple):
    key: str
    label: str
    stmt: str
    # ((variant the tether figure is divided by, the highest ratio that meets the target), ...)
    targets: tuple = ()


LOOP = Case("loop", "loop alone: for _ in range(n): pass", "pass")

CASES = (
    Case(
        "revive",
        "a.child, no wrapper of the child alive",
        "a.child",
        (("slots", 2.0), ("off", 0.6)),
    ),
    Case("held", "a.child, the child's wrapper held elsewhere", "a.child", (("slots", 1.7),)),
    Case("read", "a.v (int field read)", "a.v", (("slots", 1.7),)),
    Case("write", "a.v = 5 (int field write)", "a.v = 5"),
    Case("construct", "Node(1) construct + drop", "Node(1)", (("slots", 0.6),)),
)

MEMORY_OBJECTS = 1_000_000  # also with --quick: fewer objects give visibly fewer bytes per object
TARGET_LEAF_BYTES = 80
TARGET_PAIR_BYTES = 160
TARGET_PAIRS_GROWTH = 1.7  # tether's RSS growth for N pairs, as a ratio to __slots__ growth
TARGET_LEFT_AFTER_DROP = 0.10  # "back down": at most this share of the growth still held


def prepare(case: Case, variant: str) -> Callable[[int], None]:
    """A function that runs ``case.stmt`` n times for ``variant``: the statement's loop is
    compiled into a function taking ``a`` (a pair, ``a.child`` a leaf) and ``Node`` (the class)
    as arguments; for "held" the child's wrapper is kept alive here, for "revive" nobody holds
    it; for "off" tying is switched off around the loop."""
    cls: Any = SlotsNode if variant == "slots" else Node
    a = cls(1, cls(2))  # the child's wrapper dies with the argument tuple: parked in tether
    held = a.child if case.key == "held" else None
    env: dict = {}
    exec(f"def loop(n, a, Node):\n    for _ in range(n):\n        {case.stmt}\n", env)
    loop = env["loop"]
    tying = variant != "off"

    def run(n: int) -> None:
        tether.set_tying(tying)
        try:
            loop(n, a, cls)
        finally:
            tether.set_tying(True)

    run.held = held  # type: ignore[attr-defined]  # alive as long as `run` is
    return run


@contextlib.contextmanager
def _gc_off():
    """The garbage collector off for the block (as ``timeit`` does), restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _time_ns(run: Callable[[int], None], n: int) -> int:
    t0 = time.thread_time_ns()
    run(n)
    return time.thread_time_ns() - t0


def time_cases(number: int, repeat: int) -> tuple[float, dict]:
    """The loop's own ns per iteration, and ``{case key: {variant: ns per op}}``: the median over
    ``repeat`` interleaved repeats of ``number`` operations."""
    with _gc_off():
        runs = {(LOOP.key, "slots"): prepare(LOOP, "slots")}
        runs.update({(c.key, v): prepare(c, v) for c in CASES for v in VARIANTS})
        for run in runs.values():
            run(1_000)  # warm-up: the adaptive interpreter specializes the loop's instructions
        samples: dict = {k: [] for k in runs}
        for _ in range(repeat):
            for k, run in runs.items():
                samples[k].append(_time_ns(run, number))
    ns = {k: statistics.median(s) / number for k, s in samples.items()}
    loop_ns = ns.pop((LOOP.key, "slots"))
    by_case: dict = {}
    for (key, variant), v in ns.items():
        by_case.setdefault(key, {})[variant] = v
    return loop_ns, by_case


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(variant: str, shape: str, n: int) -> dict:
    """Run in a fresh interpreter by :func:`measure_memory`: RSS growth in bytes for ``n`` live
    objects of ``shape`` ("leaf" or "pair"), and what is left of it after dropping them (then,
    for tether, after ``tether.trim()``)."""
    cls: Any = SlotsNode if variant == "slots" else Node
    tether.set_tying(variant != "off")
    objs: list = [None] * n
    gc.collect()
    base = _rss_bytes()
    if shape == "leaf":
        for i in range(n):
            objs[i] = cls(i)
    else:
        for i in range(n):
            objs[i] = cls(i, cls(i))
    gc.collect()
    out = {"live": _rss_bytes() - base}
    for i in range(n):
        objs[i] = None
    gc.collect()
    out["after_drop"] = _rss_bytes() - base
    if variant != "slots":
        tether.trim()
        out["after_trim"] = _rss_bytes() - base
    return out


_CHILD = (
    "import json, sys\n"
    "from tether.bench import rss_child\n"
    "print(json.dumps(rss_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))\n"
)


def measure_memory(n: int) -> dict:
    """``{shape: {variant: rss_child(...)}}``, each from a fresh interpreter."""
    out: dict = {}
    for shape in ("leaf", "pair"):
        for variant in VARIANTS:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, variant, shape, str(n)],
                capture_output=True,
                text=True,
                check=True,
            )
            out.setdefault(shape, {})[variant] = json.loads(proc.stdout)
    return out


def _target(value: float, limit: float, unit: str, against: Optional[str] = None) -> dict:
    """One target: ``value`` (tether's figure, or its ratio to the variant ``against``) meets it
    if it is at most ``limit``; ``unit`` is "x" (a ratio), "B" (bytes) or "%" (a share)."""
    return {"against": against, "value": round(value, 3), "limit": limit, "unit": unit,
            "met": value <= limit}


def _time_rows(by_case: dict) -> list:
    rows = []
    for c in CASES:
        ns = by_case[c.key]
        targets = [
            _target(ns["tether"] / ns[v], limit, "x", VARIANT_NAMES[v]) for v, limit in c.targets
        ]
        rows.append(
            {
                "case": c.label,
                "key": c.key,
                "stmt": c.stmt,
                "slots_ns": round(ns["slots"], 2),
                "tether_ns": round(ns["tether"], 2),
                "tying_off_ns": round(ns["off"], 2),
                "ratio": round(ns["tether"] / ns["slots"], 2),
                "tying_off_ratio": round(ns["off"] / ns["slots"], 2),
                "tether_vs_tying_off": round(ns["tether"] / ns["off"], 2),
                "target": next((limit for v, limit in c.targets if v == "slots"), None),
                "targets": targets,
            }
        )
    return rows


def _memory_rows(raw: dict, n: int) -> list:
    def growth(shape, divisor, unit, label, target_bytes=None, target_ratio=None):
        live = {v: raw[shape][v]["live"] / divisor for v in VARIANTS}
        targets = []
        if target_bytes is not None:
            targets.append(_target(live["tether"], target_bytes, "B"))
        if target_ratio is not None:
            targets.append(_target(live["tether"] / live["slots"], target_ratio, "x", "__slots__"))
        return {
            "case": label,
            "unit": unit,
            "slots": round(live["slots"], 1),
            "tether": round(live["tether"], 1),
            "tying_off": round(live["off"], 1),
            "ratio": round(live["tether"] / live["slots"], 2),
            "tying_off_ratio": round(live["off"] / live["slots"], 2),
            "targets": targets,
        }

    def left(key, label, target=None):
        pair = raw["pair"]
        share = {v: pair[v][key] / pair[v]["live"] for v in VARIANTS if key in pair[v]}
        return {
            "case": label,
            "unit": "%",
            "slots": round(100 * share["slots"], 1) if "slots" in share else None,
            "tether": round(100 * share["tether"], 1),
            "tying_off": round(100 * share["off"], 1),
            "targets": [] if target is None else [_target(share["tether"], target, "%")],
        }

    return [
        growth("leaf", n, "B", "bytes per live leaf Node(i)", TARGET_LEAF_BYTES),
        growth("pair", n, "B", "bytes per live pair Node(i, Node(i))", TARGET_PAIR_BYTES),
        growth("pair", 1e6, "MB", f"MB of growth for {n:,} pairs", None, TARGET_PAIRS_GROWTH),
        left("after_drop", "  % left after drop + gc.collect(), no trim", TARGET_LEFT_AFTER_DROP),
        left("after_trim", "  % left after tether.trim()"),
    ]


def machine() -> dict:
    """The interpreter and machine the figures come from."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "tether": tether.__version__,
        "free_threaded": tether._native.FREE_THREADED,
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run(quick: bool = False) -> dict:
    """Runs every case and (where ``/proc/self/statm`` exists) the RSS measurements; returns the
    figures as ``{"cases": [...], "loop_ns": ..., "memory": {...}, "machine": {...}, ...}``."""
    number, repeat = (100_000, 7) if quick else (200_000, 15)
    loop_ns, by_case = time_cases(number, repeat)
    result = {
        "machine": machine(),
        "timer": "time.thread_time_ns",
        "number": number,
        "repeat": repeat,
        "loop_ns": round(loop_ns, 2),
        "cases": _time_rows(by_case),
    }
    if os.path.exists("/proc/self/statm"):
        raw = measure_memory(MEMORY_OBJECTS)
        result["memory"] = {
            "objects": MEMORY_OBJECTS,
            "rss": raw,
            "rows": _memory_rows(raw, MEMORY_OBJECTS),
        }
    return result


def _marks(targets: list) -> str:
    out = []
    for t in targets:
        lim = t["limit"]
        limit = {"%": f"{100 * lim:.0f}%", "B": f"{lim} B"}.get(t["unit"], f"{lim}x")
        against = f" vs {t['against']}" if t["against"] not in (None, "__slots__") else ""
        out.append(f"<= {limit}{against} {'pass' if t['met'] else 'MISS'}")
    return ", ".join(out)


_WIDTHS = (44, 10, 9, 7, 11, 7, 7)  # label, __slots__, tether, ratio, tying off, ratio, on/off
_TARGETS = "target (tether)"


def _line(label: str, *figures: str, targets: str = "") -> str:
    row = f"{label:{_WIDTHS[0]}}" + "".join(f"{c:>{w}}" for c, w in zip(figures, _WIDTHS[1:]))
    return f"{row:{sum(_WIDTHS)}}  {targets}".rstrip()


def _num(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}"


def _ratio(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.2f}x"


def format_table(result: dict) -> str:
    """The figures as plain-text tables: time, then memory (if measured)."""
    m = result["machine"]
    load = " ".join(f"{x:.2f}" for x in m["load_average"])
    heads = ("__slots__", "tether", "ratio", "tying off", "ratio")
    rule = "-" * (sum(_WIDTHS) + 2 + len(_TARGETS))
    out = [
        f"{m['implementation']} {m['python']} on {m['machine']}, tether {m['tether']} "
        f"(load average {load})",
        "",
        _line("ns per operation", *heads, "on/off", targets=_TARGETS),
        rule,
        _line(LOOP.label, _num(result["loop_ns"])),
    ]
    for c in result["cases"]:
        figures = [_num(c["slots_ns"]), _num(c["tether_ns"]), _ratio(c["ratio"]),
                   _num(c["tying_off_ns"]), _ratio(c["tying_off_ratio"]),
                   _ratio(c["tether_vs_tying_off"])]
        out.append(_line(c["case"], *figures, targets=_marks(c["targets"])))
    mem = result.get("memory")
    if mem:
        title = f"memory (RSS), {mem['objects']:,} objects"
        out += ["", _line(title, *heads, targets=_TARGETS), rule]
        for r in mem["rows"]:
            figures = [_num(r["slots"]), _num(r["tether"]), _ratio(r.get("ratio")),
                       _num(r["tying_off"]), _ratio(r.get("tying_off_ratio"))]
            out.append(_line(r["case"], *figures, targets=_marks(r["targets"])))
    out += [
        "",
        f"Time: median of {result['repeat']} interleaved repeats of {result['number']:,} "
        "operations, CPU time of this thread, gc off; every",
        "figure includes the loop (first row). ratio: to __slots__; on/off: tether to tying off.",
    ]
    if mem:
        out.append("Memory: RSS growth after gc.collect(), a fresh interpreter per figure;")
        out.append("'left': the share of the pairs' growth still held.")
    out.append("Targets are informational (issue 11); MISS marks one not met in this run.")
    return "\n".join(out)


def _sweep_ns(objs, attr_of) -> float:
    """ns per access over all of `objs`, median of 3 sweeps."""
    runs = []
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for o in objs:
            attr_of(o)
        runs.append((time.perf_counter_ns() - t0) / len(objs))
    return statistics.median(runs)


def scaling(counts=(1_000, 10_000, 100_000, 1_000_000)) -> list:
    """How the cost of ``o.child`` grows with the number of live pairs: tied (revive path: no
    wrapper held, so every read revives a parked wrapper), tying off (a fresh wrapper per read),
    and ``__slots__``; and with 2 threads sharing the tied sweep (under the GIL). Wall-clock
    time, including the sweep's own loop and a call per read."""
    rows = []
    for n in counts:
        pairs = [Node(i, Node(i)) for i in range(n)]  # every child's wrapper parked
        slots = [SlotsNode(i, SlotsNode(i)) for i in range(n)]
        get_child = lambda o: o.child  # noqa: E731
        tied = _sweep_ns(pairs, get_child)
        tether.set_tying(False)
        try:
            fresh = _sweep_ns(pairs, get_child)
        finally:
            tether.set_tying(True)
        base = _sweep_ns(slots, get_child)

        def two_threads():
            half = n // 2
            parts = [pairs[:half], pairs[half:]]
            t0 = time.perf_counter_ns()
            ts = [threading.Thread(target=lambda p=p: [o.child for o in p]) for p in parts]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            return (time.perf_counter_ns() - t0) / n

        threaded = statistics.median(two_threads() for _ in range(3))
        rows.append(
            {
                "objects": n,
                "tied_revive_ns": round(tied, 1),
                "tying_off_ns": round(fresh, 1),
                "slots_ns": round(base, 1),
                "tied_2_threads_ns": round(threaded, 1),
            }
        )
        del pairs, slots
    return rows


def format_scaling(rows: list) -> str:
    """A plain-text table of :func:`scaling`'s rows."""
    out = [
        f"{'live pairs':>12} {'tied ns':>9} {'off ns':>9} {'slots ns':>9} {'tied 2 thr ns':>14}",
        "-" * 57,
    ]
    for r in rows:
        out.append(
            f"{r['objects']:>12} {r['tied_revive_ns']:>9.1f} {r['tying_off_ns']:>9.1f} "
            f"{r['slots_ns']:>9.1f} {r['tied_2_threads_ns']:>14.1f}"
        )
    return "\n".join(out)


class Parent(tether.Object):
    children: list[Node]


class SlotsParent:
    __slots__ = ("children",)

    def __init__(self, children):
        self.children = children


CONTAINER_CASES = (
    # (key, label, statement, per-statement element count)
    ("elem_held", "a.children[5], the element's wrapper held elsewhere", "a.children[5]", 1),
    ("elem_revive", "a.children[5], no wrapper of the element alive", "a.children[5]", 1),
    ("list_held", "kids[5], kids = a.children held in a local", "a[5]", 1),
    ("iterate", "for c in a.children (100 elements; per element)", "for c in a.children: pass", 100),
    ("append", "l.append(x) (a list of 10^6; per append)", None, 1),
)


def container_cases(number: int = 100_000, repeat: int = 9) -> list:
    """Element access and iteration of a ``list[Node]`` field against a ``__slots__`` parent
    holding a Python list of ``__slots__`` nodes, and appending 10^6 elements to a
    ``tether.List[Node]`` against a list. CPU time of this thread, gc off, median of
    ``repeat``; ns per element (the loop included)."""
    rows = []
    with _gc_off():
        for key, label, stmt, per in CONTAINER_CASES:
            figures = {}
            for variant in ("slots", "tether"):
                if key == "append":
                    x = SlotsNode(1) if variant == "slots" else Node(1)
                    n = 1_000_000

                    def run(n, x=x, variant=variant):
                        lst = [] if variant == "slots" else tether.List[Node]([])
                        append = lst.append
                        for _ in range(n):
                            append(x)

                    samples = [_time_ns(run, n) / n for _ in range(max(3, repeat // 3))]
                else:
                    if variant == "slots":
                        a: Any = SlotsParent([SlotsNode(i) for i in range(100)])
                    else:
                        a = Parent([Node(i) for i in range(100)])
                    held = a.children[5] if key in ("elem_held", "list_held") else None
                    if key == "list_held":
                        a = a.children
                    env: dict = {}
                    exec(f"def loop(n, a):\n    for _ in range(n):\n        {stmt}\n", env)
                    loop = env["loop"]
                    count = number // per
                    loop(1_000 // per + 1, a)  # warm-up
                    samples = [_time_ns(lambda n, loop=loop, a=a: loop(n, a), count) / (count * per) for _ in range(repeat)]
                    del held
                figures[variant] = statistics.median(samples)
            rows.append(
                {
                    "case": key,
                    "label": label,
                    "slots_ns": round(figures["slots"], 1),
                    "tether_ns": round(figures["tether"], 1),
                    "ratio": round(figures["tether"] / figures["slots"], 2),
                }
            )
    return rows


def format_container_cases(rows: list) -> str:
    """A plain-text table of :func:`container_cases`' rows."""
    out = [f"{'containers: ns per element':<56} {'__slots__':>9} {'tether':>8} {'ratio':>6}", "-" * 82]
    for r in rows:
        out.append(f"{r['label']:<56} {r['slots_ns']:>9.1f} {r['tether_ns']:>8.1f} {r['ratio']:>5.2f}x")
    return "\n".join(out)


THREAD_CASES = (
    ("read", "a.v", True),
    ("held", "a.child", True),
    ("revive", "a.child", True),
    ("write", "a.v = 5", False),
    ("construct", "Node(1)", False),
)
"""(case key, statement, whether the threads also run it on one shared object)."""


def _threaded_wall_ns(makers: list, number: int) -> float:
    """Wall-clock ns for ``len(makers)`` threads to run ``number`` operations each. Each thread
    first calls its maker for its loop (so the objects it works on are made on that thread, as
    data a thread owns would be), warms it up, then all are released together by a barrier."""
    barrier = threading.Barrier(len(makers) + 1)
    done: list = []

    def body(make):
        loop = make()
        loop(1_000)  # warm-up
        barrier.wait()
        loop(number)
        done.append(time.perf_counter_ns())

    ts = [threading.Thread(target=body, args=(m,)) for m in makers]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter_ns()
    for t in ts:
        t.join()
    return max(done) - t0


def thread_scaling(number: int = 300_000, repeat: int = 5, counts=(1, 2)) -> list:
    """Field reads, writes and construct + drop on 1 and 2 threads (the cores here), for
    ``__slots__`` and tether: each thread runs ``number`` operations on objects it made itself
    ("own"), and for reads also all threads on one object made by the main thread ("shared").
    The figure is wall-clock ns for the whole run divided by ``number`` (so perfect scaling keeps
    it flat as threads are added) and the speedup over one thread (threads x one-thread time /
    this time). Under a GIL the threads take turns; on a free-threaded build they run at once."""
    rows = []
    with _gc_off():
        for key, stmt, shared in THREAD_CASES:
            for variant in ("slots", "tether"):
                for sharing in ("own", "shared") if shared else ("own",):
                    cls: Any = SlotsNode if variant == "slots" else Node
                    env: dict = {}
                    exec(f"def loop(n, a, Node):\n    for _ in range(n):\n        {stmt}\n", env)
                    body = env["loop"]
                    one = cls(1, cls(2))

                    def make(a=None, body=body, cls=cls):
                        a = cls(1, cls(2)) if a is None else a
                        held = a.child if key == "held" else None
                        return lambda n, a=a, h=held: body(n, a, cls)

                    maker = (lambda: make(one)) if sharing == "shared" else make
                    by_threads = {}
                    for k in counts:
                        by_threads[k] = statistics.median(
                            _threaded_wall_ns([maker] * k, number) for _ in range(repeat)
                        ) / number
                    base = by_threads[counts[0]]
                    rows.append(
                        {
                            "case": key,
                            "variant": variant,
                            "objects": sharing,
                            **{f"ns_{k}_threads": round(v, 1) for k, v in by_threads.items()},
                            **{
                                f"speedup_{k}_threads": round(k * base / v, 2)
                                for k, v in by_threads.items()
                                if k != counts[0]
                            },
                        }
                    )
    return rows


def format_thread_scaling(rows: list) -> str:
    """A plain-text table of :func:`thread_scaling`'s rows."""
    out = [
        f"{'case':<10} {'variant':<9} {'objects':<7} {'1 thread ns':>12} {'2 threads ns':>13} {'speedup':>8}",
        "-" * 64,
    ]
    for r in rows:
        out.append(
            f"{r['case']:<10} {VARIANT_NAMES[r['variant']]:<9} {r['objects']:<7} "
            f"{r['ns_1_threads']:>12.1f} {r['ns_2_threads']:>13.1f} {r['speedup_2_threads']:>7.2f}x"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer operations and repeats")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--scaling", action="store_true", help="also sweep 1e3..1e6 live pairs")
    ap.add_argument(
        "--threads", action="store_true", help="also time 1 and 2 threads (free-threaded builds)"
    )
    ap.add_argument(
        "--containers", action="store_true", help="also time list[Node] fields and tether.List"
    )
    args = ap.parse_args(argv)
    result = run(quick=args.quick)
    print(format_table(result))
    if args.scaling:
        result["scaling"] = scaling()
        print("\no.child over N live pairs (ns per read, wall clock, one sweep over all):")
        print(format_scaling(result["scaling"]))
    if args.containers:
        result["containers"] = container_cases(number=30_000 if args.quick else 100_000)
        print()
        print(format_container_cases(result["containers"]))
    if args.threads:
        result["threads"] = thread_scaling(number=100_000 if args.quick else 300_000)
        gil = getattr(sys, "_is_gil_enabled", lambda: True)()
        print(f"\n1 and 2 threads (GIL {'on' if gil else 'off'}; wall-clock ns per operation):")
        print(format_thread_scaling(result["threads"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
