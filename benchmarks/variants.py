"""Saliency as a signal the student can use: each variant against standard and its random control.

    python benchmarks/variants.py --dataset esnli --labels 250,1000
    python benchmarks/variants.py --dataset cqa --labels 250,1000

Variants (issue 44), each beside the control that can prove it wrong:

- ``saliency`` (the explain task, the paper's) against ``random-words``;
- ``saliency-after`` (the explanation after the label, in one sequence) against ``random-words-after``;
- ``saliency-consistency`` (the student keeps its answer distribution when the least salient words
  of its input are dropped) against ``random-consistency`` (as many words dropped at random);
- ``contrast``: ``saliency`` with ``attribution.contrast=true`` (the words that separate the answer
  from the teacher's strongest rival), in its own run folder (another rationale store; the teacher's
  answers are taken from the main folder), against the same ``random-words``. Its method is
  ``--contrast-method`` (input_x_gradient by default: contrast needs a method linear in its
  objective), so where the other rows use another method, contrast - saliency changes both.

Every row at every number of labels (``task.labeled``: the rest of train is left unused here, and
the teacher leaves it unanswered; the pool modes are ``benchmarks/pool_study.py``'s) trains on the
same examples, with 5 seeds at up to 500 labels and 3 above (``--seeds-small``, ``--seeds-large``).
Settings are the dataset's config (chosen on validation there); ``--set`` overrides them. Every
difference is paired by seed and test example, with the example-level, two-level and seed-t
intervals (as in the pool study), and each row's training cost per example.

With the pool (item 5): the modes ``pool-saliency-after``, ``pool-saliency-consistency`` and their
controls ``pool-random-words-after``, ``pool-random-consistency`` run in ``benchmarks/pool_study.py``
(``--modes``), beside its pool-label and against both, in the pool study's folders and answers.

Resumes from the run folders (``runs/variants/<dataset>/<labels>``, ``.../<labels>-contrast``);
writes ``benchmarks/results/variants.{json,md}`` after every row.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from pool_study import CONFIGS, compare, diff_text, summarise, write  # noqa: E402

ROWS = ("standard", "random-words", "saliency", "random-words-after", "saliency-after", "random-consistency",
        "saliency-consistency", "contrast")
CONTROL = {"saliency": "random-words", "saliency-after": "random-words-after", "contrast": "random-words",
           "saliency-consistency": "random-consistency"}


def configure(args: argparse.Namespace, labels: int, mode: str, seeds: list[int], extra: tuple[str, ...] = ()) -> Any:
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig

    contrast = mode == "contrast"
    folder = Path(args.run_dir) / (f"{labels}-contrast" if contrast else str(labels))
    overrides = [f"run_dir={folder}", f"task.labeled={labels}", "task.max_train=null",
                 f"task.max_test={args.max_test or 'null'}", f"student.modes=[{'saliency' if contrast else mode}]",
                 f"student.seeds=[{','.join(map(str, seeds))}]", "student.keep_models=false", "progress=false",
                 "teacher.splits=[train,validation,test]", *args.set,
                 *([f"attribution.method={args.contrast_method}", "attribution.contrast=true"] if contrast else []),
                 *extra]
    if args.config is None and args.dataset != "socialiqa":
        overrides.insert(0, f"task.path={Path(args.data) / args.dataset}")
    cfg = load_config(ExperimentConfig, args.config or CONFIGS[args.dataset], overrides)
    if not contrast:
        return cfg
    # contrast: the teacher's answers are the main folder's; rationales of other runs are not contrastive
    main_folder = str(Path(args.run_dir) / str(labels))
    return replace(cfg, teacher=replace(cfg.teacher, reuse_answers=[*cfg.teacher.reuse_answers, main_folder]),
                   attribution=replace(cfg.attribution, reuse_rationales=[]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help=f"{', '.join(sorted(CONFIGS))}, or any name with --config")
    ap.add_argument("--config", default=None, help="another config file (e.g. a file task) instead of the dataset's")
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--labels", default="250,1000")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--seeds-small", type=int, default=5, help="seeds at up to 500 labels")
    ap.add_argument("--seeds-large", type=int, default=3)
    ap.add_argument("--contrast-method", default="input_x_gradient",
                    help="the contrast row's attribution method (linear in its objective: input_x_gradient, "
                         "integrated_gradients), whatever the other rows use")
    ap.add_argument("--faithfulness", type=int, default=0, metavar="N",
                    help="also score the saliency and contrast rows' rationales on N train rows with the teacher")
    ap.add_argument("--max-test", type=int, default=None, help="default: the whole test split")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--out", default="benchmarks/results/variants")
    args = ap.parse_args(argv)
    if args.config is None and args.dataset not in CONFIGS:
        ap.error(f"--dataset {args.dataset}: choose from {', '.join(sorted(CONFIGS))}, or give --config")
    args.command = "python benchmarks/variants.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.section, args.run_dir = args.dataset, args.run_dir or f"runs/variants/{args.dataset}"

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    from saliency_distill.experiment import save_resolved, student_stage
    from saliency_distill.reporting import read_correctness

    result: dict[str, Any] = {"dataset": args.dataset, "points": []}
    for labels in sorted(int(n) for n in args.labels.split(",")):
        seeds = list(range(args.seeds_small if labels <= 500 else args.seeds_large))
        point: dict[str, Any] = {"labels": labels, "rows": {}, "vs_standard": {}, "vs_control": {}}
        result["points"].append(point)
        correctness: dict[str, Any] = {}
        for row in args.rows.split(","):
            cfg = configure(args, labels, row, seeds)
            records = student_stage(cfg)
            save_resolved(cfg)  # the record another folder's teacher.reuse_answers reads (contrast's)
            trained = "saliency" if row == "contrast" else row
            correctness[row] = read_correctness(cfg.run_dir, records)[trained]
            point["rows"][row] = {**summarise(records), "seconds_per_example": sum(
                r.get("train_seconds") or 0 for r in records) / max(1, sum(r["train_examples"] for r in records))}
            if row != "standard":
                point["vs_standard"][row] = compare(correctness, row, "standard")
            if row in CONTROL:
                point["vs_control"][row] = compare(correctness, row, CONTROL[row])
            write(args, result, markdown)
        if args.faithfulness:
            point["faithfulness"] = faithfulness(args, labels, seeds)
            write(args, result, markdown)


def faithfulness(args: argparse.Namespace, labels: int, seeds: list[int]) -> dict[str, Any]:
    """The teacher-side faithfulness of the rationales that the saliency and contrast rows learned
    (the analyze stage on the first ``--faithfulness`` train rows of each store), by row."""
    from saliency_distill.experiment import analyze_stage

    out = {}
    for row in ("saliency", "contrast"):
        if row in args.rows.split(","):
            cfg = configure(args, labels, row, seeds, ("analysis.faithfulness=true",
                                                       f"analysis.faithfulness_max_examples={args.faithfulness}"))
            out[row] = {"method": cfg.attribution.method, "contrast": cfg.attribution.contrast,
                        **analyze_stage(cfg)["train"]["faithfulness"]}
    return out


def markdown(payload: dict[str, Any]) -> str:
    lines = ["# Saliency variants against standard fine-tuning and their random controls", "",
             "Produced by `benchmarks/variants.py` (its docstring says how). Accuracy in % on the test split, mean ± "
             "sd over seeds; differences in points, paired by seed and example, with the example-level 95% interval "
             "/ the two-level one (seeds resampled too) / the t interval over the per-seed differences. Controls: "
             + ", ".join(f"{k} - {v}" for k, v in CONTROL.items()) + ".", ""]
    for name, d in payload["datasets"].items():
        lines += [f"## {name}", "", f"`{d['command']}` ({d['machine']['date']}, {d['machine']['machine']})", "",
                  "| labels | row | seeds | accuracy | train s/example | vs standard | vs its control |",
                  "|---:|---|---:|---|---:|---|---|"]
        for p in d["points"]:
            for row, r in p["rows"].items():
                lines.append(f"| {p['labels']} | {row} | {r['seeds']} | {r['mean']:.1f} ± {r['sd']:.1f} | "
                             f"{r['seconds_per_example']:.3f} | {diff_text(p['vs_standard'].get(row))} | "
                             f"{diff_text(p['vs_control'].get(row))} |")
        for p in d["points"]:
            lines += faithfulness_lines(p)
        wins = [f"{row} at {p['labels']}" for p in d["points"] for row in CONTROL
                if all((p[k].get(row) or {}).get("seed_t") and p[k][row]["seed_t"][0] > 0
                       for k in ("vs_standard", "vs_control"))]
        lines += ["", "Above both standard and its control by the seed t interval: " + (", ".join(wins) or "none")
                  + ".", ""]
    return "\n".join(lines)


def faithfulness_lines(point: dict[str, Any]) -> list[str]:
    """The faithfulness table of one point (nats; rationale - as many random words, 95% interval over rows)."""
    if not point.get("faithfulness"):
        return []
    lines = ["", f"Faithfulness with the teacher, {point['labels']} labels (nats, on train rows; comprehensiveness: "
             "higher is better, sufficiency drop: lower is better; rationale - random words with its 95% interval):",
             "", "| row | method | rows | comprehensiveness (random) | difference | sufficiency drop (random) | "
             "difference |", "|---|---|---:|---|---|---|---|"]
    from saliency_distill.analysis.overlap import format_difference

    for row, f in point["faithfulness"].items():
        cells = []
        for name in ("comprehensiveness", "sufficiency"):
            cells += [f"{f[name]['saliency']:.3f} ({f[name]['random']:.3f})", format_difference(f[name]["difference"])]
        method = f["method"] + (" contrast" if f["contrast"] else "")
        lines.append(f"| {row} | {method} | {f['n']} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
