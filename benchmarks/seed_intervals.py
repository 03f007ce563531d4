"""The study's comparisons again, with intervals that include training noise.

    python benchmarks/seed_intervals.py

The study (benchmarks/results/study.md) gave each paired difference a bootstrap interval over test
examples with the trained students fixed. With 3 seeds per mode the seeds can spread more than
the gain, and that interval leaves the spread out. This script reads the kept predictions in
``benchmarks/state/<dataset>`` (the whole-split students and every point of the data-efficiency
curve) and puts, beside the example-level interval, the two-level one
(:func:`saliency_distill.reporting.significance.two_level_bootstrap`: the seeds resampled, paired
by seed, and the test examples resampled), and the per-seed differences. Reads files only; no model
runs. Writes ``benchmarks/results/seed_intervals.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_results  # noqa: E402

PAIRS = (("saliency", "standard"), ("saliency", "random-words"), ("llm-rationale", "standard"))


def points(state: Path) -> list[tuple[str, Path]]:
    """(label, folder holding students/) for the whole split and each curve point."""
    out = [("100%", state)]
    for folder in sorted((state / "curve").glob("p*")):
        out.append((f"{int(folder.name[1:])}%", folder))
    return sorted(out, key=lambda p: int(p[0].rstrip("%")))


def correctness(folder: Path) -> dict[str, dict[int, dict[str, bool]]]:
    from saliency_distill.reporting import read_correctness

    records = [{"mode": mode.name, "seed": int(seed.name[4:])}
               for mode in sorted((folder / "students").glob("*")) for seed in sorted(mode.glob("seed*"))]
    return read_correctness(folder, records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="esnli,cqa,anli1,svamp")
    ap.add_argument("--state", default="benchmarks/state")
    ap.add_argument("--out", default="benchmarks/results/seed_intervals")
    args = ap.parse_args()
    from study_state import state_folder

    from saliency_distill.reporting.significance import paired_bootstrap, two_level_bootstrap

    rows: list[dict[str, Any]] = []
    for dataset in args.datasets.split(","):
        for label, folder in points(state_folder(dataset, args.state)):
            got = correctness(folder)
            for mode, base in PAIRS:
                if mode not in got or base not in got:
                    continue
                a, b = got[mode], got[base]
                seeds = sorted(set(a) & set(b))
                per_seed = [100 * (sum(a[s].values()) / len(a[s]) - sum(b[s].values()) / len(b[s])) for s in seeds]
                flat, two = paired_bootstrap(a, b), two_level_bootstrap(a, b)
                rows.append({"dataset": dataset, "share": label, "mode": mode, "baseline": base,
                             "difference": flat.difference, "examples": [flat.lower, flat.upper],
                             "two_level": [two["lower"], two["upper"]], "seed_t": two["seed_t"], "seeds": two["n_seeds"],
                             "n": two["n_examples"], "per_seed": per_seed})
    lines = ["# The study's differences with seed-level intervals", "",
             f"`{machine()['command']}` ({machine()['date']}). Reads the kept predictions in `{args.state}`; no "
             "model runs.", "",
             "Difference in points (mode minus baseline, paired by seed and test example); 95% intervals: over "
             "test examples with the students fixed (as the study printed them), and two-level (training seeds "
             "resampled too, then test examples), and the t interval over the per-seed differences (the textbook "
             "one for a handful of seeds: a bootstrap over 3 seeds cannot draw a value outside the 3 it has, so "
             "it is narrower). Per seed: the difference of each seed's pair of students.", "",
             "| dataset | train share | comparison | seeds | n | difference | examples only | two-level | seed t | "
             "per seed |", "|---|---:|---|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['share']} | {r['mode']} - {r['baseline']} | {r['seeds']} | {r['n']} | "
                     f"{r['difference']:+.1f} | [{r['examples'][0]:+.1f}, {r['examples'][1]:+.1f}] | "
                     f"[{r['two_level'][0]:+.1f}, {r['two_level'][1]:+.1f}] | "
                     f"[{r['seed_t'][0]:+.1f}, {r['seed_t'][1]:+.1f}] | "
                     + " / ".join(f"{d:+.1f}" for d in r["per_seed"]) + " |")
    lines.append("")
    write_results(args.out, {"rows": rows, **machine()}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
