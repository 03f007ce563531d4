"""What the stage commands print about the teacher and the rationale analysis (kept apart from
``main`` so that the command table stays small)."""

from __future__ import annotations

from typing import Any

from ..analysis.overlap import format_difference


def print_teacher(metrics: dict) -> None:
    """The teacher's accuracy per split, with its answer distribution: a collapsed teacher shows at once."""
    tuned = "fine-tuned" if metrics.get("finetuned") else "not fine-tuned"
    prompt = metrics.get("prompt") or {}
    asked = f"format={prompt.get('format', 'text')}, shots={prompt.get('shots', 0)}" + (
        ", chat" if prompt.get("chat") else "")
    print(f"teacher {metrics['model']} ({tuned}, {asked}, scoring={metrics['scoring']}):")
    for split, acc in metrics["accuracy"].items():
        q = (metrics.get("quality") or {}).get(split, {})
        ci = f" [95% CI {q['ci95'][0]:.3f}-{q['ci95'][1]:.3f}]" if q.get("ci95") else ""
        extra = ""
        if "accuracy_sum" in acc:
            extra = f"  (sum {acc['accuracy_sum']:.3f}, mean {acc['accuracy_mean']:.3f})"
        print(f"  {split:<10} accuracy {acc['accuracy']:.3f}{ci} on {acc['n']} examples{extra}")
        if "accuracy_uncalibrated" in acc:
            print(f"  {'':<10} uncalibrated accuracy {acc['accuracy_uncalibrated']:.3f} "
                  f"(calibration: {(metrics.get('calibration') or {}).get('method')})")
        if q.get("answer_distribution") and q.get("gold_distribution"):
            dist = ", ".join(f"{k} {v}" for k, v in q["answer_distribution"].items())
            gold = ", ".join(f"{k} {v}" for k, v in q["gold_distribution"].items())
            print(f"  {'':<10} answers: {dist}  (gold: {gold})")
        if q.get("recall"):
            print(f"  {'':<10} recall per gold class: " + ", ".join(f"{k} {v:.2f}" for k, v in q["recall"].items()))
        if q.get("no_answer"):
            print(f"  {'':<10} no answer (nothing the task reads as one) for {q['no_answer']} examples")
    pool = (metrics.get("quality") or {}).get("pool")
    if pool:  # inputs without labels: what the teacher said, no accuracy
        dist = ", ".join(f"{k} {v}" for k, v in (pool.get("answer_distribution") or {}).items())
        print(f"  {'pool':<10} {pool['n']} inputs without labels; the teacher's answers: {dist}")
    for warning in metrics.get("warnings") or []:
        print(f"  {warning}")


def print_analysis(split: str, s: dict) -> None:
    """The rationale figures of one split that the paper reports, and faithfulness when it was measured."""
    def pct(d: dict) -> str:
        return "n/a" if d.get("percent") is None else f"{d['percent']:.1f}% of {d['n']}"

    print(f"{split}: {s['n_rows']} rationales, {s['mean_rationale_words']:.1f} words each")
    print(f"  gold answer in rationale:    {pct(s['gold_containment']['multiple_choice'])} multiple-choice, "
          f"{pct(s['gold_containment']['all'])} all")
    print(f"  teacher answer in rationale: {pct(s['teacher_containment']['all'])}")
    print(f"  teacher accuracy:            {pct(s['teacher_accuracy'])}")
    h = s["human_rationale"]
    if h.get("n"):
        print(f"  vs human rationales (n={h['n']}): precision {h['precision']:.3f}, recall {h['recall']:.3f}, "
              f"F1 {h['f1']:.3f}")
    faith = s.get("faithfulness") or {}
    for name, better in (("comprehensiveness", "higher"), ("sufficiency", "lower")) if faith.get("n") else ():
        f = faith[name]
        gap = format_difference(f.get("difference"))  # empty for summaries written before it existed
        gap = f" (difference, 95% CI: {gap})" if gap else ""
        print(f"  {name} (log p drop, {better} = more faithful): rationale {f['saliency']}, random words "
              f"{f['random']}{gap}, rationale better in {pct(f['saliency_beats_random'])}")



NEXT_STEP = ("with your own data: task.name=file task.path=labeled.jsonl (map task.fields); with few labels and "
             "many inputs without one, add task.unlabeled=inputs.jsonl and student.modes=[standard,pool-label] "
             "(docs/pipeline.md#few-labels-many-inputs-the-pool)")


def try_student(cfg: Any, records: list[dict], report: Any) -> str:
    """The one-line ``predict`` command for the best student on a question of its kind: the first
    test question, written (without its answer) to ``report/try_question.jsonl`` to edit."""
    from pathlib import Path

    from ..data import prepare
    from ..io import write_jsonl
    from ..student.record import input_fields

    by_validation = all(r.get("validation_accuracy") is not None for r in records)
    key = "validation_accuracy" if by_validation else "accuracy"  # runs made before it was recorded: test
    best = max(records, key=lambda r: r.get(key) or 0.0)  # the first of equals
    chosen = (f"the best student by validation accuracy ({best['mode']}, seed {best['seed']}, "
              f"{100 * best[key]:.1f}% on validation)" if by_validation else
              f"the best student ({best['mode']}, seed {best['seed']}; by test accuracy: these runs predate the "
              "validation figure)")
    if not cfg.student.keep_models:
        return (f"to answer new questions with a student, keep its weights: re-run with student.keep_models=true, "
                f"then `saliency-distill predict --run {cfg.run_dir} --mode {best['mode']} ...` "
                "(docs/using-the-student.md)")
    splits = prepare(cfg.task, cfg.run_dir)
    fields = input_fields(cfg.task, splits["train"])
    ex = splits["test"][0]
    row = {**{k: v for k, v in ex.fields.items() if k in fields["content"]}}
    if fields.get("choices") and ex.choices:  # the column that holds per-question options
        row[fields["choices"]] = list(ex.choices)
    question = Path(report) / "try_question.jsonl"
    write_jsonl(question, [row])
    return (f"try {chosen} on a question (edit {question}): "
            f"saliency-distill predict --run {cfg.run_dir} --mode {best['mode']} --seed {best['seed']} "
            f"--input {question} --output {Path(report) / 'try_question.predictions.jsonl'}")
