"""The experiment: one config naming task, teacher, attribution and student, and the stages.

Each stage reads and writes files in ``run_dir`` so it can be re-run alone; later stages reuse
what earlier ones left (prepared data, the fine-tuned teacher, its answers, the rationales).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .analysis.config import AnalysisConfig
from .attribution import AttributionConfig
from .config import config_hash, field, to_dict
from .data import Example, TaskConfig, get_task, prepare
from .data.pool import POOL
from .distributed import barrier, is_distributed, is_main, main_first, rank, world_size
from .errors import ConfigError
from .io import atomic_open, write_json
from .models import ModelConfig, load_model, release
from .models.loading import check_name
from .rationale import RationaleConfig
from .run_dir import RunDir, announce_reuse, mark_made
from .student.stage import StudentConfig
from .teacher import TeacherConfig
from .teacher.prompt import check_asking

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentConfig:
    run_dir: str = field("runs/demo", "folder for every stage's inputs and outputs")
    task: TaskConfig = field(TaskConfig(), "the task and its data")
    teacher: TeacherConfig = field(TeacherConfig(), "the teacher, its fine-tuning and answering")
    attribution: AttributionConfig = field(AttributionConfig(), "how the teacher's answer is attributed")
    rationale: RationaleConfig = field(RationaleConfig(), "how words are chosen as the rationale")
    analysis: AnalysisConfig = field(AnalysisConfig(), "the analyze stage (faithfulness with the teacher: opt-in)")
    student: StudentConfig = field(StudentConfig(), "the student, its training modes, seeds and evaluation")
    preview: int = field(16, "test examples answered zero-shot by each model in the preview stage")
    progress: bool = field(True, "show progress bars")

    def __post_init__(self) -> None:
        if self.preview < 0:
            raise ConfigError(f"config key 'preview': {self.preview} must be >= 0")
        check_asking(get_task(self.task.name), self.task, self.teacher.format, self.teacher.calibration)
        # Every model name resolves before any stage runs (nothing is converted or downloaded here).
        check_name(self.teacher.model.name, "teacher.model.name")
        check_name(self.student.model.name, "student.model.name")
        from .student.modes import MODES

        pooled = [m for m in self.student.modes if MODES[m].pool]
        if pooled and self.task.labeled is None and self.task.unlabeled is None:
            raise ConfigError(f"config key 'student.modes': mode {pooled[0]} trains on a pool of inputs without "
                              "labels; set task.unlabeled (a file of inputs) or task.labeled (keep that many labels)")
        if self.task.max_train is not None and self.teacher.shots >= self.task.max_train:
            raise ConfigError(f"config key 'teacher.shots': {self.teacher.shots} demonstrations need more than "
                              f"task.max_train={self.task.max_train} train examples")


def save_resolved(cfg: ExperimentConfig, replace: bool = True) -> Path:
    """Write ``run_dir/config.yaml``. With ``replace=False`` only a fresh run folder gets one: a
    command records its config there up front only when that rewrites nothing, and replaces it
    once its stages have run (a stage that refuses another config's outputs leaves it alone)."""
    path = RunDir(cfg.run_dir).config
    if not replace and path.exists():
        return path
    with atomic_open(path) as f:
        f.write(f"# resolved config, hash {config_hash(cfg)}\n")
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False, allow_unicode=True)
    return path


def prepare_stage(cfg: ExperimentConfig, overwrite: bool = False) -> dict[str, list[Example]]:
    with main_first():  # the main process writes the splits; the others then read them
        return prepare(cfg.task, cfg.run_dir, overwrite=overwrite)


def teach_stage(cfg: ExperimentConfig, overwrite: bool = False) -> dict[str, Any]:
    """The teacher's answers; the pool's only where a mode learns from it (a later one adds them)."""
    from .student.modes import MODES
    from .teacher.answer import teach

    return teach(cfg.task, cfg.teacher, prepare_stage(cfg), cfg.run_dir, overwrite=overwrite, progress=cfg.progress,
                 pool=any(MODES[m].pool for m in cfg.student.modes))


def teacher_model(cfg: ExperimentConfig, metrics: dict[str, Any] | None) -> ModelConfig:
    """The teacher a stage is about to load (``teacher.remake.loadable_teacher``)."""
    from .teacher.remake import loadable_teacher

    return loadable_teacher(cfg.task, cfg.teacher, prepare_stage(cfg), cfg.run_dir, metrics)


def open_stage_stores(cfg: ExperimentConfig, metrics: dict[str, Any] | None,
                      overwrite: bool = False) -> dict[str, Any]:
    """The attribute stage's rationale store per split (this process's shard under `accelerate launch`);
    ``metrics`` are the teacher stage's (None when the teacher neither answered nor was fine-tuned)."""
    from .rationale import open_store, shard_path, store_path

    # How the teacher was asked changes what is attributed, with or without its answers.
    header = {"teacher": cfg.teacher.model.name, "teacher_hash": (metrics or {}).get("config_hash"),
              "teacher_model": to_dict(cfg.teacher.model),
              "teacher_prompt": {"format": cfg.teacher.format, "shots": cfg.teacher.shots, "chat": cfg.teacher.chat},
              "method": cfg.attribution.method, "k": cfg.rationale.k, "target": cfg.attribution.target}

    def path(split: str) -> Path:
        return shard_path(cfg.run_dir, split, rank()) if is_distributed() else store_path(cfg.run_dir, split)

    return {split: open_store(path(split), header, cfg.task, attribution_of(cfg, split), cfg.rationale,
                              overwrite=overwrite) for split in attributed_splits(cfg)}


def attributed_splits(cfg: ExperimentConfig) -> list[str]:
    """``attribution.splits``, and the pool when a pool mode learns its saliency rationales."""
    from .student.modes import MODES

    pooled = any(MODES[m].pool and MODES[m].needs_rationales for m in cfg.student.modes)
    has_pool = cfg.task.labeled is not None or cfg.task.unlabeled is not None
    return [*cfg.attribution.splits, *([POOL] if pooled and has_pool and POOL not in cfg.attribution.splits else [])]


def attribution_of(cfg: ExperimentConfig, split: str) -> AttributionConfig:
    """The pool has no gold label: its rationales always explain the teacher's answer."""
    return replace(cfg.attribution, target="teacher") if split == POOL else cfg.attribution


def attribute_stage(cfg: ExperimentConfig, overwrite: bool = False) -> dict[str, Any]:
    """Rationales for ``cfg.attribution.splits`` from the (fine-tuned) teacher."""
    from .rationale import adopt_tune_rows, attribute_split, merge_stores, shard_path, store_path
    from .rationale.reuse import adopt_reused_rows, reusable_rationales
    from .teacher.answer import make_prompter, read_answers

    splits = prepare_stage(cfg)
    metrics = None
    if cfg.attribution.target == "teacher" or cfg.attribution.contrast or cfg.teacher.finetune \
            or POOL in attributed_splits(cfg):
        try:
            metrics = teach_stage(cfg)
        except ConfigError as e:  # the teacher changed: that stage's --overwrite, not this one's
            raise ConfigError(f"{e} (the teacher stage: run `saliency-distill teach` with --overwrite first)") from None
    stores = open_stage_stores(cfg, metrics, overwrite)
    adopt_tune_rows(stores, cfg.run_dir, splits, cfg.task, cfg.attribution, cfg.rationale)  # no attribution twice
    if cfg.attribution.reuse_rationales:  # rows of other runs, where prompt and target agree
        reused = reusable_rationales(cfg.attribution.reuse_rationales, to_dict(cfg.attribution), cfg.teacher.model,
                                     cfg.teacher.finetune)
        plain = make_prompter(cfg.task, replace(cfg.teacher, chat=False), splits["train"])
        for split, store in stores.items():
            answers = read_answers(cfg.run_dir, split) if RunDir(cfg.run_dir).answers(split).is_file() else None
            gold, given = attribution_of(cfg, split).target == "gold", (answers or {}).get
            targets = {ex.id: plain.target(ex, ex.label) if gold else given(ex.id, {}).get(
                "target", given(ex.id, {}).get("answer")) for ex in splits[split]}
            adopt_reused_rows(store, splits[split], {ex.id: plain.render(ex).text for ex in splits[split]}, targets,
                              reused, cfg.rationale, answers)
    if not is_distributed() and all(ex.id in stores[split] for split in stores for ex in splits[split]):
        # Every rationale is in the store: no teacher to load.
        announce_reuse(logger, "rationale stores", ", ".join(str(st.path) for st in stores.values()))
        return {split: {"path": str(store.path), "rows": len(store), "new": 0, "seconds": 0.0,
                        "examples_per_s": None, "config_hash": store.header["config_hash"]}
                for split, store in stores.items()}
    lm = load_model(teacher_model(cfg, metrics))
    prompter = make_prompter(cfg.task, cfg.teacher, splits["train"], lm.tokenizer)
    out: dict[str, Any] = {}
    for split, store in stores.items():
        # The teacher's answers are the target (target=teacher) or, when present, context for
        # the analysis (target=gold).
        have = RunDir(cfg.run_dir).answers(split).is_file()
        attribution = attribution_of(cfg, split)
        answers = read_answers(cfg.run_dir, split) if attribution.target == "teacher" or have else None
        examples = splits[split][rank()::world_size()]
        out[split] = attribute_split(lm, prompter, examples, answers, attribution, cfg.rationale,
                                     store, progress=cfg.progress and is_main())
        if is_distributed():
            barrier()
            if is_main():
                shards = [shard_path(cfg.run_dir, split, r) for r in range(world_size())]
                n = merge_stores(shards, store_path(cfg.run_dir, split), [ex.id for ex in splits[split]])
                out[split] = {**out[split], "path": str(store_path(cfg.run_dir, split)), "rows": n}
            barrier()
    release(lm)  # the teacher's memory is free before a student loads
    mark_made("rationale stores", ", ".join(str(st.path) for st in stores.values()))
    return out


def analyze_stage(cfg: ExperimentConfig) -> dict[str, Any]:
    """Overlap figures, faithfulness (opt-in) and an HTML page per attributed split, from the stores."""
    from .analysis import faithfulness_stage, summarise, write_html
    from .rationale import read_store, store_path

    splits = prepare_stage(cfg)
    out: dict[str, Any] = {}
    remake = (lambda: teacher_model(cfg, teach_stage(cfg))) if cfg.teacher.finetune else None  # faithfulness's
    if remake is not None and is_distributed() and cfg.analysis.faithfulness:
        remake()  # fine-tuning a lost teacher again runs on every process, before the main one goes on alone
    if not is_main():
        return out
    folder = RunDir(cfg.run_dir).analysis
    stores = {split: read_store(store_path(cfg.run_dir, split)) for split in cfg.attribution.splits}
    faith = faithfulness_stage(cfg.run_dir, stores, cfg.analysis, cfg.teacher.batch_size, cfg.progress,
                               before_load=remake)
    for split, (header, rows) in stores.items():
        summary = summarise(rows, {ex.id: ex for ex in splits[split]})
        summary["store"] = {k: header.get(k) for k in ("config_hash", "teacher", "method", "k", "target")}
        if split in faith:
            summary["faithfulness"] = faith[split]
        write_json(folder / f"{split}.json", summary)
        title = (f"{cfg.task.name} {split}: {header.get('method')} rationales (k={header.get('k')}) "
                 f"of {header.get('teacher')}")
        write_html(folder / f"{split}.html", rows, title, summary=summary)
        out[split] = summary
    return out


def student_stage(cfg: ExperimentConfig, overwrite: bool = False, train: list[Example] | None = None,
                  folder: Path | None = None, identity: dict[str, Any] | None = None,
                  pool: list[Example] | None = None) -> list[dict[str, Any]]:
    """Train and evaluate every (mode, seed); finished runs are reused (``overwrite``: those made under another
    config are replaced instead of refused). ``train`` (a subset of the train split, trained in ``folder`` with
    ``identity`` added to each run's) is how the data-efficiency curve reuses the teacher and rationales of the
    whole split; ``pool`` (the start of the pool) is how the pool study does it for smaller pools."""
    from .rationale import read_store, store_path
    from .student.inputs import run_inputs
    from .student.modes import MODES
    from .student.pool import min_confidence, training_examples
    from .student.stage import run_provenance, train_and_evaluate
    from .teacher.answer import read_answers

    splits = {**prepare_stage(cfg), **({"train": train} if train is not None else {}),
              **({POOL: pool} if pool is not None else {})}
    modes = [MODES[m] for m in cfg.student.modes]
    pooled = [m for m in modes if m.pool]
    for mode in pooled:
        training_examples(mode.name, splits)  # no pool: say so before the teacher runs
    kd = cfg.student.logit_kd > 0  # every mode then learns the teacher's next-token distributions too
    teacher = teach_stage(cfg) if kd or any(m.needs_teacher for m in modes) else None
    kd_teacher = teacher_model(cfg, teacher) if kd else None
    answered = [*(["train"] if any(m.label == "teacher" or m.soft for m in modes) else []), *([POOL] if pooled else [])]
    answers = {i: row for split in answered for i, row in read_answers(cfg.run_dir, split).items()} or None
    stores = {}
    if any(m.needs_rationales for m in modes):
        if "train" not in cfg.attribution.splits:
            raise ConfigError("config key 'attribution.splits': the saliency mode needs rationales for 'train'")
        attribute_stage(cfg)
        stores = {split: read_store(store_path(cfg.run_dir, split)) for split in attributed_splits(cfg)
                  if split in ("train", POOL)}
    threshold = 0.0
    if pooled:
        auto = cfg.student.pool_min_confidence == "auto"
        threshold = min_confidence(cfg.student.pool_min_confidence,
                                   read_answers(cfg.run_dir, "validation") if auto else None, splits["validation"])
    # What else made each mode's training data: a changed teacher or store must not reuse old runs.
    teacher_hash = (teacher or {}).get("config_hash")
    records, quiet = [], replace(cfg.student.train, progress_bar=False)  # progress=false: no student bars either
    student = cfg.student if cfg.progress else replace(cfg.student, train=quiet)
    for mode in modes:
        for seed in cfg.student.seeds:
            explain, masked, made_by = run_inputs(mode, seed, cfg, splits, stores, identity, teacher_hash, kd)
            records.append(train_and_evaluate(
                cfg.task, student, mode.name, seed, splits, folder or cfg.run_dir,
                teacher_answers=answers, rationales=explain, identity=made_by, overwrite=overwrite,
                kd_teacher=kd_teacher, provenance=run_provenance(cfg), min_confidence=threshold, masked=masked,
            ))
            logger.info("%s seed %d: accuracy %.4f", mode.name, seed, records[-1]["accuracy"])
    return records


def report_stage(cfg: ExperimentConfig, records: list[dict[str, Any]]) -> Path:
    """The report folder: results, plot, teacher accuracy, paired bootstraps, analysis, config."""
    import json

    from .reporting import environment_info, read_correctness, reference_levels, write_report

    teacher = reference_levels(prepare_stage(cfg)["test"])  # chance and majority class (every process: a barrier)
    if not is_main():
        return RunDir(cfg.run_dir).report
    if (metrics_path := RunDir(cfg.run_dir).teacher_metrics).is_file():
        m = json.loads(metrics_path.read_text())
        test = m.get("accuracy", {}).get("test")
        teacher.update({"model": m.get("model"), "finetuned": m.get("finetuned"),
                        "accuracy": test["accuracy"] if test else None, "quality": m.get("quality")})
    analysis_path = RunDir(cfg.run_dir).analysis / "train.json"
    analysis = json.loads(analysis_path.read_text()) if analysis_path.is_file() else None
    rationales = "attribute" in needed_stages(cfg)
    title = (f"{cfg.task.name}: student {cfg.student.model.name}, teacher {cfg.teacher.model.name}"
             + (f", {cfg.attribution.method} k={cfg.rationale.k:g}" if rationales else ""))
    return write_report(RunDir(cfg.run_dir).report, records, config=to_dict(cfg), teacher=teacher or None,
                        analysis=analysis, environment=environment_info(), title=title,
                        correctness=read_correctness(cfg.run_dir, records), rationales=rationales)


STAGES = ("prepare", "teach", "attribute", "analyze", "students", "report")


def needed_stages(cfg: ExperimentConfig) -> list[str]:
    """The stages that ``cfg``'s training modes need, in pipeline order."""
    from .student.modes import MODES

    modes = [MODES[m] for m in cfg.student.modes]
    skip = set()
    if not any(m.needs_teacher for m in modes):
        skip.add("teach")
    if not any(m.needs_rationales for m in modes):
        skip |= {"attribute", "analyze"}
    return [stage for stage in STAGES if stage not in skip]


def run(cfg: ExperimentConfig, on_stage: Callable[[str, Any, float], None] | None = None,
        overwrite: bool = False) -> dict[str, Any]:
    """The whole pipeline, the only orchestration (the CLI's ``run`` and the benchmarks use it):
    prepare -> teach -> attribute -> analyze -> students (every mode and seed) -> report, skipping
    the stages no mode needs; ``on_stage(stage, result, seconds)`` after each. ``overwrite``: each
    stage replaces the outputs another config made instead of refusing them. Returns every stage's result by name."""
    results: dict[str, Any] = {}
    ow = {"overwrite": overwrite}
    stages: dict[str, Callable[[], Any]] = {
        "prepare": lambda: prepare_stage(cfg, **ow), "teach": lambda: teach_stage(cfg, **ow),
        "attribute": lambda: attribute_stage(cfg, **ow), "analyze": lambda: analyze_stage(cfg),
        "students": lambda: student_stage(cfg, **ow), "report": lambda: report_stage(cfg, results["students"])}
    for stage in needed_stages(cfg):
        start = time.perf_counter()
        results[stage] = result = stages[stage]()
        if on_stage is not None:
            on_stage(stage, result, time.perf_counter() - start)
    return results
