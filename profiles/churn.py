"""Python-driven churn under dhat: wrap, park, revive and free tether objects.

Needs the dhat build of the extension (cargo feature ``dhat-heap``), which ``make profile``
installs into ``.venv-profile`` before running this script::

    .venv-profile/bin/python profiles/churn.py [N]

dhat sees every Rust allocation of the extension: the runtime's objects (each with its 32-byte
header), the wrapper pool's slabs (wrapper memory, live or parked), strings and bytes held in
fields. CPython's own memory (lists, dicts, ints) is not seen. Each phase below is measured as
the change in dhat's live blocks and bytes; the profile is written to
``profiles/out/churn.json`` (open it with dhat's viewer, ``dh_view.html``).
"""

import gc
import sys
from pathlib import Path

import tether
import tether.testing
from tether import _native

OUT = Path(__file__).resolve().parent / "out" / "churn.json"
TREE_DEPTH = 16  # make_tree(16): 2**17 - 1 = 131,071 nodes
HEADER = 32


def reading() -> dict:
    gc.collect()
    d = _native._dhat_stats()
    t = tether.stats()
    return {
        "blocks": d["curr_blocks"],
        "bytes": d["curr_bytes"],
        "allocs": d["total_blocks"],
        "objects": t["native_objects"],
        "parked": t["parked_wrappers"],
        "pool": t["pool"]["bytes_held"],
    }


ROWS = []


def record(label: str, count: int, before: dict, after: dict) -> None:
    ROWS.append((label, count, {k: after[k] - before[k] for k in before}))


def table() -> str:
    head = (
        f"{'phase':<44} {'count':>7} {'d blocks':>9} {'d bytes':>11} {'bytes/obj':>9}"
        f" {'header%':>7} {'allocs':>8} {'d native':>8} {'d parked':>8} {'d pool B':>9}"
    )
    lines = [head]
    for label, count, d in ROWS:
        per = d["bytes"] / count if count else 0.0
        share = (
            f"{100.0 * HEADER * d['objects'] / d['bytes']:6.1f}%"
            if d["bytes"] > 0 and d["objects"] > 0
            else "      -"
        )
        lines.append(
            f"{label:<44} {count:>7} {d['blocks']:>9} {d['bytes']:>11} {per:>9.1f}"
            f" {share:>7} {d['allocs']:>8} {d['objects']:>8} {d['parked']:>8} {d['pool']:>9}"
        )
    return "\n".join(lines)


def main(argv: list) -> int:
    if not hasattr(_native, "_dhat_start"):
        print("churn.py needs the dhat build of the extension: run `make profile`", file=sys.stderr)
        return 2
    n = int(argv[1]) if len(argv) > 1 else 100_000
    OUT.parent.mkdir(parents=True, exist_ok=True)
    _native._dhat_start(str(OUT))

    # Class declarations register record types (kept for the process's life, by design).
    class Inner(tether.Object):
        val: int

    class Outer(tether.Object):
        x: Inner
        name: str = "o"

    class Tagged(tether.Object):
        label: str
        raw: bytes

    base = reading()

    b = reading()
    objs = [Outer(Inner(i)) for i in range(n)]
    a = reading()
    record(f"create {n} Outer(Inner(i)) (pairs)", n, b, a)

    b = a
    for o in objs:
        o.x  # revive the parked Inner wrapper, drop it: parked again
    del o
    a = reading()
    record("o.x for each, dropped (revive + park)", n, b, a)

    b = a
    held = [o.x for o in objs]
    a = reading()
    record("hold [o.x for o in objs] (revive)", n, b, a)

    b = a
    same = all(h is o.x for h, o in zip(held, objs))
    del held
    a = reading()
    record("drop the held wrappers (park)", n, b, a)

    b = a
    del objs[::2]
    a = reading()
    record("free every other pair (parked Inner dies)", n // 2, b, a)

    b = a
    tether.trim()
    a = reading()
    record("tether.trim() (fully free slabs only)", n // 2, b, a)

    b = a
    del objs
    tether.trim()
    a = reading()
    record("free the rest, trim", n - n // 2, b, a)

    b = a
    tags = [Tagged(f"tag-{i:012}", bytes(64)) for i in range(n)]
    a = reading()
    record("create Tagged(str 16 B, bytes 64 B)", n, b, a)
    b = a
    del tags
    tether.trim()
    a = reading()
    record("free them, trim", n, b, a)

    nodes = 2 ** (TREE_DEPTH + 1) - 1
    b = a
    tree = tether.testing.make_tree(TREE_DEPTH)
    a = reading()
    record(f"make_tree({TREE_DEPTH}) natively", nodes, b, a)

    b = a
    seen, stack = 0, [tree]
    while stack:
        node = stack.pop()
        seen += 1
        for c in (node.left, node.right):
            if c is not None:
                stack.append(c)
    del node, c
    a = reading()
    record("walk it from Python (wrap + park each)", nodes, b, a)

    b = a
    del tree
    tether.trim()
    a = reading()
    record("drop the tree, trim", nodes, b, a)

    end = reading()
    final = _native._dhat_stop()

    print(f"churn: dhat build of tether, N = {n}; wrapper size {tether.stats()['wrapper_size']} B")
    print(table())
    print(f"identity held across park/revive: {same}; tree walk saw {seen} nodes")
    print(
        f"dhat: total {final['total_blocks']} blocks / {final['total_bytes']} bytes allocated;"
        f" peak (t-gmax) {final['max_blocks']} blocks / {final['max_bytes']} bytes"
    )
    print(
        f"end vs baseline: {end['blocks'] - base['blocks']} blocks / {end['bytes'] - base['bytes']}"
        f" bytes, {end['objects'] - base['objects']} native objects,"
        f" {end['parked'] - base['parked']} parked wrappers"
    )
    print(f"profile: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
