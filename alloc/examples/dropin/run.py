#!/usr/bin/env python3
"""Runs the drop-in workload binaries alternating (A B C D E, A B C D E, ...) and prints the
medians and the ratios to raw mimalloc and to System (glibc).

usage: run.py [--rounds N] [--dir DIR] NAME...   (NAME: dropin_mimalloc, dropin_system, ...,
       or a path to another build of the workload)

Each binary prints `dropin LABEL wall_ms=.. cpu_ms=.. ...` (see workload.rs). The headline
figure is CPU time (user + sys of the process, from getrusage): on a shared 2-core machine it
moves less than wall time does. The load average is printed before each round; rerun when it is
high (another build running)."""
import argparse
import os
import statistics
import subprocess
import sys

FIELDS = ["cpu_ms", "wall_ms", "trees_ms", "json_ms", "map_ms", "maxrss_kb", "minflt"]


def run_one(path):
    out = subprocess.run([path], check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("dropin "))
    parts = line.split()
    rec = {"label": parts[1]}
    for kv in parts[2:]:
        k, v = kv.split("=")
        rec[k] = v if k == "checksum" else float(v)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", default="target/release/examples")
    ap.add_argument("names", nargs="+")
    args = ap.parse_args()
    # A name with a slash is a path (e.g. a binary built from another checkout).
    paths = [n if "/" in n else os.path.join(args.dir, n) for n in args.names]
    for p in paths:
        if not os.access(p, os.X_OK):
            sys.exit(f"run.py: {p} is missing (build the examples in release mode first)")
    results = {n: [] for n in args.names}
    loads = []
    for r in range(args.rounds):
        load = os.getloadavg()
        loads.append(load[0])
        print(f"round {r + 1}/{args.rounds}: load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        for n, p in zip(args.names, paths):
            rec = run_one(p)
            results[n].append(rec)
            print(f"  {rec['label']:<9} cpu {rec['cpu_ms']:7.1f} ms  wall {rec['wall_ms']:7.1f} ms  "
                  f"(trees {rec['trees_ms']:6.1f}, json {rec['json_ms']:6.1f}, map {rec['map_ms']:6.1f}; "
                  f"{rec['minflt']:.0f} faults)", flush=True)
    sums = {rec["checksum"] for recs in results.values() for rec in recs}
    if len(sums) != 1:
        sys.exit(f"run.py: checksums differ between allocators: {sums}")

    med = {n: {f: statistics.median(rec[f] for rec in recs) for f in FIELDS} for n, recs in results.items()}
    label = {n: results[n][0]["label"] for n in args.names}
    base = {k: next((n for n in args.names if label[n] == k), None) for k in ("mimalloc", "system")}
    print()
    print(f"medians of {args.rounds} alternating rounds (load average at round start: "
          f"min {min(loads):.2f}, max {max(loads):.2f})")
    head = (f"{'allocator':<10}{'cpu ms':>9}{'wall ms':>9}{'trees':>8}{'json':>8}{'map':>8}"
            f"{'maxrss MB':>10}{'minflt k':>9}")
    for k in ("mimalloc", "system"):
        if base[k]:
            head += f"{'cpu/' + k[:4]:>10}{'wall/' + k[:4]:>10}"
    print(head)
    for n in args.names:
        m = med[n]
        row = (f"{label[n]:<10}{m['cpu_ms']:9.1f}{m['wall_ms']:9.1f}{m['trees_ms']:8.1f}"
               f"{m['json_ms']:8.1f}{m['map_ms']:8.1f}{m['maxrss_kb'] / 1024:10.1f}"
               f"{m['minflt'] / 1000:9.1f}")
        for k in ("mimalloc", "system"):
            if base[k]:
                b = med[base[k]]
                row += f"{m['cpu_ms'] / b['cpu_ms']:10.3f}{m['wall_ms'] / b['wall_ms']:10.3f}"
        print(row)
    print(f"checksum {sums.pop()} (identical for every allocator)")


if __name__ == "__main__":
    main()
