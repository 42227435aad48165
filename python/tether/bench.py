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
    args = ap.parse_args(argv)
    result = run(quick=args.quick)
    print(format_table(result))
    m = result["machine"]
    print(f"\n(median of {result['repeat']} x {result['number']} ops; {m['implementation']} "
          f"{m['python']} on {m['machine']}; ratios vs __slots__ measured in this run)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
