"""The attribute stage: teacher token scores -> content words -> top-k rationale -> store."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..attribution import AttributionConfig, iter_attribute, iter_contrast
from ..config import config_hash, to_dict
from ..data import Example, TaskConfig
from ..errors import DataError
from ..models import LoadedModel
from ..run_dir import RunDir
from ..teacher.prompt import TeacherPrompter
from .extract import RationaleConfig, reselect_row, select
from .store import RationaleStore, read_store
from .words import word_scores

logger = logging.getLogger(__name__)


def store_path(run_dir: str | Path, split: str) -> Path:
    return RunDir(run_dir).rationales(split)


def shard_path(run_dir: str | Path, split: str, rank: int) -> Path:
    """One process's part of the store under `accelerate launch`."""
    return RunDir(run_dir).rationales(split, rank)


def open_store(
    path: Path,
    header: dict[str, Any],
    task_cfg: TaskConfig,
    attr_cfg: AttributionConfig,
    rat_cfg: RationaleConfig,
    overwrite: bool = False,
) -> RationaleStore:
    """The store at ``path`` for this configuration (checked before any model is loaded)."""
    full_header = {
        **header,
        "config_hash": _identity(header, task_cfg, attr_cfg, rat_cfg),
        "attribution": to_dict(attr_cfg),
        "rationale": to_dict(rat_cfg),
    }
    return RationaleStore(path, full_header, overwrite=overwrite)


def _identity(header: dict[str, Any], task_cfg: TaskConfig, attr_cfg: AttributionConfig,
              rat_cfg: RationaleConfig) -> str:
    # The batch size changes the speed, not the scores: it is not part of the identity.
    attribution = {k: v for k, v in to_dict(attr_cfg).items() if k not in ("batch_size", "splits")}
    return config_hash({**header, "attribution": attribution, "rationale": to_dict(rat_cfg), "task": to_dict(task_cfg)})


def adopt_tune_rows(stores: dict[str, RationaleStore], run_dir: str | Path, examples: dict[str, list[Example]],
                    task_cfg: TaskConfig, attr_cfg: AttributionConfig, rat_cfg: RationaleConfig) -> int:
    """Copy into ``stores`` the rows that ``tune`` attributed for this run's (method, target) under
    ``<run_dir>/tune/<method>-<target>/``, their words re-selected under ``rat_cfg`` (tune may have
    used another k): no attribution runs twice. Only a store made with the same teacher,
    attribution and task is read, only ``examples`` of each split are copied; returns how many."""
    copied = 0
    for split, store in stores.items():
        source = store_path(Path(run_dir) / "tune" / f"{attr_cfg.method}-{attr_cfg.target}", split)
        if not source.is_file():
            continue
        src_header, rows = read_store(source)
        src_rat = RationaleConfig(**src_header.get("rationale", {}))
        if not _made_as(src_header, store, task_cfg, attr_cfg, src_rat, k=src_rat.k):
            continue  # another teacher, prompt, method or task: its scores are not this run's
        wanted = {ex.id for ex in examples.get(split, [])}
        new = [reselect_row(r, rat_cfg) for r in rows if r["id"] in wanted and r["id"] not in store]
        store.append(new)
        copied += len(new)
    if copied:
        logger.info("reused %d rationale rows attributed by tune", copied)
    return copied


def copy_agreeing_rows(store: RationaleStore, twin: Path, gold_targets: dict[str, str], task_cfg: TaskConfig,
                       attr_cfg: AttributionConfig, rat_cfg: RationaleConfig) -> int:
    """Copy into a gold-target ``store`` the rows of its teacher-target ``twin`` (made under the
    same settings but the target) whose attributed target is the gold one, ``gold_targets`` giving
    it per example id: the same prompt and target, so the same scores. Returns how many."""
    if not twin.is_file():
        return 0
    header, rows = read_store(twin)
    as_teacher = replace(attr_cfg, target="teacher")
    if not _made_as(header, store, task_cfg, as_teacher, rat_cfg, target="teacher",
                    teacher_hash=header.get("teacher_hash")):
        return 0
    new = [{k: v for k, v in r.items() if k != "config_hash"} for r in rows
           if r["id"] in gold_targets and r["id"] not in store and r["target"] == gold_targets[r["id"]]]
    store.append(new)
    return len(new)


def _made_as(src_header: dict[str, Any], store: RationaleStore, task_cfg: TaskConfig, attr_cfg: AttributionConfig,
             rat_cfg: RationaleConfig, **changes: Any) -> bool:
    """Whether the store with ``src_header`` was made under ``store``'s settings with the header
    ``changes`` and ``attr_cfg`` / ``rat_cfg`` in place of the store's own (its identity hash agrees)."""
    base = {k: v for k, v in store.header.items() if k not in ("kind", "config_hash", "attribution", "rationale")}
    return src_header.get("config_hash") == _identity({**base, **changes}, task_cfg, attr_cfg, rat_cfg)


def rival(prompter: TeacherPrompter, example: Example, target: str,
          teacher_answers: dict[str, dict[str, Any]] | None) -> str:
    """The option other than ``target`` that the teacher scored highest (contrastive attribution)."""
    scores = (teacher_answers or {}).get(example.id, {}).get("logprobs")
    candidates = prompter.candidates(example) if example.choices else []
    if not isinstance(scores, list) or len(scores) != len(candidates) or target not in candidates:
        raise DataError(f"example {example.id}: attribution.contrast needs a choice task and the teacher's score of "
                        "every option (run `teach` first)")
    others = [i for i in range(len(candidates)) if candidates[i] != target]
    return candidates[max(others, key=lambda i: scores[i])]


def attribute_split(
    lm: LoadedModel,
    prompter: TeacherPrompter,
    examples: list[Example],
    teacher_answers: dict[str, dict[str, Any]] | None,
    attr_cfg: AttributionConfig,
    rat_cfg: RationaleConfig,
    store: RationaleStore,
    progress: bool = True,
) -> dict[str, Any]:
    """Append rationale rows for ``examples`` not yet in ``store``.

    The attributed quantity is log p(target | the teacher's prompt), the target being the
    teacher's answer as it gave it (an option's text or letter) or the gold answer in the same
    format; words come only from the example's own content spans.
    """
    path = store.path
    todo = [ex for ex in examples if ex.id not in store]
    prompts = [prompter.render(ex) for ex in todo]
    for ex, p in zip(todo, prompts):
        if not p.content_spans:
            raise DataError(f"example {ex.id}: the prompt has no content to attribute")
    if attr_cfg.target == "teacher" and teacher_answers is None:
        raise DataError("attribution.target=teacher needs the teacher's answers (run `teach` first)")
    if teacher_answers is not None:
        missing = [ex.id for ex in todo if ex.id not in teacher_answers]
        if missing:
            raise DataError(f"example {missing[0]}: no teacher answer (re-run `teach` for this split)")
    if attr_cfg.target == "teacher" and teacher_answers is not None:
        # A free-form teacher that gave no answer (no equation) has nothing to attribute: its row
        # has no words and an empty rationale, so its students train on the label alone.
        unanswered = [(ex, p) for ex, p in zip(todo, prompts) if teacher_answers[ex.id]["answer"] is None]
        store.append([{"id": ex.id, "teacher_answer": None, "gold": ex.label, "target": None,
                       "teacher_correct": False, "prompt": p.text, "words": [], "rationale_words": [],
                       "rationale": "", "logprob": None, "no_answer": True} for ex, p in unanswered])
        skip = {ex.id for ex, _ in unanswered}
        kept = [(ex, p) for ex, p in zip(todo, prompts) if ex.id not in skip]
        todo, prompts = [ex for ex, _ in kept], [p for _, p in kept]
    if attr_cfg.target == "teacher":
        # Rows written before answer formats existed have no "target": the answer was the text.
        answers = [teacher_answers[ex.id].get("target", teacher_answers[ex.id]["answer"])  # type: ignore[index]
                   for ex in todo]
    else:
        answers = [prompter.target(ex, ex.label) for ex in todo]
    by_id = {ex.id: (ex, p) for ex, p in zip(todo, prompts)}
    started = time.perf_counter()
    bar = tqdm(total=len(examples), initial=len(examples) - len(todo), unit="ex", desc=f"attribute {path.stem}",
               disable=not progress)
    pending: list[dict[str, Any]] = []
    texts, ids, spans = [p.text for p in prompts], [ex.id for ex in todo], [p.content_spans for p in prompts]
    if attr_cfg.contrast:  # log p(target) - log p(its strongest rival)
        rivals = [rival(prompter, ex, target, teacher_answers) for ex, target in zip(todo, answers)]
        scored = iter_contrast(lm, texts, answers, rivals, attr_cfg, ids, spans)
    else:
        scored = iter_attribute(lm, texts, answers, attr_cfg, ids, spans)
    for ts in scored:
        ex, prompt = by_id[ts.id]
        words = word_scores(prompt.text, prompt.content_spans, ts.offsets, ts.scores)
        chosen = select(words, rat_cfg)
        row = {
            "id": ex.id,
            "teacher_answer": teacher_answers[ex.id]["answer"] if teacher_answers else None,
            "gold": ex.label,
            "target": ts.answer,
            "teacher_correct": teacher_answers[ex.id]["correct"] if teacher_answers else None,
            "prompt": prompt.text,
            "words": [[w.text, round(w.score, 6), w.start, w.end] for w in words],
            "rationale_words": [w.text for w in chosen],
            "rationale": " ".join(w.text for w in chosen),
            "logprob": round(ts.logprob, 5),
        }
        if ts.completeness_gap is not None:
            row["completeness_gap"] = round(ts.completeness_gap, 5)
        pending.append(row)
        if len(pending) >= attr_cfg.batch_size:
            store.append(pending)
            bar.update(len(pending))
            pending = []
    store.append(pending)
    bar.update(len(pending))
    bar.close()
    seconds = time.perf_counter() - started
    return {"path": str(path), "rows": len(store), "new": len(todo), "seconds": round(seconds, 2),
            "examples_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
            "config_hash": store.header["config_hash"]}
