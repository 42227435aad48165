"""Instructions per Python operation, counted by callgrind: repeatable whatever else the machine
is doing (wall-clock figures on a shared 2-vCPU machine are not).

Each case runs a loop of N and of 2N operations under ``valgrind --tool=callgrind``; the
difference divided by N is the cost of one operation including the loop's own (the same for
every case). Usage (with the extension built into the venv):

    .venv/bin/python benches/callgrind_py.py            # the table
    .venv/bin/python benches/callgrind_py.py CASE N     # one run (what valgrind executes)
"""

import re
import subprocess
import sys
from typing import Optional

N = 100_000

CASES = [
    # (name, tether case, __slots__ baseline case)
    ("a.x, wrapper held elsewhere", "held", "slots"),
    ("a.x, no wrapper alive (revive)", "revive", "slots"),
    ("a.x, tying off (fresh wrapper)", "fresh", "slots"),
    ("int field read", "int", "sint"),
    ("int field write", "intwrite", "sintwrite"),
    ("Inner(1) construct + drop", "construct", "sconstruct"),
]


def run_case(case: str, n: int) -> None:
    import tether

    class Inner(tether.Object):
        val: int

    class Outer(tether.Object):
        x: Inner
        note: Optional[Inner] = None

    class SI:
        __slots__ = ("val",)

        def __init__(self, v):
            self.val = v

    class SO:
        __slots__ = ("x",)

        def __init__(self, x):
            self.x = x

    a = Outer(Inner(1))
    held = a.x  # noqa: F841 - keeps a wrapper alive for "held"
    b = Outer(Inner(2))
    i, si, so = Inner(3), SI(3), SO(SI(1))
    if case == "fresh":
        tether.set_tying(False)
    # One statement per case, run in a loop inside a function (locals, like real code).
    stmt = {
        "held": "a.x",
        "revive": "b.x",
        "fresh": "b.x",
        "int": "i.val",
        "intwrite": "i.val = 5",
        "slots": "so.x",
        "sint": "si.val",
        "sintwrite": "si.val = 5",
        "construct": "Inner(1)",
        "sconstruct": "SI(1)",
    }[case]
    src = f"def loop(n, a, b, i, si, so, Inner, SI):\n    for _ in range(n):\n        {stmt}\n"
    env: dict = {}
    exec(src, env)
    env["loop"](n, a, b, i, si, so, Inner, SI)


def count(case: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, case, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def per_op(case: str) -> float:
    return (count(case, 2 * N) - count(case, N)) / N


def main() -> int:
    print(f"{'case':36} {'tether instr':>13} {'__slots__ instr':>16} {'ratio':>7}")
    print("-" * 75)
    for name, case, base in CASES:
        t, s = per_op(case), per_op(base)
        print(f"{name:36} {t:>13.0f} {s:>16.0f} {t / s:>6.2f}x")
    print(f"\n(callgrind instruction counts per operation incl. the loop; N={N} vs 2N)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3:
        run_case(sys.argv[1], int(sys.argv[2]))
    else:
        sys.exit(main())
