"""Draws docs/benchmarks.png from the figures `make bench` wrote.

Inputs: the Python benchmark's JSON (`python -m tether.bench --scaling --json FILE`) and,
where present, criterion's estimates under target/criterion. Usage:

    python benches/plot_bench.py target/bench/python.json docs/benchmarks.png
"""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def criterion_medians(root: pathlib.Path) -> dict:
    """{"group/bench": median ns} from criterion's new/estimates.json files."""
    out = {}
    for est in root.glob("**/new/estimates.json"):
        rel = est.parent.parent.relative_to(root)
        median = json.loads(est.read_text())["median"]["point_estimate"]
        out[str(rel)] = median
    return out


def main(src: str, dst: str) -> int:
    result = json.loads(pathlib.Path(src).read_text())
    crit = criterion_medians(pathlib.Path("target/criterion"))
    memory = result.get("memory")
    panels = 2 + bool(memory) + bool(crit)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5))
    axes = list(axes)

    ax = axes.pop(0)
    cases = result["cases"]
    y = range(len(cases))
    for dy, key, label, color in [
        (-0.2, "ratio", "tether", "#4c72b0"),
        (0.2, "tying_off_ratio", "tying off", "#8c8c8c"),
    ]:
        ax.barh([i + dy for i in y], [c[key] for c in cases], height=0.4, color=color, label=label)
    for i, c in enumerate(cases):
        if c["target"]:
            ax.plot([c["target"]] * 2, [i - 0.45, i + 0.45], color="#c44e52", lw=2)
    ax.set_yticks(list(y), [c["case"] for c in cases])
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_xlabel("time ratio to a slots class (same run); red: target")
    ax.set_title(f"Python: tether vs pure Python (loop alone: {result['loop_ns']:.1f} ns)")
    ax.legend()
    ax.invert_yaxis()

    ax = axes.pop(0)
    rows = result.get("scaling", [])
    if rows:
        n = [r["objects"] for r in rows]
        for key, label in [
            ("tied_revive_ns", "tied (revive)"),
            ("tying_off_ns", "tying off"),
            ("slots_ns", "slots class (pure Python)"),
            ("tied_2_threads_ns", "tied, 2 threads"),
        ]:
            ax.plot(n, [r[key] for r in rows], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("live pairs")
        ax.set_ylabel("ns per o.child read")
        ax.set_title("Scaling with object count")
        ax.legend()

    if memory:
        ax = axes.pop(0)
        per_object = [r for r in memory["rows"] if r["unit"] == "B"]
        x = range(len(per_object))
        for dx, key, label, color in [
            (-0.27, "slots", "slots class", "#55a868"),
            (0.0, "tether", "tether", "#4c72b0"),
            (0.27, "tying_off", "tying off", "#8c8c8c"),
        ]:
            ax.bar([i + dx for i in x], [r[key] for r in per_object], width=0.27, color=color,
                   label=label)
        for i, r in enumerate(per_object):
            for t in r["targets"]:
                ax.plot([i - 0.4, i + 0.4], [t["limit"]] * 2, color="#c44e52", lw=2)
        ax.set_xticks(list(x), [r["case"].replace("bytes per live ", "") for r in per_object])
        ax.set_ylabel(f"RSS bytes per live object ({memory['objects']:,} objects)")
        ax.set_title("Python: memory; red: target")
        ax.legend()

    if crit:
        ax = axes.pop(0)
        keys = sorted(crit)[:24]
        ax.barh(keys, [crit[k] for k in keys], color="#55a868")
        ax.set_xlabel("median ns (criterion)")
        ax.set_title("Rust: criterion medians")
        ax.tick_params(axis="y", labelsize=7)
        ax.invert_yaxis()

    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
