"""Where the bytes come from, from a dhat profile, without a browser.

    python3 profiles/top.py profiles/out/churn.json [--by tb|tbk|gb|eb] [-n 12] [--frames 3]

Groups dhat's program points by their allocation site (the first frames outside the allocation
machinery: std, core, allocator_api2, dhat, HeaderAlloc), so recursion depths and inlining
variants of one site add up, and prints the top sites by the chosen measure:
``tb``/``tbk`` total bytes/blocks allocated, ``gb`` bytes live at the peak (t-gmax), ``eb``
bytes still live at the end. dh_view.html shows the same data as a tree (see README.md).
"""

import argparse
import json
import re
from collections import defaultdict

MACHINERY = re.compile(
    r"^<?(alloc::|core::|std::|allocator_api2|dhat::|<?T as alloc|\[root\]|"
    r"<?tether_alloc::header_alloc|<?u8 as |<?\[u8\]>|<?\[T\]>|<?str as )"
)
FRAME = re.compile(r"^(?:0x[0-9a-f]+: )?(.*?)(?: \((?:.*/)?([^/]+:\d+):\d+\))?$")
MEASURES = ("tb", "tbk", "gb", "gbk", "eb", "ebk")


def site(ftbl: list, fs: list, frames: int) -> str:
    names = []
    for i in fs:
        m = FRAME.match(ftbl[i])
        sym, loc = (m.group(1), m.group(2)) if m else (ftbl[i], None)
        if MACHINERY.match(sym):
            continue
        sym = re.sub(r"\{\{closure\}\}", "{closure}", sym)
        names.append(f"{sym} ({loc})" if loc else sym)
        if len(names) == frames:
            break
    return " < ".join(names) or "[allocation machinery only]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--by", choices=MEASURES, default="tb")
    ap.add_argument("-n", type=int, default=12)
    ap.add_argument("--frames", type=int, default=3)
    args = ap.parse_args()
    with open(args.profile) as f:
        d = json.load(f)
    sums = defaultdict(lambda: dict.fromkeys(MEASURES, 0))
    for pp in d["pps"]:
        s = sums[site(d["ftbl"], pp["fs"], args.frames)]
        for k in MEASURES:
            s[k] += pp.get(k, 0)
    total = sum(s[args.by] for s in sums.values()) or 1
    print(f"{d['cmd']}: {len(d['pps'])} program points, {len(sums)} sites; top by {args.by}")
    print(f"{'tbk':>10} {'tb':>12} {'gb':>11} {'eb':>8} {'share':>6}  site")
    for name, s in sorted(sums.items(), key=lambda kv: -kv[1][args.by])[: args.n]:
        share = 100.0 * s[args.by] / total
        print(f"{s['tbk']:>10} {s['tb']:>12} {s['gb']:>11} {s['eb']:>8} {share:>5.1f}%  {name}")


if __name__ == "__main__":
    main()
