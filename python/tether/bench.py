"""Measured comparison of tether field access against a pure-Python ``__slots__`` class.

Run ``python -m tether.bench`` (add ``--json out.json`` to save the figures, ``--quick`` for a
shorter run). Every figure is the median of several repeats of a timed loop, in nanoseconds per
operation including the loop's own cost; ratios are against the ``__slots__`` baseline measured
in the same run, so they compare like with like on whatever machine runs them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import timeit
from typing import Optional

import tether


class Inner(tether.Object):
    val: int


class Outer(tether.Object):
    x: Inner
    note: Optional[Inner] = None


class SlotsInner:
    __slots__ = ("val",)

    def __init__(self, val):
        self.val = val


class SlotsOuter:
    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x


def _time(stmt: str, env: dict, number: int, repeat: int) -> float:
    timer = timeit.Timer(stmt, globals=env)
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e9


def run(quick: bool = False) -> dict:
    """Runs every case; returns ``{"cases": [...], "machine": {...}}``."""
    number = 200_000 if quick else 1_000_000
    repeat = 5 if quick else 9
    a = Outer(Inner(1))
    held = a.x  # noqa: F841 - keeps a wrapper alive for the "held" case
    b = Outer(Inner(2))  # nobody holds b.x: every access revives and parks
    i = Inner(3)
    s = SlotsOuter(SlotsInner(1))
    si = SlotsInner(3)
    env = {"a": a, "b": b, "i": i, "s": s, "si": si, "Inner": Inner, "SlotsInner": SlotsInner}

    def case(name, stmt, baseline_stmt, target=None, tying=True):
        tether.set_tying(tying)
        try:
            t = _time(stmt, env, number, repeat)
        finally:
            tether.set_tying(True)
        base = _time(baseline_stmt, env, number, repeat)
        return {
            "case": name,
            "tether_ns": round(t, 2),
            "slots_ns": round(base, 2),
            "ratio": round(t / base, 2),
            "target": target,
        }

    cases = [
        case("a.x, wrapper held elsewhere", "a.x", "s.x", 2.0),
        case("a.x, no wrapper alive (revive)", "b.x", "s.x", 2.5),
        case("a.x, tying off (fresh wrapper)", "b.x", "s.x", None, tying=False),
        case("int field read", "i.val", "si.val", 2.0),
        case("int field write", "i.val = 5", "si.val = 5", None),
        case("Inner(1) construct + drop", "Inner(1)", "SlotsInner(1)", 2.0),
        case("Inner(1) construct + drop, tying off", "Inner(1)", "SlotsInner(1)", None, tying=False),
    ]
    machine = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }
    return {"cases": cases, "machine": machine, "number": number, "repeat": repeat}


def _sweep_ns(objs, attr_of) -> float:
    """ns per access over all of `objs`, median of 3 sweeps."""
    import time

    runs = []
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for o in objs:
            attr_of(o)
        runs.append((time.perf_counter_ns() - t0) / len(objs))
    return statistics.median(runs)


def scaling(counts=(1_000, 10_000, 100_000, 1_000_000)) -> list:
    """How the cost of a field read grows with the number of live objects: tied (revive path:
    no wrapper held, so every read revives a parked wrapper), tying off (a fresh wrapper per
    read), and ``__slots__``; and with 2 threads sharing the work (under the GIL)."""
    import threading

    rows = []
    for n in counts:
        outers = [Outer(Inner(i)) for i in range(n)]
        for o in outers:
            o.x  # every Inner wrapper parked
        slots = [SlotsOuter(SlotsInner(i)) for i in range(n)]
        get_x = lambda o: o.x  # noqa: E731
        tied = _sweep_ns(outers, get_x)
        tether.set_tying(False)
        try:
            fresh = _sweep_ns(outers, get_x)
        finally:
            tether.set_tying(True)
        base = _sweep_ns(slots, get_x)

        def two_threads():
            import time

            half = n // 2
            parts = [outers[:half], outers[half:]]
            t0 = time.perf_counter_ns()
            ts = [threading.Thread(target=lambda p=p: [o.x for o in p]) for p in parts]
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
        del outers, slots
    return rows


def format_scaling(rows: list) -> str:
    """A plain-text table of :func:`scaling`'s rows."""
    out = [
        f"{'live objects':>12} {'tied ns':>9} {'off ns':>9} {'slots ns':>9} {'tied 2 thr ns':>14}",
        "-" * 57,
    ]
    for r in rows:
        out.append(
            f"{r['objects']:>12} {r['tied_revive_ns']:>9.1f} {r['tying_off_ns']:>9.1f} "
            f"{r['slots_ns']:>9.1f} {r['tied_2_threads_ns']:>14.1f}"
        )
    return "\n".join(out)


def format_table(result: dict) -> str:
    """A plain-text table of the figures."""
    rows = [
        f"{'case':40} {'tether ns':>10} {'__slots__ ns':>13} {'ratio':>7} {'target':>7}",
        "-" * 81,
    ]
    for c in result["cases"]:
        target = f"<={c['target']}x" if c["target"] else ""
        rows.append(
            f"{c['case']:40} {c['tether_ns']:>10.1f} {c['slots_ns']:>13.1f} "
            f"{c['ratio']:>6.2f}x {target:>7}"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--scaling", action="store_true", help="also sweep 1e3..1e6 live objects")
    args = ap.parse_args(argv)
    result = run(quick=args.quick)
    print(format_table(result))
    if args.scaling:
        result["scaling"] = scaling()
        print("\nField read cost by number of live objects (ns per read, one sweep over all):")
        print(format_scaling(result["scaling"]))
    m = result["machine"]
    print(f"\n(median of {result['repeat']} x {result['number']} ops; {m['implementation']} "
          f"{m['python']} on {m['machine']}; ratios vs __slots__ measured in this run)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
