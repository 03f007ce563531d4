"""Why does the multi-task student lose to plain fine-tuning? Controls, loss balance, format and
early stopping, each a row measured on the validation split; the chosen rows once on test.

    python benchmarks/multitask_diagnosis.py --dataset esnli --train 800
    python benchmarks/multitask_diagnosis.py --dataset esnli --train 800 --test   # final rows, 3 seeds

One base run (``runs/diagnosis/<dataset>-<train>``) prepares the data, asks the dataset's
configured teacher (configs/<dataset>.yaml: the 1.5B letter-format teacher) and attributes its
gold-answer log-probability on train; every row then trains SmolLM2-135M-Instruct students on
those same rationales with one change against the shipped recipe (2 epochs, batch 8, lr 1e-4,
bf16, alpha 0.5, k 5, token-averaged losses, "x\\npredict:" format). Rows are resumable: a
finished (row, mode, seed) is read back from its ``result.json``. Without ``--test`` the test
split is never read: students are evaluated on validation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import add_study_args, machine, write_results  # noqa: E402

# row name -> (modes, student overrides, rationale changes). Every row changes one thing against
# "recipe". Rationale changes: "k" re-selects the top k from the stored word scores (no new
# attribution); "target": "teacher" attributes the teacher's own answer instead of the gold one.
ROWS: dict[str, tuple[list[str], dict[str, Any], dict[str, Any]]] = {
    "recipe": (["standard", "saliency", "random-words", "human-rationale", "llm-rationale"], {}, {}),
    "alpha 0.7": (["saliency", "random-words"], {"alpha": 0.7}, {}),
    "alpha 0.9": (["saliency", "random-words"], {"alpha": 0.9}, {}),
    "sequence-averaged loss": (["saliency", "random-words"], {"loss_average": "sequence"}, {}),
    "prefix format": (["standard", "saliency"], {"format": "prefix"}, {}),
    # patience 3 of 8 evaluations from the first step (how this row was first run)...
    "early stopping": (["standard", "saliency", "random-words", "human-rationale", "llm-rationale"],
                       {"early_stopping": {"enabled": True, "min_fraction": 0.0}}, {}),
    # ...never before half the steps (students sit at chance for a while)...
    "early stopping after half": (["standard", "saliency", "random-words", "human-rationale", "llm-rationale"],
                                  {"early_stopping": {"enabled": True, "min_fraction": 0.5}}, {}),
    # ...and every step trained, the best validation weights kept (the default since)
    "best checkpoint": (["standard", "saliency", "random-words", "human-rationale", "llm-rationale"],
                        {"early_stopping": {"enabled": True}}, {}),
    # the two changes that helped on validation together: where the study starts (then tune)
    "alpha 0.9 + best checkpoint": (["standard", "saliency", "random-words", "human-rationale", "llm-rationale"],
                                   {"alpha": 0.9, "early_stopping": {"enabled": True}}, {}),
    "k 3": (["saliency", "random-words"], {}, {"k": 3}),
    "k 10": (["saliency", "random-words"], {}, {"k": 10}),
    "teacher target": (["saliency"], {}, {"target": "teacher"}),
}


def base_config(dataset: str, data: str, train: int, validation: int, test: int | None,
                extra: list[str] = ()) -> Any:
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig

    overrides = [f"run_dir=runs/diagnosis/{dataset}-{train}", f"task.path={Path(data) / dataset}",
                 f"task.max_train={train}", f"task.max_validation={validation}",
                 f"task.max_test={test if test is not None else 'null'}",
                 "attribution.target=gold", "attribution.splits=[train]", "rationale.k=5",
                 "student.train.epochs=2", "student.train.batch_size=8", "student.train.learning_rate=1.0e-4",
                 "student.train.bf16=true", "student.alpha=0.5", "student.eval.max_new_tokens=8",
                 "teacher.splits=[train]", *extra]
    return load_config(ExperimentConfig, Path("configs") / f"{dataset}.yaml", overrides)


def run_row(cfg: Any, row: str, seeds: list[int], on_test: bool, gold_rows: list[dict[str, Any]],
            done: Any = None, only: list[str] | None = None) -> list[dict[str, Any]]:
    from saliency_distill.analysis import summarise
    from saliency_distill.config import build, to_dict
    from saliency_distill.data import get_task
    from saliency_distill.rationale import random_rationales, reselect
    from saliency_distill.student.modes import MODES
    from saliency_distill.student.stage import StudentConfig, train_and_evaluate

    modes, changes, rationale_change = ROWS[row]
    modes = [m for m in modes if only is None or m in only]
    student = build(StudentConfig, {**to_dict(cfg.student), **changes, "seeds": seeds})
    rationale_cfg = replace(cfg.rationale, k=rationale_change.get("k", cfg.rationale.k))
    store_rows = teacher_target_rows(cfg, gold_rows) if rationale_change.get("target") == "teacher" else gold_rows
    saliency = reselect(store_rows, rationale_cfg)
    splits = prepare(cfg)
    evaluated = dict(splits) if on_test else {"train": splits["train"], "validation": splits["validation"],
                                              "test": splits["validation"]}
    split = "test" if on_test else "validation"
    folder = Path(cfg.run_dir) / "rows" / split / row.replace(" ", "-")
    task = get_task(cfg.task.name)
    train_by_id = {ex.id: ex for ex in splits["train"]}
    out = []
    for mode in modes:
        for seed in seeds:
            explain = saliency
            if MODES[mode].explain == "random":
                explain = random_rationales(task, cfg.task, splits["train"], rationale_cfg, seed)
            quality = None
            if MODES[mode].explain in ("saliency", "random"):  # the explain targets against human rationales
                rows = [{"id": i, "gold": train_by_id[i].label, "rationale_words": text.split()}
                        for i, text in explain.items() if i in train_by_id]
                quality = summarise(rows, train_by_id)["human_rationale"]["f1"]
            rec = train_and_evaluate(cfg.task, student, mode, seed, evaluated, folder, rationales=explain,
                                     identity={"rationale": to_dict(rationale_cfg),
                                               **{k: v for k, v in rationale_change.items() if k == "target"}})
            best = (rec.get("validation") or {}).get("best") or {}
            out.append({"row": row, "mode": mode, "seed": seed, "split": split, "accuracy": rec["accuracy"],
                        "n": rec["n"], "train_seconds": rec["train_seconds"], "best_step": best.get("step"),
                        "steps": rec["train_steps"], "human_f1": quality,
                        "predicted": predicted(folder, mode, seed, evaluated["test"])})
            print(f"{row} | {mode} seed {seed}: {split} accuracy {rec['accuracy']:.3f}", flush=True)
            if done is not None:
                done(out[-1])  # the table so far is written after every run
    return out


def predicted(folder: Path, mode: str, seed: int, examples: list[Any] | None = None) -> dict[str, int]:
    """How often the student predicted each answer (a collapse onto one label shows here). Where
    the options differ between examples (CQA), the option's position instead: (A), (B), ... or
    "no option" for an answer that is none of them."""
    from saliency_distill.run_dir import RunDir

    path = RunDir(folder).student(mode, seed) / "predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    choices = {ex.id: list(ex.choices) for ex in examples or [] if ex.choices}
    if len({tuple(sorted(c)) for c in choices.values()}) <= 1:
        return dict(sorted(Counter(str(r["prediction"]) for r in rows).items()))

    def position(r: dict[str, Any]) -> str:
        options = choices.get(r["id"], [])
        return f"({chr(65 + options.index(r['prediction']))})" if r["prediction"] in options else "no option"

    return dict(sorted(Counter(position(r) for r in rows).items()))


def teacher_target_rows(cfg: Any, gold_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store rows attributing the teacher's own answer (a sibling run folder, resumable).

    Where the teacher answered correctly the target is the gold answer's, so that attribution is
    identical and its row is copied from the gold store; only the other examples are attributed.
    """
    from saliency_distill.config import to_dict
    from saliency_distill.experiment import attribute_stage, open_stage_stores, teach_stage
    from saliency_distill.rationale import read_store, store_path

    run_dir = Path(f"{cfg.run_dir}-teacher-target")
    for sub in ("data", "teacher"):  # the same splits and teacher answers: reused, not recomputed
        if not (run_dir / sub).exists():
            shutil.copytree(Path(cfg.run_dir) / sub, run_dir / sub)
    tcfg = replace(cfg, run_dir=str(run_dir), attribution=replace(cfg.attribution, target="teacher"))
    store = open_stage_stores(tcfg, teach_stage(tcfg))["train"]
    store.append([r for r in gold_rows if r["teacher_correct"] and r["id"] not in store])
    attribute_stage(tcfg)
    _, rows = read_store(store_path(run_dir, "train"))
    assert to_dict(tcfg.rationale) == to_dict(cfg.rationale)
    return rows


def prepare(cfg: Any) -> Any:
    from saliency_distill.experiment import prepare_stage

    return prepare_stage(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_args(ap)
    ap.add_argument("--max-test", type=int, default=None)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--modes", default=None, help="comma-separated: run only these modes of each row")
    ap.add_argument("--test", action="store_true", help="evaluate the rows on the test split (final numbers)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="further config overrides (a smoke test: --set teacher.model.name=smollm2-135m-instruct "
                    "teacher.shots=0 run_dir=runs/diagnosis-smoke)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--table-only", action="store_true", help="rewrite the table from the JSON results")
    args = ap.parse_args()
    if args.table_only:
        out = args.out or f"benchmarks/results/multitask_diagnosis_{args.dataset}_{'test' if args.test else 'validation'}"
        payload = json.loads(Path(out + ".json").read_text())
        write_results(out, payload, table(payload["rows"], payload["meta"], args.train))
        return
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row {unknown[0]!r}; rows: {', '.join(ROWS)}")
    if args.modes and (bad := sorted(set(args.modes.split(",")) - {m for r in rows for m in ROWS[r][0]})):
        ap.error(f"mode {bad[0]!r} is in none of the rows {rows}")

    import logging

    logging.basicConfig(level=logging.WARNING)
    from saliency_distill.experiment import attribute_stage, save_resolved, teach_stage
    from saliency_distill.rationale import read_store, store_path

    cfg = base_config(args.dataset, args.data, args.train, args.validation, args.max_test, args.set)
    save_resolved(cfg)
    prepare(cfg)
    teacher = teach_stage(cfg)
    attribute_stage(cfg)
    _, gold_rows = read_store(store_path(cfg.run_dir, "train"))
    seeds = [int(s) for s in args.seeds.split(",")]
    split = "test" if args.test else "validation"
    out = args.out or f"benchmarks/results/multitask_diagnosis_{args.dataset}_{split}"
    train_acc = (teacher.get("accuracy") or {}).get("train") or {}
    meta = {"dataset": args.dataset, "train": args.train, "split": split, "seeds": seeds,
            "teacher": teacher.get("model"), "teacher_train_accuracy": train_acc.get("accuracy"), **machine()}
    # Rows measured by earlier invocations stay in the table; a rerun of a (row, mode, seed) replaces its entry.
    previous = Path(out + ".json")
    results: list[dict[str, Any]] = []
    if previous.is_file():
        old = json.loads(previous.read_text())
        if all(old["meta"].get(k) == meta[k] for k in ("dataset", "train", "split")):
            results = old["rows"]
            meta["commands"] = old["meta"].get("commands", [old["meta"]["command"]])
    commands = meta.get("commands", [])
    meta["commands"] = commands if meta["command"] in commands else [*commands, meta["command"]]

    def write(result: dict[str, Any]) -> None:
        key = (result["row"], result["mode"], result["seed"])
        results[:] = [r for r in results if (r["row"], r["mode"], r["seed"]) != key] + [result]
        write_results(out, {"meta": meta, "rows": results}, table(results, meta, args.train))

    only = args.modes.split(",") if args.modes else None
    for row in rows:
        run_row(cfg, row, seeds, args.test, gold_rows, done=write, only=only)
    print(table(results, meta, args.train))


def correctness(folder: Path, mode: str) -> dict[int, dict[str, bool]]:
    """``{seed: {example id: correct}}`` of one mode of one row, from its predictions."""
    from saliency_distill.run_dir import RunDir

    out: dict[int, dict[str, bool]] = {}
    for path in sorted((RunDir(folder).root / "students" / mode).glob("seed*/predictions.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[int(path.parent.name.removeprefix("seed"))] = {r["id"]: bool(r["correct"]) for r in rows}
    return out


def paired_lines(meta: dict[str, Any], rows: list[str]) -> list[str]:
    """Paired 95% cluster-bootstrap intervals per row and mode: against random words (does the
    explain target carry more than any k content words?) and against standard (the row's own,
    else the recipe's, else another row's: the same examples)."""
    from saliency_distill.reporting.significance import paired_bootstrap

    base = Path(meta.get("run_dir", f"runs/diagnosis/{meta['dataset']}-{meta['train']}")) / "rows" / meta["split"]
    lines = ["| row | mode | minus random words (points, 95% CI) | minus standard (points, 95% CI) |",
             "|---|---|---|---|"]
    for row in rows:
        folder = base / row.replace(" ", "-")
        # the row's own standard students, else those of the recipe or of a row whose standard
        # student is the recipe's kept at its best validation step (alpha and k don't touch it)
        std, std_row = {}, row
        for other in [row, "recipe", "best checkpoint", "alpha 0.9 + best checkpoint"]:
            std, std_row = correctness(base / other.replace(" ", "-"), "standard"), other
            if std:
                break
        rnd = correctness(folder, "random-words")
        for mode in ROWS[row][0]:
            mine = correctness(folder, mode)
            if mode == "standard" or not mine:
                continue
            cells = []
            for rival, note in ((rnd if mode != "random-words" else {}, ""),
                                (std, "" if std_row == row else f" (standard of '{std_row}')")):
                if not rival:
                    cells.append("-")
                    continue
                d = paired_bootstrap(mine, rival)
                cells.append(f"{d.difference:+.1f} [{d.lower:+.1f}, {d.upper:+.1f}]{note}")
            lines.append(f"| {row} | {mode} | {cells[0]} | {cells[1]} |")
    return ["Paired 95% intervals (cluster bootstrap over examples, seeds kept together; with one seed they leave "
             "out the spread between training runs):", "", *lines] \
        if len(lines) > 2 else []


def table(results: list[dict[str, Any]], meta: dict[str, Any], train: int) -> str:
    acc = meta.get("teacher_train_accuracy")
    lines = [f"# Multi-task diagnosis: {meta['dataset']}, {meta['split']} split", "",
             f"SmolLM2-135M-Instruct students on {train} train examples; teacher {meta['teacher']} "
             f"(train accuracy {100 * (acc or 0):.1f}%), input x gradient of the gold answer, k=5; "
             f"{meta['date']}, {meta['machine']}.", "",
             "Every row resumes and skips what is done; the commands run are in the JSON file, one command per "
             "row is below the table.", "",
             "| row | mode | seeds | accuracy % (mean) | per seed | predicted (seed 1st) | explain-target F1 vs human "
             "| train s | best step / steps |",
             "|---|---|---:|---:|---|---|---:|---:|---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    order = {name: i for i, name in enumerate(ROWS)}
    for r in sorted(results, key=lambda r: (order.get(r["row"], len(order)), r["seed"])):
        groups.setdefault((r["row"], r["mode"]), []).append(r)
    for (row, mode), rs in groups.items():
        accs = [100 * r["accuracy"] for r in rs]
        best = ", ".join(f"{r['best_step']}/{r['steps']}" for r in rs if r["best_step"] is not None) or "-"
        dist = " / ".join(f"{k} {v}" for k, v in (rs[0].get("predicted") or {}).items()) or "-"
        f1 = "-" if rs[0].get("human_f1") is None else f"{rs[0]['human_f1']:.2f}"
        lines.append(f"| {row} | {mode} | {len(rs)} | {statistics.mean(accs):.1f} | "
                     f"{', '.join(f'{a:.1f}' for a in accs)} | {dist} | {f1} "
                     f"| {statistics.mean(r['train_seconds'] for r in rs):.0f} | {best} |")
    lines += ["", *paired_lines(meta, list(dict.fromkeys(row for row, _ in groups)))]

    def command(row: str) -> str:  # the seeds this row was measured with
        seeds = sorted({r["seed"] for r in results if r["row"] == row})
        test = " --test" if meta["split"] == "test" else ""
        extra = f" --seeds {','.join(map(str, seeds))}" if seeds != [0] or test else ""
        return f"python benchmarks/multitask_diagnosis.py --dataset {meta['dataset']} --train {train}{test}{extra} " \
               f"--rows '{row}'"

    lines += ["", "One command per row:", "", *[f"- {row}: `{command(row)}`" for row in dict.fromkeys(r for r, _ in groups)]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
