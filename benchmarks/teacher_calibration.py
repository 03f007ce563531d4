"""A k-shot teacher per class, before and after calibration and balanced demonstrations.

    python benchmarks/teacher_calibration.py --dataset esnli --subset-seeds 7 --train 250 --draws random,balanced
    python benchmarks/teacher_calibration.py --dataset esnli --study benchmarks/state/esnli
    python benchmarks/teacher_calibration.py --table-only

A subset row: the dataset's teacher (configs/<dataset>.yaml: the 1.5B, option letter, its shots,
the machine's native dtype) answers a train subset carved with ``task.seed`` = the subset seed and
the validation split, with the demonstrations drawn ``random`` (as before 2026-12-06) or
``balanced`` across the labels, by the library's ``teach`` with ``teacher.calibration=contextual``,
which keeps the uncalibrated answer and the raw option scores beside the calibrated ones. Prior
matching is fitted from the same raw scores on validation and applied to train; its validation
figures are cross-fitted (2 folds: each half calibrated with the bias fitted on the other), so
no figure is computed on the data that fitted it. One teacher pass gives all three calibrations.

A study row (``--study``): the teacher answers kept by the study (``benchmarks/state/<dataset>``:
its subset, demonstrations and dtype) are calibrated the same way; only the content-free prompts
are scored here (in this machine's native dtype).

Per split and calibration: accuracy, recall per gold class, the answer distribution. Rows are
appended to --out.json as they finish; a killed run resumes (``teach`` resumes inside a row).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_results  # noqa: E402

CALIBRATIONS = ("none", "contextual", "prior")


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gold_index(ex: Any) -> int:
    return ex.choices.index(ex.label)


def calibrated_views(rows: dict[str, list[dict[str, Any]]], examples: dict[str, list[Any]], scoring: str,
                     contextual: dict[str, Any]) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[int, list[float]]]:
    """{calibration: {split: rows}} with answers under none, contextual and prior (validation: cross-fitted)."""
    from saliency_distill.data.answers import exact_match
    from saliency_distill.teacher.calibration import calibrate_rows, fit_prior, option_values

    def answered(split_rows: list[dict[str, Any]], exs: dict[str, Any], biases: dict[int, list[float]] | None):
        values = [option_values(r, scoring) for r in split_rows]
        scores = calibrate_rows(values, biases) if biases is not None else values
        out = []
        for r, s in zip(split_rows, scores):
            ex = exs[r["id"]]
            answer = ex.choices[max(range(len(s)), key=s.__getitem__)]
            out.append({"id": r["id"], "answer": answer, "correct": exact_match(answer, ex)})
        return out

    by_id = {split: {ex.id: ex for ex in exs} for split, exs in examples.items()}
    ctx = {int(n): b for n, b in contextual["bias"].items()}
    val = rows["validation"]
    val_values = [option_values(r, scoring) for r in val]
    val_gold = [gold_index(by_id["validation"][r["id"]]) for r in val]
    prior = fit_prior(val_values, val_gold)
    views: dict[str, dict[str, list[dict[str, Any]]]] = {c: {} for c in CALIBRATIONS}
    for split, split_rows in rows.items():
        views["none"][split] = answered(split_rows, by_id[split], None)
        views["contextual"][split] = answered(split_rows, by_id[split], ctx)
        if split != "validation":
            views["prior"][split] = answered(split_rows, by_id[split], prior)
            continue
        crossed: dict[str, dict[str, Any]] = {}
        for k in range(2):  # each half calibrated with the bias fitted on the other half
            fit = [i for i in range(len(val)) if i % 2 != k]
            held = [val[i] for i in range(len(val)) if i % 2 == k]
            bias = fit_prior([val_values[i] for i in fit], [val_gold[i] for i in fit])
            crossed.update({r["id"]: r for r in answered(held, by_id[split], bias)})
        views["prior"][split] = [crossed[r["id"]] for r in val]
    return views, prior


def summarise(views: dict[str, dict[str, list[dict[str, Any]]]], examples: dict[str, list[Any]]) -> dict[str, Any]:
    from saliency_distill.teacher.quality import answer_quality

    out: dict[str, Any] = {}
    for calibration, splits in views.items():
        for split, rows in splits.items():
            q = answer_quality(rows, [ex for ex in examples[split] if ex.id in {r["id"] for r in rows}])
            out.setdefault(split, {})[calibration] = {
                "accuracy": round(q["accuracy"], 4), "n": q["n"], "recall": q["recall"],
                "answers": q["answer_distribution"], "gold": q["gold_distribution"],
                "under_predicted": q["under_predicted"]}
    return out


def subset_row(args: argparse.Namespace, seed: int, draw: str) -> dict[str, Any]:
    from saliency_distill.config import load_config
    from saliency_distill.data import prepare
    from saliency_distill.experiment import ExperimentConfig
    from saliency_distill.teacher import teach

    run_dir = Path(args.runs) / f"{args.dataset}-seed{seed}-train{args.train}-{draw}"
    cfg = load_config(ExperimentConfig, Path("configs") / f"{args.dataset}.yaml", [
        f"run_dir={run_dir}", f"task.path={Path(args.data) / args.dataset}", f"task.seed={seed}",
        f"task.max_train={args.train}", f"task.max_validation={args.validation}", "task.max_test=1",
        "teacher.model.dtype=auto", "teacher.splits=[train,validation]", f"teacher.demonstrations={draw}",
        "teacher.calibration=contextual", "teacher.finetune=false"])
    splits = prepare(cfg.task, cfg.run_dir)
    started = time.perf_counter()
    metrics = teach(cfg.task, cfg.teacher, splits, cfg.run_dir)
    seconds = time.perf_counter() - started
    rows = {s: read_rows(run_dir / "teacher" / f"answers_{s}.jsonl") for s in ("train", "validation")}
    examples = {s: splits[s] for s in rows}
    views, prior = calibrated_views(rows, examples, cfg.teacher.scoring, metrics["calibration"])
    return {"kind": "subset", "dataset": args.dataset, "subset_seed": seed, "draw": draw, "train": len(rows["train"]),
            "validation": len(rows["validation"]), "demonstrations": metrics["prompt"]["demonstrations"],
            "dtype": "auto (the machine's native dtype)", "seconds": round(seconds, 1),
            "bias": {"contextual": metrics["calibration"]["bias"], "prior": {str(n): [round(b, 4) for b in v]
                                                                              for n, v in prior.items()}},
            "results": summarise(views, examples)}


def study_row(args: argparse.Namespace) -> dict[str, Any]:
    """The study's kept answers, calibrated: the content-free prompts under the study's prompt."""
    from dataclasses import replace

    import yaml

    from saliency_distill.config import build
    from saliency_distill.data import get_task
    from saliency_distill.data.prepare import make_splits
    from saliency_distill.experiment import ExperimentConfig
    from saliency_distill.models import ModelConfig, load_model
    from saliency_distill.teacher.answer import make_prompter
    from saliency_distill.teacher.calibration import fit_calibration

    state = Path(args.study)
    if not state.is_dir():  # the committed archive of a study's state
        from study_state import state_folder

        state = state_folder(state.name, state.parent)
    resolved = yaml.safe_load((state / "config.yaml").read_text())
    resolved["task"]["path"] = str(Path(args.data) / args.dataset)
    resolved["teacher"]["demonstrations"] = "random"  # the study's draw, made before balanced draws existed
    cfg = build(ExperimentConfig, resolved)
    splits = make_splits(get_task(cfg.task.name).load_source(cfg.task), cfg.task)
    rows = {s: read_rows(state / "teacher" / f"answers_{s}.jsonl") for s in ("train", "validation", "test")}
    kept = json.loads((state / "teacher" / "metrics.json").read_text())
    teacher = ModelConfig(name=cfg.teacher.model.name, dtype="auto")
    lm = load_model(teacher)
    prompter = make_prompter(cfg.task, cfg.teacher, splits["train"], lm.tokenizer)
    if prompter.describe()["demonstrations"] != kept["prompt"]["demonstrations"]:
        raise SystemExit(f"{state}: the study's demonstrations {kept['prompt']['demonstrations']} are not drawn "
                         f"again ({prompter.describe()['demonstrations']})")
    contextual = fit_calibration(lm, prompter, replace(cfg.teacher, calibration="contextual"), splits, rows)
    examples = {s: splits[s] for s in rows}
    views, prior = calibrated_views(rows, examples, cfg.teacher.scoring, contextual)
    return {"kind": "study", "dataset": args.dataset, "subset_seed": cfg.task.seed, "draw": "random (study)",
            "train": len(rows["train"]), "validation": len(rows["validation"]),
            "demonstrations": kept["prompt"]["demonstrations"], "dtype": f"{cfg.teacher.model.dtype} (answers), "
            f"{lm.model.dtype} (content-free)".replace("torch.", ""), "seconds": None,
            "bias": {"contextual": contextual["bias"], "prior": {str(n): [round(b, 4) for b in v]
                                                                   for n, v in prior.items()}},
            "results": summarise(views, examples)}


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# A k-shot teacher per class: calibration and balanced demonstrations",
        "",
        "Commands: " + "; ".join(f"`{c}`" for c in meta["commands"])
        + f" ({meta['machine']['machine']}, torch {meta['machine']['torch']}, {meta['machine']['date']}).",
        "",
        "Each row: one teacher pass (1.5B, option letter, 3 shots). `none` is the teacher as it answers; "
        "`contextual` divides the option probabilities by those of content-free prompts (N/A, empty, [MASK]) "
        "under the same demonstrations; `prior` rescales them so the mean distribution on validation matches the "
        "gold one (fitted on validation; its validation figures are cross-fitted over 2 folds). Recall per gold "
        "class in %; `answers` counts the teacher's answers (gold in brackets).",
        "",
        "| subset (seed, n) | demonstrations | split | calibration | accuracy | recall E / N / C | answers E / N / C "
        "(gold) |",
        "|---|---|---|---|---:|---|---|",
    ]
    for r in rows:
        for split, by_cal in r["results"].items():
            for cal in CALIBRATIONS:
                q = by_cal.get(cal)
                if q is None:
                    continue
                labels = list(q["gold"])
                order = [c for c in ("entailment", "neutral", "contradiction") if c in labels] or labels
                recall = " / ".join(f"{100 * q['recall'][c]:.1f}" for c in order)
                answers = " / ".join(str(q["answers"].get(c, 0)) for c in order)
                gold = " / ".join(str(q["gold"].get(c, 0)) for c in order)
                where = f"{r['kind']} seed {r['subset_seed']}, {r['train']} train"
                lines.append(f"| {where} | {r['draw']} | {split} | {cal} | {100 * q['accuracy']:.1f} | {recall} | "
                             f"{answers} ({gold}) |")
    lines += ["", "Demonstrations drawn (ids), dtype and teacher seconds per row:", ""]
    lines += [f"- {r['kind']} seed {r['subset_seed']} {r['draw']}: {', '.join(r['demonstrations'])}; {r['dtype']}; "
              f"{r['seconds']} s" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="esnli")
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--subset-seeds", default="")
    ap.add_argument("--train", type=int, default=250)
    ap.add_argument("--validation", type=int, default=200)
    ap.add_argument("--draws", default="random,balanced")
    ap.add_argument("--study", default=None, help="a study's state folder (benchmarks/state/<dataset>)")
    ap.add_argument("--runs", default="runs/teacher_calibration")
    ap.add_argument("--out", default="benchmarks/results/teacher_calibration")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    path = Path(args.out + ".json")
    saved = json.loads(path.read_text()) if path.is_file() else {"rows": [], "commands": []}
    command = "python benchmarks/teacher_calibration.py " + " ".join(sys.argv[1:])
    if not args.table_only and command not in saved["commands"]:
        saved["commands"].append(command)

    def key(r: dict[str, Any]) -> str:
        return f"{r['kind']}|{r['dataset']}|{r['subset_seed']}|{r['train']}|{r['draw']}"

    def record(row: dict[str, Any]) -> None:
        saved["rows"] = [r for r in saved["rows"] if key(r) != key(row)] + [row]
        saved["machine"] = machine()
        write_results(args.out, saved, table(saved["rows"], {"commands": saved["commands"],
                                                             "machine": saved["machine"]}))
        print(f"{key(row)}: done", flush=True)

    if args.table_only:
        record(saved["rows"].pop()) if saved["rows"] else None
        return
    if args.study:
        record(study_row(args))
    for seed in [int(s) for s in args.subset_seeds.split(",") if s]:
        for draw in args.draws.split(","):
            record(subset_row(args, seed, draw))


if __name__ == "__main__":
    main()
