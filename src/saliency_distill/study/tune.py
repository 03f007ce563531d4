"""Choosing the attribution method, target, k and alpha on the validation split, never on test.

Two rounds, the cheap one first:

1. **Faithfulness** (teacher forward passes only). For every (method, target) the teacher's
   answers on the first ``validation_examples`` validation examples are attributed once; every k
   re-selects its words from the same scores. A candidate's *margin* is how much more faithful
   its rationales are than as many random content words, in nats, averaged over the examples:
   (comprehensiveness - random's) + (random's sufficiency drop - its own). The ``survivors``
   best go on.
2. **Students at a small budget.** Each survivor's rationales for a seeded subset of
   ``train_examples`` train examples, one student per alpha, evaluated on the validation split;
   plus standard fine-tuning on the same subset as the reference. The best validation accuracy
   wins (ties: the earlier candidate, i.e. the more faithful one, then the smaller alpha).
   Random words, saliency's control, take saliency's alpha. Every other mode of the run that
   alpha weighs (llm-rationale, human-rationale, soft-label) gets one student per alpha too and
   its own best alpha, so that no baseline is compared at an alpha tuned for saliency.
   The choices go to ``student.alpha_by_mode``; other modes keep ``student.alpha``.

The teacher is loaded once for both rounds' attributions; only the survivors' train examples are
attributed (at 800 train against 100 validation examples, that is most of the cost). Attributions live in
``<run_dir>/tune/<method>-<target>/`` (whose ``data`` and ``teacher`` link to the run's own, so
the teacher answers once), under the attribute stage's identity: the run's attribute stage copies
the chosen candidate's rows instead of attributing them again (``adopt_tune_rows``). Students live
in ``<run_dir>/tune/students/``; everything resumes. The
results go to ``<run_dir>/report/tune.md`` and ``tune.json``, and ``tuned.yaml`` is the config
with the chosen settings, ready for ``saliency-distill run``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..analysis import memoized, score_rows, summarise_faithfulness, teacher_scorer
from ..attribution.registry import ATTRIBUTION_METHODS
from ..config import build, config_hash, to_dict
from ..errors import ConfigError
from ..experiment import ExperimentConfig, open_stage_stores, prepare_stage, teach_stage, teacher_model
from ..io import atomic_open, write_json
from ..models import load_model, release
from ..rationale import RationaleConfig, attribute_split, read_store, reselect, reselect_row, store_path
from ..rationale.stage import copy_agreeing_rows
from ..run_dir import RunDir
from ..student.modes import MODES
from ..student.stage import StudentConfig, train_and_evaluate
from ..teacher.answer import make_prompter, read_answers
from .curve import nested_subsets

logger = logging.getLogger(__name__)
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class TuneSpace:
    """What the search tries, and its budget."""

    methods: tuple[str, ...] = ("input_x_gradient", "saliency", "attention")
    targets: tuple[str, ...] = ("teacher", "gold")
    ks: tuple[float, ...] = (3, 5, 10)
    alphas: tuple[float, ...] = (0.5, 0.7, 0.9, 0.95)  # word-bag targets still gained from 0.7 to 0.9
    survivors: int = 2
    validation_examples: int = 100  # attributed and scored for faithfulness
    train_examples: int = 800  # each budget student's train subset: at 160, e-SNLI students sat near chance
    seed: int = 0  # random-words baseline and the student seed

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in ATTRIBUTION_METHODS]
        if bad or not self.methods:
            raise ConfigError(f"tune methods {list(self.methods)}: choose from {', '.join(ATTRIBUTION_METHODS)}")
        if not self.targets or not set(self.targets) <= {"teacher", "gold"}:
            raise ConfigError(f"tune targets {list(self.targets)}: choose from teacher, gold")
        for k in self.ks:
            RationaleConfig(k=k)  # the same one-line error as rationale.k
        if not self.ks or not self.alphas or any(not 0 < a <= 1 for a in self.alphas):
            raise ConfigError(f"tune: give at least one k and alphas in (0, 1] (got {list(self.ks)}, "
                              f"{list(self.alphas)})")
        for key in ("survivors", "validation_examples", "train_examples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"tune {key}: {getattr(self, key)} must be >= 1")


def with_teacher_splits(cfg: ExperimentConfig, space: TuneSpace) -> ExperimentConfig:
    """The run's config with the teacher also answering train and validation when a target is the
    teacher's answer (the attributions need them); tuned.yaml keeps this, so ``run`` reuses them."""
    if "teacher" not in space.targets:
        return cfg
    splits = list(dict.fromkeys([*cfg.teacher.splits, "train", "validation"]))
    return replace(cfg, teacher=replace(cfg.teacher, splits=splits))


def _sub_run(cfg: ExperimentConfig, method: str, target: str, split: str) -> ExperimentConfig:
    folder = Path(cfg.run_dir) / "tune" / f"{method}-{target}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("data", "teacher"):  # the run's prepared data and teacher, not copies
        link = folder / name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(Path("..") / ".." / name, target_is_directory=True)
    return replace(cfg, run_dir=str(folder),
                   attribution=replace(cfg.attribution, method=method, target=target, splits=[split]))


def _margin(scored: Sequence[dict[str, Any]]) -> float | None:
    done = [r for r in scored if "skipped" not in r]
    if not done:
        return None
    return sum((r["comprehensiveness"] - r["comprehensiveness_random"]) + (r["sufficiency_random"] - r["sufficiency"])
               for r in done) / len(done)


def run_tune(cfg: ExperimentConfig, space: TuneSpace,
             on_step: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Both rounds; returns (and writes) the search and the chosen settings."""
    cfg = with_teacher_splits(cfg, space)
    splits = prepare_stage(cfg)
    validation = splits.get("validation") or []
    if not validation:
        raise ConfigError("tune needs a validation split (raise task.max_validation or task.validation_fraction)")
    scored_on = validation[: space.validation_examples]
    budget = nested_subsets(splits["train"], [min(1.0, space.train_examples / len(splits["train"]))], space.seed)
    train = next(iter(budget.values()))
    metrics = teach_stage(cfg)
    timing: dict[str, float] = {}
    started = time.perf_counter()
    faithful, survivors, store_rows = _faithfulness_round(cfg, space, metrics, scored_on, train, splits["train"],
                                                          on_step)
    timing["faithfulness_and_attribution_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    students = _student_round(cfg, space, survivors, store_rows, train, validation, on_step,
                              metrics.get("config_hash"))
    timing["students_s"] = round(time.perf_counter() - started, 1)
    tried = [s for s in students if s["mode"] == "saliency"]
    best = max(tried, key=lambda s: s["accuracy"]) if tried else None  # max keeps the first of equals
    out = {"space": to_dict(space), "validation_examples": len(scored_on), "train_examples": len(train),
           "faithfulness": faithful, "students": students, "chosen": best,
           "alpha_by_mode": _alphas(students, best, cfg.student.modes), "timing": timing}
    _write(cfg, out, best)
    return out


def _alpha_modes(cfg: ExperimentConfig, train: list[Any]) -> list[str]:
    """The run's other modes that alpha weighs: a dataset-written explain target (LLM, human) that
    some train example has, or soft labels (label loss against the match to the teacher's option
    scores). Each gets its own alpha, so that saliency is not compared with a baseline left untuned.
    The pool modes are not tuned here (the budget students train on labels only): pool-saliency and
    pool-random-words take saliency's alpha, pool-soft keeps its configured one."""
    out = []
    for mode in cfg.student.modes:
        explain = MODES[mode].explain
        if MODES[mode].pool:
            continue
        if explain in ("llm", "human") and any(getattr(ex, f"{explain}_rationale") for ex in train):
            out.append(mode)
        elif MODES[mode].soft:
            out.append(mode)
    return out


def _alphas(students: list[dict[str, Any]], best: dict[str, Any] | None, modes: Sequence[str] = ()) -> dict[str, float]:
    """The chosen alpha per mode: saliency's (random words, its control, gets the same) and the
    best of every other tuned mode (the first of equals)."""
    shared = ["saliency", "random-words", *(m for m in modes if MODES[m].explain in ("saliency", "random")
                                            and m not in ("saliency", "random-words"))]
    out = {m: best["alpha"] for m in shared} if best is not None else {}
    for mode in dict.fromkeys(s["mode"] for s in students if s["mode"] not in ("standard", "saliency")):
        out[mode] = max((s for s in students if s["mode"] == mode), key=lambda s: s["accuracy"])["alpha"]
    return out


def _faithfulness_round(cfg: ExperimentConfig, space: TuneSpace, metrics: dict[str, Any], scored_on: list[Any],
                        train: list[Any], full_train: list[Any], on_step: Callable[[str, dict[str, Any]], None] | None,
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[tuple[str, str], Rows]]:
    """Faithfulness of every (method, target, k) on validation, the survivors (the best margins),
    and the budget's train rationales of each survivor's (method, target), attributed while the
    teacher is still loaded. Only survivors attribute train: that is most of the round's cost
    (800 examples against 100). The teacher is loaded only if something is missing; k-shot
    demonstrations come from ``full_train``, as in the attribute stage."""
    state: dict[str, Any] = {}

    def teacher() -> dict[str, Any]:
        if not state:
            lm = load_model(teacher_model(cfg, metrics))
            state.update(lm=lm, prompter=make_prompter(cfg.task, cfg.teacher, full_train, lm.tokenizer),
                         scorer=memoized(teacher_scorer(lm, cfg.teacher.batch_size)))  # shared prompts once
        return state

    def rows_of(method: str, target: str, split: str, examples: list[Any]) -> list[dict[str, Any]]:
        # the attribute stage's store identity and row fields, so that `run` reuses these rows
        sub = _sub_run(cfg, method, target, split)
        store = open_stage_stores(sub, metrics if target == "teacher" or cfg.teacher.finetune else None)[split]
        if any(ex.id not in store for ex in examples):
            have = RunDir(cfg.run_dir).answers(split).is_file()
            answers = read_answers(cfg.run_dir, split) if target == "teacher" or have else None
            if target == "gold":  # where the teacher was right its answer is the gold target: same attribution
                twin = store_path(Path(cfg.run_dir) / "tune" / f"{method}-teacher", split)
                gold = {ex.id: teacher()["prompter"].target(ex, ex.label) for ex in examples}
                copy_agreeing_rows(store, twin, gold, cfg.task, sub.attribution, sub.rationale)
            attribute_split(teacher()["lm"], teacher()["prompter"], examples, answers, sub.attribution,
                            sub.rationale, store, progress=cfg.progress)
        wanted = {ex.id for ex in examples}
        return [r for r in read_store(store.path)[1] if r["id"] in wanted]

    out: list[dict[str, Any]] = []
    try:
        for method in space.methods:
            for target in space.targets:
                rows = rows_of(method, target, "validation", scored_on)
                for k in space.ks:
                    entry = _faithfulness(cfg, method, target, k, space, rows, lambda: teacher()["scorer"])
                    out.append(entry)
                    if on_step is not None:
                        on_step("faithfulness", entry)
        ranked = sorted((f for f in out if f["margin"] is not None), key=lambda f: -f["margin"])
        survivors = ranked[: space.survivors]
        train_rows = {(s["method"], s["target"]): rows_of(s["method"], s["target"], "train", train)
                      for s in survivors}
    finally:
        if state:
            release(state["lm"])
    return out, survivors, train_rows


def _faithfulness(cfg: ExperimentConfig, method: str, target: str, k: float, space: TuneSpace,
                  rows: list[dict[str, Any]], scorer: Callable[[], Any]) -> dict[str, Any]:
    """One candidate's figures, its words chosen again at ``k`` from the stored scores (the store
    holds them at ``rationale.k``); read back when already computed for the same rows."""
    rat_cfg = RationaleConfig(**{**to_dict(cfg.rationale), "k": k})
    rows = [reselect_row(r, rat_cfg) for r in rows]
    ident = {"rows": config_hash([[r["id"], r["words"]] for r in rows]), "method": method, "target": target,
             "k": k, "seed": space.seed, "rationale": to_dict(rat_cfg)}
    path = Path(cfg.run_dir) / "tune" / f"{method}-{target}" / f"faithfulness_k{k:g}.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("config_hash") == config_hash(ident):
            return saved["entry"]
    started = time.perf_counter()
    scored = score_rows(rows, scorer(), space.seed, rat_cfg)
    summary = summarise_faithfulness(scored)
    entry = {"method": method, "target": target, "k": k, "margin": _margin(scored), "n": summary["n"],
             "mean_words": round(sum(len(r["rationale_words"]) for r in rows) / max(1, len(rows)), 2),
             "comprehensiveness": summary["comprehensiveness"], "sufficiency": summary["sufficiency"],
             "seconds": round(time.perf_counter() - started, 1)}
    write_json(path, {"config_hash": config_hash(ident), "entry": entry})
    return entry


def _student_round(cfg: ExperimentConfig, space: TuneSpace, survivors: list[dict[str, Any]],
                   store_rows: dict[tuple[str, str], list[dict[str, Any]]], train: list[Any], validation: list[Any],
                   on_step: Callable[[str, dict[str, Any]], None] | None,
                   teacher_hash: str | None = None) -> list[dict[str, Any]]:
    """Budget students on validation: standard, every survivor x alpha, then every alpha of each
    other mode that alpha weighs (:func:`_alpha_modes`)."""
    splits = {"train": train, "validation": validation, "test": validation}  # test is never read here
    folder = Path(cfg.run_dir) / "tune" / "students"
    budget = {"train_ids": [ex.id for ex in train], "tune": True}
    runs: list[tuple[str, dict[str, Any] | None, float]] = [("standard", None, cfg.student.alpha)]
    runs += [("saliency", s, a) for s in survivors for a in space.alphas]
    runs += [(mode, None, a) for mode in _alpha_modes(cfg, train) for a in space.alphas]
    # the teacher's option scores, for soft labels (the teacher stage answered train)
    answers = read_answers(cfg.run_dir, "train") if any(MODES[m].soft for m, _, _ in runs) else None
    out = []
    for mode, cand, alpha in runs:
        student = build(StudentConfig, {**to_dict(cfg.student), "alpha": alpha, "alpha_by_mode": {},
                                        "seeds": [space.seed]})
        name = (mode if mode == "standard" else f"{mode}-a{alpha:g}") if cand is None else \
            f"{cand['method']}-{cand['target']}-k{cand['k']:g}-a{alpha:g}"
        rationales = None if cand is None else reselect(store_rows[(cand["method"], cand["target"])],
                                                        RationaleConfig(**{**to_dict(cfg.rationale), "k": cand["k"]}))
        ident = {**budget, **({} if cand is None else {k: cand[k] for k in ("method", "target", "k")})}
        if MODES[mode].needs_teacher:
            ident["teacher"] = teacher_hash
        rec = train_and_evaluate(cfg.task, student, mode, space.seed, splits, folder / name, rationales=rationales,
                                 identity=ident, teacher_answers=answers if MODES[mode].soft else None)
        entry = {"name": name, "mode": mode, "alpha": alpha, "accuracy": rec["accuracy"], "n": rec["n"],
                 "train_seconds": rec["train_seconds"], **({} if cand is None else
                                                           {k: cand[k] for k in ("method", "target", "k")})}
        out.append(entry)
        if on_step is not None:
            on_step("student", entry)
    return out


def _write(cfg: ExperimentConfig, out: dict[str, Any], best: dict[str, Any] | None) -> None:
    report = Path(cfg.run_dir) / "report"
    write_json(report / "tune.json", out)
    with atomic_open(report / "tune.md") as f:
        f.write(tune_table(out))
    if best is not None:
        tuned = replace(cfg, attribution=replace(cfg.attribution, method=best["method"], target=best["target"]),
                        rationale=replace(cfg.rationale, k=best["k"]),
                        student=replace(cfg.student, alpha_by_mode={**cfg.student.alpha_by_mode,
                                                                     **out["alpha_by_mode"]}))
        with atomic_open(report / "tuned.yaml") as f:
            f.write("# chosen on the validation split by `saliency-distill tune` (report/tune.md)\n")
            yaml.safe_dump(to_dict(tuned), f, sort_keys=False, allow_unicode=True)


def tune_table(out: dict[str, Any]) -> str:
    """Markdown of both rounds and the choice."""
    lines = ["# Tuning on the validation split", "",
             f"Faithfulness on {out['validation_examples']} validation examples (nats; margin = comprehensiveness "
             "gain + sufficiency gain over as many random words; higher is better), then students trained on "
             f"{out['train_examples']} train examples and scored on the validation split. The test split is not "
             "read.", "", "| method | target | k | comprehensiveness (random) | sufficiency drop (random) | margin "
             "| beats random (comp. / suff.) | s |", "|---|---|---:|---|---|---:|---|---:|"]
    for f in out["faithfulness"]:
        c, s = f["comprehensiveness"], f["sufficiency"]
        margin = "n/a" if f["margin"] is None else f"{f['margin']:.3f}"
        words = f" ({f['mean_words']:g} words)" if f.get("mean_words") is not None else ""
        lines.append(f"| {f['method']} | {f['target']} | {f['k']:g}{words} | {c['saliency']} ({c['random']}) | "
                     f"{s['saliency']} ({s['random']}) | {margin} | {c['saliency_beats_random']['percent']}% / "
                     f"{s['saliency_beats_random']['percent']}% | {f['seconds']} |")
    lines += ["", "| student | alpha | validation accuracy % | train s |", "|---|---:|---:|---:|"]
    for s in out["students"]:
        lines.append(f"| {s['name']} | {s['alpha']:g} | {100 * s['accuracy']:.1f} | {s['train_seconds']:.0f} |")
    best = out["chosen"]
    lines += ["", "Chosen: " + ("none (no candidate had rationale words)" if best is None else
                                f"attribution.method={best['method']} attribution.target={best['target']} "
                                f"rationale.k={best['k']:g} "
                                f"({100 * best['accuracy']:.1f}% on validation); student.alpha_by_mode="
                                + ", ".join(f"{m} {a:g}" for m, a in (out.get("alpha_by_mode") or {}).items())),
              f"Wall time of the last call, s (work already on disk is read, not redone): {out['timing']}", ""]
    return "\n".join(lines)
