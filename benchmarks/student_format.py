"""Does the student's prompt format change its accuracy? suffix ("x\\npredict:") against prefix
("predict: x", Distilling Step-by-Step's), on the validation split.

    python benchmarks/student_format.py --dataset esnli --train 800 --validation 200 --seeds 0

SmolLM2-135M-Instruct, trained as the shipped configs train it (2 epochs, batch 8, lr 1e-4,
bf16, alpha 0.5), in the modes that need no teacher: ``standard`` and ``llm-rationale`` (the
dataset's LLM rationales, multi-task). Each (mode, format, seed) is trained once and evaluated on
validation; finished runs are reused from ``runs/student_format/`` (a killed run resumes).
The test split is not touched.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import add_study_args, machine, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_args(ap)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--modes", default="standard,llm-rationale")
    ap.add_argument("--formats", default="suffix,prefix")
    ap.add_argument("--out", default="benchmarks/results/student_format")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from saliency_distill.data import TaskConfig, get_task
    from saliency_distill.data.prepare import make_splits
    from saliency_distill.evaluation import EvalConfig
    from saliency_distill.student.stage import StudentConfig, train_and_evaluate
    from saliency_distill.training import TrainConfig

    task_cfg = TaskConfig(name=args.dataset, path=str(Path(args.data) / args.dataset), seed=0,
                          max_train=args.train, max_validation=args.validation)
    splits = make_splits(get_task(args.dataset).load_source(task_cfg), task_cfg)
    on_validation = {"train": splits["train"], "test": splits["validation"]}  # the test split is never read
    rows: list[dict[str, Any]] = []
    for mode in args.modes.split(","):
        for fmt in args.formats.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                cfg = StudentConfig(modes=[mode], seeds=[seed], format=fmt, alpha=0.5,
                                    train=TrainConfig(epochs=2, batch_size=8, learning_rate=1e-4, bf16=True,
                                                      progress_bar=False),
                                    eval=EvalConfig(max_new_tokens=8))
                run_dir = Path("runs/student_format") / f"{args.dataset}-{args.train}-{fmt}"
                result = train_and_evaluate(task_cfg, cfg, mode, seed, on_validation, run_dir)
                rows.append({"mode": mode, "format": fmt, "seed": seed, "accuracy": result["accuracy"],
                             "n": result["n"], "train_seconds": result["train_seconds"]})
                print(f"{mode} {fmt} seed {seed}: validation accuracy {result['accuracy']:.3f} "
                      f"({result['train_seconds']:.0f} s training)", flush=True)

    meta = {"dataset": args.dataset, "train": len(splits["train"]), "validation": len(splits["validation"]),
            **machine()}
    lines = [f"# Student prompt format on {args.dataset} validation", "",
             f"SmolLM2-135M-Instruct, {meta['train']} train examples, {meta['validation']} validation examples, "
             f"2 epochs, batch 8, lr 1e-4, bf16, alpha 0.5; {meta['date']}, {meta['machine']}.", "",
             f"Command: `{meta['command']}`", "",
             "| mode | format | seeds | validation accuracy (mean) | per seed | train s (mean) |",
             "|---|---|---:|---:|---|---:|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["format"]), []).append(r)
    for (mode, fmt), rs in groups.items():
        accs = [r["accuracy"] for r in rs]
        lines.append(f"| {mode} | {fmt} | {len(rs)} | {100 * statistics.mean(accs):.1f} | "
                     f"{', '.join(f'{100 * a:.1f}' for a in accs)} | "
                     f"{statistics.mean(r['train_seconds'] for r in rs):.0f} |")
    text = "\n".join(lines) + "\n"
    write_results(args.out, {"meta": meta, "rows": rows}, text)
    print(text)


if __name__ == "__main__":
    main()
