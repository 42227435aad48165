"""A tour of tether in a few screens: identity, a measured comparison, memory.

Run ``python -m tether.demo`` (``make demo`` builds the extension first).
"""

from __future__ import annotations

import gc
import sys
import textwrap
import time
from typing import Optional

import tether
from tether import bench, testing


class Inner(tether.Object):
    val: int


class Outer(tether.Object):
    x: Inner
    name: str = "o"
    note: Optional[Inner] = None


def rule(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)))


def show(label: str, value) -> None:
    print(f"  {label:68} {value}")


def identity() -> None:
    rule("1. Identity: the seed's Before / After")
    a = Outer(Inner(1))
    tether.set_tying(False)
    show("tying off (a fresh wrapper per access):  a.x is a.x", a.x is a.x)
    tether.set_tying(True)
    show("tying on (tether):                       a.x is a.x", a.x is a.x)

    first = id(a.x)  # the wrapper dies right away: its memory is parked, not freed
    others = [Inner(i) for i in range(64)]  # 64 other live wrappers of the same size
    show("id(a.x) after drop, 64 other wrappers, refetch: unchanged", id(a.x) == first)
    del others

    x = Inner(5)
    show("a native function returns the canonical wrapper: echo(x) is x", testing.echo(x) is x)
    show("fresh return policy gives a new wrapper: echo_fresh(x) is x", testing.echo_fresh(x) is x)

    o = Outer(Inner(9))
    y = o.x
    testing.discard(tether.move(y))
    try:
        y.val
        outcome = "no error (unexpected)"
    except tether.MovedError as e:
        outcome = f"MovedError: {str(e)[:40]}..."
    show("use after tether.move(y) raises", outcome)
    show("and the field still yields a canonical wrapper: o.x is o.x", o.x is o.x)


def comparison(quick: bool) -> None:
    rule("2. Measured now, on this machine: python -m tether.bench" + (" --quick" if quick else ""))
    print(textwrap.indent(bench.format_table(bench.run(quick=quick)), "  "))
    print("  'tying off' is the same tether objects handing out a fresh wrapper per access,")
    print("  what bindings without tying do; __slots__ is pure Python, the floor.")


def memory() -> None:
    rule("3. Memory, from the allocator's and the wrapper pool's counters")
    gc.collect()
    before = tether.stats()
    objs = [Outer(Inner(i)) for i in range(10_000)]
    for o in objs:
        o.x  # wrap and drop: every Inner wrapper ends up parked
    s = tether.stats()
    live = s["native_objects"] - before["native_objects"]
    show("native objects created (10k Outer + 10k Inner)", live)
    header = s["header_bytes"] - before["header_bytes"]
    show(f"header bytes for them ({header // max(live, 1)} B each, from the counters)", header)
    show("live wrappers (the 10k Outer objects held in a list)", s["live_wrappers"] - before["live_wrappers"])
    show("parked wrappers (Inner wrappers: memory kept, not Python objects)", s["parked_wrappers"] - before["parked_wrappers"])
    show("wrapper size (bytes, one slab size class for every class)", s["wrapper_size"])
    show("slab pool: slabs / reserved bytes", f"{s['pool']['slabs']} / {s['pool']['bytes_held']}")
    del objs, o
    gc.collect()
    after = tether.stats()
    show("after dropping them: native objects back to baseline", after["native_objects"] == before["native_objects"])
    show("after dropping them: parked wrappers back to baseline", after["parked_wrappers"] == before["parked_wrappers"])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quick = "--full" not in argv
    t0 = time.perf_counter()
    print("tether: native objects and their Python wrappers as one identity")
    identity()
    comparison(quick)
    memory()
    rule("More")
    print("  README.md, docs/guide.md (how to use it), docs/design.md (how it works),")
    print("  docs/benchmarks.md (all measured tables and the commands that made them).")
    print(f"\n(demo ran in {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
