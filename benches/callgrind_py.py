"""Instructions per Python operation, counted by callgrind: repeatable whatever else the machine
is doing (wall-clock figures on a shared 2-vCPU machine are not).

The cases, the node class and the three variants are those of ``python -m tether.bench``
(``tether.bench.CASES``, ``Node`` / ``SlotsNode``, ``tether.bench.prepare``): ``__slots__``,
tether (tying on) and tether with tying off. Each (case, variant) runs its loop of N and of 2N
operations under ``valgrind --tool=callgrind``; the difference divided by N is the cost of one
operation including the loop's own, which is reported once as its own row. Usage (with the
extension built into the venv):

    .venv/bin/python benches/callgrind_py.py                    # the table
    .venv/bin/python benches/callgrind_py.py CASE VARIANT N     # one run (what valgrind executes)
"""

import re
import subprocess
import sys

from tether import bench

N = 100_000


def run_case(key: str, variant: str, n: int) -> None:
    case = {c.key: c for c in (bench.LOOP, *bench.CASES)}[key]
    bench.prepare(case, variant)(n)


def count(key: str, variant: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
        + [key, variant, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    m = re.search(r"Collected : (\d+)", out)
    if m is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{out}")
    return int(m.group(1))


def per_op(key: str, variant: str) -> float:
    return (count(key, variant, 2 * N) - count(key, variant, N)) / N


def main() -> int:
    print(
        f"{'instructions per operation':44} {'__slots__':>9} {'tether':>8} {'ratio':>6} "
        f"{'tying off':>10} {'ratio':>6} {'on/off':>6}"
    )
    print("-" * 95)
    print(f"{bench.LOOP.label:44} {per_op(bench.LOOP.key, 'slots'):>9.0f}")
    for case in bench.CASES:
        s, t, off = (per_op(case.key, v) for v in ("slots", "tether", "off"))
        print(
            f"{case.label:44} {s:>9.0f} {t:>8.0f} {t / s:>5.2f}x {off:>10.0f} {off / s:>5.2f}x "
            f"{t / off:>5.2f}x"
        )
    print(f"\n(callgrind instructions per operation incl. the loop; N={N} vs 2N;")
    print(" ratio: to __slots__; on/off: tether to tying off)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4:
        run_case(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
