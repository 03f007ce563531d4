"""Few labels, many inputs: does a teacher that labels a pool of inputs lift the student, and do
saliency rationales add to it?

    python benchmarks/pool_study.py --dataset esnli            # ../shared/data/dsbs (never committed)
    python benchmarks/pool_study.py --dataset cqa
    python benchmarks/pool_study.py --dataset socialiqa        # from the package registry

One run folder per dataset (``runs/pool_study/<dataset>``; ``--section`` names another, and its
results section, e.g. a second run of a dataset with a larger train split): ``task.labeled`` keeps ``--labels``
train labels and moves the rest of train into the pool without its labels; ``task.max_pool`` is
the largest pool size. The teacher answers the pool once (and attributes it once, for the saliency
modes); every pool size P trains on the first P pool inputs (a smaller pool is the start of a
larger one) in ``pool<P>/``. Rows per pool size: ``standard`` on the labels alone (P = 0), the
pool modes, and the gold reference: ``standard`` on as many gold labels as labels + pool (the
same examples, their labels read back from the source) in ``reference<P>/``. Seeds: 5 for
students on at most 1,000 rows, 3 above (``--seeds-small``, ``--seeds-large``).

A mode ``m@t`` trains on the pool inputs whose teacher probability is at least t (``auto``: chosen on
validation); ``m@t-random``, its control, on as many pool inputs drawn at random.

Settings (teacher, format, shots, calibration, k, alpha, epochs) are the dataset's config in
``configs/`` (chosen on validation there); ``--set key=value`` overrides them (e.g.
``teacher.model.dtype=float32`` where bf16 is emulated). Every difference is paired against
``standard`` at P = 0 and shown with two intervals: the example-level cluster bootstrap (the
students fixed) and the two-level one that resamples the seeds too.

Resumes from the run folder (the teacher row by row, every student run); writes
``benchmarks/results/pool_study.{json,md}`` (one section per dataset) after every seed.

Where a finished study asked the same teacher the same way about the same rows, its answers and
rationales are taken instead of computed again: e.g. CQA over the study's 1,000 train rows
(``python benchmarks/study_state.py restore --dataset cqa`` first), with ``--set
task.max_train=1000 --set teacher.reuse_answers=[runs/study/cqa]`` (and
``attribution.reuse_rationales`` with the study's attribution settings for the saliency modes); or a
larger pool of a dataset from its smaller one's section (``--section esnli_2000 --pools 2000 --set
teacher.reuse_answers=[runs/pool_study/esnli]``: the same 250 labels, so the same demonstrations).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_results  # noqa: E402

CONFIGS = {"esnli": "configs/esnli.yaml", "cqa": "configs/cqa.yaml", "socialiqa": "configs/socialiqa.yaml"}
POOL_MODES = "pool-label,pool-soft,pool-saliency,pool-random-words"
ROWS_FOR_FIVE_SEEDS = 1000
RANDOM = "-random"  # m@t-random: as many pool inputs as m@t keeps, drawn at random (its control)
# The comparisons each pool size shows besides "vs standard" and "vs gold-reference": (mode, baseline)
PAIRS = (("pool-saliency", "pool-label"), ("pool-saliency", "pool-random-words"), ("pool-soft", "pool-label"),
         ("pool-saliency-after", "pool-label"), ("pool-saliency-after", "pool-random-words-after"),
         ("pool-saliency-consistency", "pool-label"), ("pool-saliency-consistency", "pool-random-consistency"))


def parse_mode(spec: str) -> tuple[str, str | None]:
    """``pool-label@auto`` -> (``pool-label``, ``auto``): the mode and its threshold on the teacher's
    probability, if any (``auto-random``: the threshold's control, as many pool inputs at random)."""
    mode, _, threshold = spec.partition("@")
    return mode, threshold or None


def configure(args: argparse.Namespace, modes: list[str], seeds: list[int], extra: tuple[str, ...] = ()) -> Any:
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig

    overrides = [f"run_dir={args.run_dir}", f"task.labeled={args.labels}", f"task.max_pool={max(args.pools)}",
                 "task.max_train=null", f"task.max_test={args.max_test or 'null'}",
                 f"task.max_validation={args.max_validation or 'null'}", f"student.modes=[{','.join(modes)}]",
                 f"student.seeds=[{','.join(map(str, seeds))}]", "student.keep_models=false", "progress=false",
                 "teacher.splits=[train,validation,test]", *args.set, *extra]
    if args.config is None and args.dataset != "socialiqa":
        overrides.insert(0, f"task.path={Path(args.data) / args.dataset}")
    return load_config(ExperimentConfig, args.config or CONFIGS[args.dataset], overrides)


def gold_twins(cfg: Any, ids: list[str]) -> list[Any]:
    """The train examples of ``ids`` with their labels, read again from the source: the gold
    reference's data (the pool's labels exist only for this comparison)."""
    from saliency_distill.data import get_task, make_splits

    task_cfg = replace(cfg.task, labeled=None, unlabeled=None, max_pool=None)
    train = {ex.id: ex for ex in make_splits(get_task(task_cfg.name).load_source(task_cfg), task_cfg)["train"]}
    return [train[i] for i in ids]


def seeds_for(rows: int, args: argparse.Namespace) -> list[int]:
    return list(range(args.seeds_small if rows <= ROWS_FOR_FIVE_SEEDS else args.seeds_large))


def compare(correctness: dict[str, Any], mode: str, baseline: str) -> dict[str, Any] | None:
    from saliency_distill.errors import DataError
    from saliency_distill.reporting.significance import paired_bootstrap, two_level_bootstrap

    a, b = correctness.get(mode), correctness.get(baseline)
    if not a or not b:
        return None
    try:
        flat = paired_bootstrap(a, b)
        two = two_level_bootstrap(a, b)
    except DataError:
        return None
    return {"difference": flat.difference, "examples": [flat.lower, flat.upper], "two_level": [two["lower"], two["upper"]],
            "seed_t": two["seed_t"], "seeds": two["n_seeds"]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import statistics

    accs = [100 * r["accuracy"] for r in rows]
    return {"seeds": len(rows), "mean": statistics.fmean(accs), "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs), "max": max(accs), "train_seconds": sum(r.get("train_seconds") or 0 for r in rows),
            "rows": rows[0]["train_examples"] + rows[0].get("pool_used", 0),
            **({"min_confidence": rows[0]["pool_min_confidence"]} if rows[0].get("pool_min_confidence") else {}),
            **({"keep": rows[0]["pool_keep"]} if rows[0].get("pool_keep") else {})}


def results_store(args: argparse.Namespace) -> Path:
    """``args.out``.json, every section's results (``args.out`` names no suffix: a dotted section is kept)."""
    out = Path(args.out)
    return out.parent / (out.name + ".json")


def earlier_times(args: argparse.Namespace) -> tuple[dict[str, float], bool]:
    """The wall time per stage that earlier invocations wrote into this section (a run resumed after a
    kill, or re-run to render), each invocation adding what it spent; and whether that covers every
    invocation (not when the section was written before times were summed)."""
    store = results_store(args)
    section = json.loads(store.read_text())["datasets"].get(args.section) if store.is_file() else None
    if section is None:
        return {}, True
    return dict(section.get("times") or {}), bool(section.get("times_cumulative"))


def timed(times: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, its wall time added to ``times[name]``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    times[name] = times.get(name, 0.0) + time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help=f"{', '.join(sorted(CONFIGS))}, or any name with --config")
    ap.add_argument("--config", default=None, help="another config file (e.g. a file task) instead of the dataset's")
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--labels", type=int, default=250)
    ap.add_argument("--pools", default="500,2000", help="pool sizes besides 0 (clipped to what the split holds)")
    ap.add_argument("--modes", default=POOL_MODES)
    ap.add_argument("--seeds-small", type=int, default=5, help="seeds of students on at most 1,000 rows")
    ap.add_argument("--seeds-large", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true", help="skip the gold reference students")
    ap.add_argument("--max-test", type=int, default=None, help="default: the whole test split")
    ap.add_argument("--max-validation", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--run-dir", default=None, help="default: runs/pool_study/<section>")
    ap.add_argument("--section", default=None, help="the results section (default: the dataset), e.g. a second "
                    "run of a dataset with other sizes")
    ap.add_argument("--out", default="benchmarks/results/pool_study")
    args = ap.parse_args(argv)
    args.command = "python benchmarks/pool_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.config is None and args.dataset not in CONFIGS:
        ap.error(f"--dataset {args.dataset}: choose from {', '.join(sorted(CONFIGS))}, or give --config")
    args.pools = sorted({int(p) for p in args.pools.split(",") if p.strip()})
    args.section = args.section or args.dataset
    args.run_dir = args.run_dir or f"runs/pool_study/{args.section}"
    from saliency_distill.student.modes import MODES

    for mode, threshold in map(parse_mode, args.modes.split(",")):
        if threshold and mode in MODES and not MODES[mode].pool:
            ap.error(f"--modes {mode}@{threshold}: a threshold on the teacher's probability needs a pool mode")

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    from saliency_distill.data.pool import POOL
    from saliency_distill.experiment import attribute_stage, prepare_stage, save_resolved, student_stage, teach_stage
    from saliency_distill.reporting import read_correctness

    modes = args.modes.split(",")
    bases = list(dict.fromkeys(parse_mode(m)[0] for m in modes))
    cfg = configure(args, ["standard", *bases], [0])
    save_resolved(cfg)
    times, every = earlier_times(args)  # added to: the section's wall time over the invocations
    splits = timed(times, "prepare", lambda: prepare_stage(cfg))
    pool = splits[POOL]
    pools = sorted({min(p, len(pool)) for p in args.pools})
    teacher = timed(times, "teacher", lambda: teach_stage(cfg))
    attributed = {}
    if any(MODES[m].needs_rationales for m in bases):
        attributed = timed(times, "attribution", lambda: attribute_stage(cfg))
    labels = len(splits["train"])
    result: dict[str, Any] = {"dataset": args.dataset, "labels": labels, "pool_available": len(pool),
                              "test": len(splits["test"]), "validation": len(splits["validation"]),
                              "teacher": teacher_figures(teacher, cfg), "points": [], "times": times,
                              "times_cumulative": every,
                              "attribution_examples_per_s": {s: a.get("examples_per_s") for s, a in attributed.items()}}

    # P = 0: standard on the labels alone, the baseline of every comparison
    zero: dict[str, Any] = {"pool": 0, "rows": {}, "vs_standard": {}}
    result["points"].append(zero)
    first = seeds_for(labels, args)
    done = finished(Path(cfg.run_dir), "standard", first)
    for n in range(max(1, done), len(first) + 1):  # written after each seed: a session may end mid-mode
        base = timed(times, "students", student_stage, configure(args, ["standard"], first[:n]))
        zero["rows"]["standard"] = summarise(base)
        write(args, result)
    baseline = read_correctness(cfg.run_dir, base)["standard"]
    for size in [p for p in pools if p > 0]:
        point: dict[str, Any] = {"pool": size, "rows": {}, "vs_standard": {}}
        result["points"].append(point)
        seeds = seeds_for(labels + size, args)
        correctness: dict[str, Any] = {"standard": baseline}
        # seed by seed across the modes, the results written after each: a session that ends
        # mid-study leaves every mode with about as many seeds, paired with each other
        for n in range(1, len(seeds) + 1):  # the seeds before n are reused from their run folders
            for mode in [*modes, *([] if args.no_reference else ["gold-reference"])]:
                folder, trained, data, extra = student_data(cfg, mode, size, splits, pool)
                upto = max(n, finished(folder, trained, seeds))  # a mode run before shows all its seeds
                records = timed(times, "students", student_stage, configure(args, [trained], seeds[:upto], extra),
                                folder=folder, **data)
                correctness[mode] = read_correctness(folder, records)[trained]
                point["rows"][mode] = summarise(records)
                point["vs_standard"][mode] = compare(correctness, mode, "standard")
                point["vs_reference"] = {m: compare(correctness, m, "gold-reference") for m in modes}
                point["pairs"] = [{"mode": a, "baseline": b, **c} for a, b in pairs(modes)
                                  if (c := compare(correctness, a, b))]
                write(args, result)


def finished(folder: Path, mode: str, seeds: list[int]) -> int:
    """How many of ``seeds``, from the first, have a finished run of ``mode`` in ``folder``."""
    done = 0
    while done < len(seeds) and (folder / "students" / mode / f"seed{seeds[done]}" / "result.json").is_file():
        done += 1
    return done


def pairs(modes: list[str]) -> list[tuple[str, str]]:
    """:data:`PAIRS`, each thresholded mode against the same mode on the whole pool, and each against its
    random control (``m@t`` against ``m@t-random``)."""
    out = list(PAIRS)
    for spec in modes:
        mode, threshold = parse_mode(spec)
        if threshold and threshold.endswith(RANDOM):
            out.append((spec.removesuffix(RANDOM), spec))
        elif threshold:
            out.append((spec, mode))
    return out


def student_data(cfg: Any, spec: str, size: int, splits: dict[str, list[Any]],
                 pool: list[Any]) -> tuple[Path, str, dict[str, Any], tuple[str, ...]]:
    """(run folder, mode trained, student_stage's data keywords, config overrides) of the mode
    ``spec`` at pool ``size``; the gold reference is ``standard`` on the same inputs with their gold labels."""
    if spec == "gold-reference":
        ref_train = gold_twins(cfg, [ex.id for ex in splits["train"]] + [ex.id for ex in pool[:size]])
        return Path(cfg.run_dir) / f"reference{size}", "standard", {"train": ref_train,
                                                                     "identity": {"reference": size}}, ()
    mode, threshold = parse_mode(spec)
    folder = Path(cfg.run_dir) / (f"pool{size}-min-{threshold}" if threshold else f"pool{size}")
    extra = () if not threshold else (f"student.pool_min_confidence={threshold.removesuffix(RANDOM)}",
                                      *(["student.pool_keep=random"] if threshold.endswith(RANDOM) else []))
    return folder, mode, {"pool": pool[:size], "identity": {"pool_study": size}}, extra


def teacher_figures(metrics: dict[str, Any], cfg: Any) -> dict[str, Any]:
    quality = metrics.get("quality", {})
    return {"model": metrics.get("model"), "prompt": metrics.get("prompt"), "calibration": cfg.teacher.calibration,
            "accuracy": {s: a.get("accuracy") for s, a in metrics.get("accuracy", {}).items()},
            "pool_answers": quality.get("pool", {}).get("answer_distribution"),
            "seconds_per_example": {s: q.get("seconds_per_example") for s, q in quality.items()}}


def write(args: argparse.Namespace, result: dict[str, Any], render: Any = None) -> None:
    """``args.out``.json and .md with ``result`` as the dataset's section (``render``: the Markdown
    of the whole payload, this script's :func:`markdown` by default)."""
    out, store = Path(args.out), results_store(args)
    payload = json.loads(store.read_text()) if store.is_file() else {"datasets": {}}
    payload["datasets"][args.section] = {**result, "costs": folder_costs(Path(args.run_dir)), "machine": machine(),
                                         "command": args.command}
    write_results(out, payload, (render or markdown)(payload))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def diff_text(c: dict[str, Any] | None) -> str:
    """``+2.1 [+0.5, +3.7] / [-1.0, +5.2] / t [-4.0, +8.1]``: a :func:`compare` entry in points."""
    if not c:
        return "-"
    t = f" / t [{c['seed_t'][0]:+.1f}, {c['seed_t'][1]:+.1f}]" if c.get("seed_t") else ""
    return (f"{c['difference']:+.1f} [{c['examples'][0]:+.1f}, {c['examples'][1]:+.1f}] / "
            f"[{c['two_level'][0]:+.1f}, {c['two_level'][1]:+.1f}]{t}")


def markdown(payload: dict[str, Any]) -> str:
    lines = ["# Few labels, many inputs: the teacher over an unlabeled pool", "",
             "Produced by `benchmarks/pool_study.py` (its docstring says how). Accuracy in % on the test split, mean "
             "± sd over seeds (min-max); differences in points against `standard` on the labels alone, paired by "
             "seed and example, with the example-level 95% interval / the two-level one that resamples seeds too / "
             "the t interval over the per-seed differences (the conservative reading with few seeds). A mode "
             "`m@t` is `m` trained only on the pool inputs whose teacher probability is at least t "
             "(`student.pool_min_confidence`; auto: chosen on validation), the threshold used in brackets; "
             "`m@t-random`, its control, trains on as many pool inputs drawn at random (`student.pool_keep`).",
             ""]
    for name, d in payload["datasets"].items():
        t = d["teacher"]
        prompt = t["prompt"] or {}
        asked = f"{prompt.get('format')}, {prompt.get('shots')}-shot" + (", chat" if prompt.get("chat") else "")
        lines += [f"## {name}", "", f"`{d['command']}` ({d['machine']['date']}, {d['machine']['machine']})", "",
                  f"{d['labels']} labels; pool prepared {d['pool_available']} inputs (`task.max_pool`); validation {d['validation']}, "
                  f"test {d['test']}. Teacher {t['model']} ({asked}, calibration {t['calibration']}): test "
                  f"{_pct(t['accuracy'].get('test'))}%, validation {_pct(t['accuracy'].get('validation'))}%; its "
                  f"answers over the pool: {t['pool_answers']}.", "",
                  "| pool | mode | seeds | accuracy | min-max | training rows | vs standard (examples / two-level / seed t) |",
                  "|---:|---|---:|---|---|---:|---|"]
        if t["accuracy"].get("test") is not None:  # the teacher itself, the ceiling the pool students learn from
            lines.append(f"| - | teacher ({t['model']}) | - | {_pct(t['accuracy']['test'])} | - | - | - |")
        for point in d["points"]:
            for mode, row in point["rows"].items():
                shown = shown_mode(mode, row)
                lines.append(f"| {point['pool']} | {shown} | {row['seeds']} | {row['mean']:.1f} ± {row['sd']:.1f} | "
                             f"{row['min']:.1f}-{row['max']:.1f} | {row['rows']} | "
                             f"{diff_text(point['vs_standard'].get(mode))} |")
        lines += ["", *recovery_lines(d), "", *cost_lines(d), ""]
    return "\n".join(lines)


def shown_mode(mode: str, row: dict[str, Any]) -> str:
    if not row.get("min_confidence"):
        return mode
    if row.get("keep") == "random":
        return f"{mode} (as many as p >= {row['min_confidence']:.2f} keeps, at random)"
    return f"{mode} (p >= {row['min_confidence']:.2f})"


def folder_costs(run_dir: Path) -> dict[str, Any]:
    """What the work in ``run_dir`` cost, read from what its stages recorded: the students' training
    and evaluation seconds over every invocation (evaluation where recorded), and the teacher's seconds
    over the questions it answered in the invocation that finished its stage (not those taken from
    other runs, nor those of a killed invocation before it; None where a teacher run predates the
    per-split count)."""
    costs: dict[str, Any] = {"teacher_seconds": None, "teacher_questions": None, "teacher_reused": None}
    metrics = run_dir / "teacher" / "metrics.json"
    if metrics.is_file():
        teacher = json.loads(metrics.read_text())
        quality = teacher.get("quality", {}).values()
        reused = costs["teacher_reused"] = teacher.get("reused_answers", 0)
        counts = [q.get("computed", None if reused else q.get("n")) for q in quality]
        if None not in counts:
            costs["teacher_questions"] = sum(counts)
            costs["teacher_seconds"] = sum((q.get("seconds_per_example") or 0) * n for q, n in zip(quality, counts))
    records = [json.loads(p.read_text()) for p in sorted(run_dir.glob("**/students/*/seed*/result.json"))]
    timed_eval = [r["eval_seconds"] for r in records if r.get("eval_seconds") is not None]
    return {**costs, "students": len(records), "train_seconds": sum(r.get("train_seconds") or 0 for r in records),
            "evaluated": len(timed_eval), "eval_seconds": sum(timed_eval)}


def cost_lines(d: dict[str, Any]) -> list[str]:
    """Wall time per stage, and the teacher's and attribution's cost per 1,000 pool inputs."""
    teacher = (d["teacher"]["seconds_per_example"] or {}).get("pool")
    rate = (d.get("attribution_examples_per_s") or {}).get("pool")
    per_1000 = [f"teacher answers {teacher * 1000 / 60:.0f} min" if teacher else None,
                f"attribution {1000 / rate / 60:.0f} min" if rate else None]
    over = ("over every invocation" if d.get("times_cumulative") else
            "over the invocations since these were summed, not those before" if "times_cumulative" in d
            else "this invocation")
    lines = [f"Wall time (s) per stage, {over} (finished work is reused, not timed again): " + ", ".join(
        f"{k} {v:.0f}" for k, v in d["times"].items()) + "."]
    if c := d.get("costs"):  # read from the run folder (the students: every invocation)
        asked = ("teacher: not recorded" if c["teacher_seconds"] is None else
                 f"teacher {c['teacher_seconds']:.0f} s for the {c['teacher_questions']} questions its last "
                 "invocation answered")
        lines.append(f"Compute in the run folder: {asked} ({c['teacher_reused']} answers taken from "
                     f"other runs); {c['students']} students, training {c['train_seconds']:.0f} s, evaluation "
                     + (f"{c['eval_seconds']:.0f} s ({c['evaluated']} of them timed it)." if c["evaluated"]
                        else "not recorded (these students predate the record)."))
    return [*lines, "Per 1,000 pool inputs: " + (", ".join(p for p in per_1000 if p) or "not measured (reused)") + "."]


def recovery_lines(d: dict[str, Any]) -> list[str]:
    """Recovery (best pool student - standard) / (gold reference - standard), and saliency on top.
    Only modes with as many seeds as the reference compete for it: a mode still catching up is
    paired with standard on fewer seeds, so its difference is not comparable with the reference's."""
    out = []
    for point in d["points"][1:]:
        gold = point["vs_standard"].get("gold-reference") or {}
        ref = gold.get("difference")
        full = {m: c for m, c in point["vs_standard"].items()
                if c and m != "gold-reference" and (not gold or c["seeds"] >= gold["seeds"])}
        if full:
            best = max(full, key=lambda m: full[m]["difference"])
            diff = full[best]["difference"]
            ratio = f"{diff / ref:.2f}" if ref else "-"
            gold_text = "-" if ref is None else f"{ref:+.1f} ({_seeds(gold['seeds'])})"
            out.append(f"- pool {point['pool']}: best pool student {best} {diff:+.1f} points "
                       f"({_seeds(full[best]['seeds'])}); gold reference {gold_text}; recovery {ratio}.")
        behind = [f"{m} ({_seeds(c['seeds'])})" for m, c in point["vs_standard"].items()
                  if c and m != "gold-reference" and m not in full]
        if behind:
            out.append(f"- pool {point['pool']}: not yet in the recovery (fewer seeds than the reference): "
                       f"{', '.join(behind)}.")
        for m, c in (point.get("vs_reference") or {}).items():  # teacher labels against as many gold ones
            if c:
                out.append(f"- pool {point['pool']}: {m} vs gold-reference: {diff_text(c)}.")
        for c in point.get("pairs") or []:
            out.append(f"- pool {point['pool']}: {c['mode']} vs {c['baseline']}: {diff_text(c)}.")
    return out


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


if __name__ == "__main__":
    main()
