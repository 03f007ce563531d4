"""The model card (``README.md``) of an exported student: what it is, how to prompt it, how it was
made and how well it does, from what the run folder already holds.

A student's card must say what the folder alone cannot: the prompt it was trained on (its
record), the teacher and rationales that taught it, and results that a reader can trust. The
numbers are read, never recomputed: the per-mode table from ``report/results.md``, the paired
bootstrap from ``report/significance.json``, the teacher's accuracy from ``teacher/metrics.json``.
A file that is missing leaves its lines out, and the card says so where it matters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..data import get_task
from ..models import EMBEDDED_MODELS
from ..run_dir import RunDir
from .significance import significance_sentence

MODE_TEXT = {
    "standard": "fine-tuned on the gold labels alone (standard fine-tuning, the baseline)",
    "teacher-label": "fine-tuned on the teacher's answers (sequence-level distillation)",
    "saliency": "trained multi-task on the gold label and on the words the teacher's saliency ranked highest "
                "(saliency rationales; Ballout et al., NLDB 2024)",
    "llm-rationale": "trained multi-task on the gold label and on the dataset's LLM-written rationale "
                     "(Distilling Step-by-Step)",
    "random-words": "trained multi-task on the gold label and on k random content words (a control)",
    "human-rationale": "trained multi-task on the gold label and on the dataset's human explanation",
    "soft-label": "fine-tuned on the gold label and on the teacher's distribution over the options",
    "pool-label": "fine-tuned on the gold labels and on the teacher's answers for a pool of inputs without labels",
    "pool-soft": "fine-tuned on the gold labels and on the teacher's answers and option distributions for a pool "
                 "of inputs without labels",
    "pool-saliency": "trained multi-task on the gold labels plus the teacher's answers for a pool of inputs without "
                     "labels, and on the words the teacher's saliency ranked highest",
    "pool-random-words": "trained multi-task on the gold labels plus the teacher's answers for a pool of inputs "
                         "without labels, and on k random content words (a control)",
    "saliency-after": "trained on the gold label and, after it in the same sequence, on the words the teacher's "
                      "saliency ranked highest",
    "random-words-after": "trained on the gold label and, after it in the same sequence, on k random content "
                          "words (a control)",
    "saliency-consistency": "trained on the gold label and to keep its answer distribution when the words the "
                            "teacher's saliency ranked lowest are dropped from the input",
    "random-consistency": "trained on the gold label and to keep its answer distribution when words drawn at "
                          "random are dropped from the input (a control)",
}
POOLED = " (gold labels plus the teacher's answers for a pool of inputs without labels)"
MODE_TEXT |= {f"pool-{m}": MODE_TEXT[m] + POOLED for m in ("saliency-after", "random-words-after",
                                                          "saliency-consistency", "random-consistency")}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def model_info(name: str | Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(Hugging Face hub id, licence) of a model name as the project knows it (a model config's
    name: records of version 1 kept the teacher's whole config)."""
    name = name.get("name") if isinstance(name, Mapping) else name
    if not name:
        return None, None
    if name in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[name].hub_id, EMBEDDED_MODELS[name].licence
    parts = name.split("/")
    is_hub = len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not Path(name).exists()
    return (name if is_hub else None), None


def _task_info(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(hub dataset id, licence) of the student's task."""
    task_cfg = record["task"].get("config") or {}
    name = record["task"]["name"]
    task = get_task(name)
    hub = task.hub_dataset
    if name == "hf" and task_cfg.get("path"):
        hub = model_info(str(task_cfg["path"]))[0]
    return hub, task.licence


def front_matter(record: Mapping[str, Any]) -> dict[str, Any]:
    """The card's YAML header (the hub reads it): library, base model, licence, tags, datasets."""
    base_hub, base_licence = model_info(record["model"]["base"])
    dataset, _ = _task_info(record)
    meta: dict[str, Any] = {"library_name": "transformers"}
    if base_hub:
        meta["base_model"] = base_hub
    if base_licence:
        meta["license"] = base_licence.lower()
    meta["pipeline_tag"] = "text2text-generation" if record["model"]["kind"] == "seq2seq" else "text-generation"
    meta["tags"] = ["saliency-distill", "knowledge-distillation", "rationale-distillation",
                    f"mode-{record['mode']}", f"task-{record['task']['name']}"]
    if dataset:
        meta["datasets"] = [dataset]
    return meta


def _how_chosen(record: Mapping[str, Any], tune: Any) -> str:
    """Whether the rationale settings and alpha that this mode uses were tuned on validation
    (``report/tune.json`` chose these very values), left at the defaults, or set by hand."""
    from ..attribution import AttributionConfig
    from ..rationale import RationaleConfig
    from ..student.stage import StudentConfig

    attribution = record.get("attribution") or {}
    values: dict[str, Any] = {"alpha": record.get("alpha")}
    if attribution:
        values.update(method=attribution.get("method"), target=attribution.get("target"), k=attribution.get("k"))
    elif record.get("random_words_k") is not None:
        values["k"] = record["random_words_k"]
    chosen = tune.get("chosen") if isinstance(tune, Mapping) else None
    if attribution and isinstance(chosen, Mapping) and all(chosen.get(k) == v for k, v in values.items()):
        return "tuned on the validation split by `saliency-distill tune` (the run's report/tune.md)"
    defaults = {"method": AttributionConfig().method, "target": AttributionConfig().target,
                "k": RationaleConfig().k, "alpha": StudentConfig().alpha}
    if all(v == defaults[k] for k, v in values.items()):
        return "the defaults, not tuned on validation"
    return "set in the run's config (not tuned on validation by `saliency-distill tune`)"


def _results_table(report: Path) -> list[str]:
    """The table section of ``results.md`` (table and teacher line, without the plot)."""
    try:
        lines = (report / "results.md").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    if "## Results" not in lines:
        return []
    out = []
    for line in lines[lines.index("## Results") + 1:]:
        if line.startswith("## "):
            break
        if not line.startswith("!["):
            out.append(line)
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def _significance(report: Path) -> list[str]:
    entries = _json(report / "significance.json")
    if not isinstance(entries, list):
        return ["No paired bootstrap in this run's report (report/significance.json is missing)."]
    lines = [f"- {significance_sentence(e)}" for e in entries if isinstance(e, Mapping) and e.get("baseline") ==
             "standard"]
    return lines or ["No mode was compared with standard in this run (standard fine-tuning did not run)."]


def _teacher_lines(record: Mapping[str, Any], metrics: Any) -> list[str]:
    if not record.get("teacher"):
        return [f"- Teacher: none; mode {record['mode']} learns from the data alone."]
    t = record["teacher"]
    name = t.get("model")
    name = name.get("name") if isinstance(name, Mapping) else name  # records of version 1 kept the whole config
    hub, _ = model_info(name)
    who = f"`{name}`" + (f" ({hub})" if hub and hub != name else "")
    asked = (f"format {t.get('format')}, {t.get('shots')} shots" + (", chat template" if t.get("chat") else "")
             + f", {'fine-tuned on the train split' if t.get('finetune') else 'not fine-tuned'}")
    lines = [f"- Teacher: {who}, asked with {asked}."]
    acc = (metrics or {}).get("accuracy") if isinstance(metrics, Mapping) else None
    if isinstance(acc, Mapping) and acc:
        parts = [f"{split} {100 * a['accuracy']:.1f}% (n = {a.get('n')})" for split, a in acc.items()
                 if isinstance(a, Mapping) and a.get("accuracy") is not None]
        lines.append("- Teacher accuracy (teacher/metrics.json): " + ", ".join(parts) + ".")
    else:
        lines.append("- Teacher accuracy: not in this run folder (teacher/metrics.json is missing).")
    return lines


def _rationale_lines(record: Mapping[str, Any], tune: Any) -> list[str]:
    lines = []
    if record.get("attribution"):
        a = record["attribution"]
        lines.append(f"- Rationales: attribution method `{a.get('method')}` on the teacher's "
                     f"{'answer' if a.get('target') == 'teacher' else 'gold answer'}, the top k = {a.get('k'):g} "
                     "content words of each training example.")
    if record.get("random_words_k") is not None:
        lines.append(f"- Rationales: k = {record['random_words_k']:g} content words drawn at random (a control).")
    if record.get("alpha") is not None:
        lines.append(f"- Loss: alpha * L_predict + (1 - alpha) * L_explain with alpha = {record['alpha']}.")
    if record.get("attribution") or record.get("alpha") is not None:
        what = "method, target, k and alpha" if record.get("attribution") else "k and alpha"
        lines.append(f"- How {what} were chosen: {_how_chosen(record, tune)}.")
    return lines


def _licence_lines(record: Mapping[str, Any]) -> list[str]:
    base_hub, base_licence = model_info(record["model"]["base"])
    _, data_licence = _task_info(record)
    lines = [f"- Base model `{record['model']['base']}`" + (f" ({base_hub})" if base_hub else "")
             + f": {base_licence or 'licence not recorded by the project; see its source'}."]
    if record.get("teacher"):
        t_hub, t_licence = model_info(record["teacher"].get("model"))
        lines.append(f"- Teacher `{record['teacher'].get('model')}`" + (f" ({t_hub})" if t_hub else "")
                     + f": {t_licence or 'licence not recorded by the project'}.")
    lines.append(f"- Data ({record['task']['name']}): "
                 + (data_licence or "your own data; its licence is yours to state") + ".")
    if data_licence and "NC" in data_licence:
        lines.append("- The training data are licensed for non-commercial use; check whether their terms "
                     "apply to models trained on them before any other use.")
    return lines


def model_card(record: Mapping[str, Any], run_dir: str | Path, usage: Sequence[str],
               export_command: str | None = None) -> str:
    """The card's Markdown: YAML header, then Use, Training, Results, Reproduce and Licences.

    ``usage`` are the Use section's lines (prompt and code, from :mod:`.export`)."""
    run = RunDir(run_dir)
    mode, seed = record["mode"], record["seed"]
    manifest = _json(run.data / "manifest.json") or {}
    result = _json(run.student(mode, seed) / "result.json") or {}
    tune = _json(run.report / "tune.json")
    task = record["task"]
    sizes = manifest.get("sizes") or {"train": task.get("train_examples")}
    header = yaml.safe_dump(front_matter(record), sort_keys=False, allow_unicode=True)
    title = f"{task['name']} student: {record['model']['base']}, mode {mode}, seed {seed}"
    lines = ["---", header.rstrip("\n"), "---", "", f"# {title}", "",
             f"A `{record['model']['base']}` {MODE_TEXT.get(mode, f'trained in mode {mode}')}, on the "
             f"`{task['name']}` task, made with saliency-distill {record.get('saliency_distill_version', '')}. "
             "It answers one question per prompt; it never needs the teacher or a rationale at inference.", "",
             "## Use", "", *usage, "",
             "## Training", "",
             f"- Task: `{task['name']}`, {task['answer']} answers; data sizes: "
             + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ".",
             *([f"- Seen in training: {task.get('train_examples')} gold labels and {task['pool_inputs']} pool inputs "
                "labelled by the teacher (their own labels, if any, were never read)."] if task.get("pool_inputs")
               else []),
             *_teacher_lines(record, _json(run.teacher_metrics)),
             *_rationale_lines(record, tune),
             f"- Student: `{record['model']['base']}`, seed {seed}, {record['trained'].get('steps')} optimizer steps"
             + (f", weights of validation step {record['trained']['best_validation_step']}"
                if record["trained"].get("best_validation_step") else "") + ".", ""]
    lines += ["## Results", ""]
    if result.get("accuracy") is not None:
        ranked = f", ranked-choice accuracy {100 * result['ranked_accuracy']:.2f}%" \
            if result.get("ranked_accuracy") is not None else ""
        lines += [f"This student: test accuracy {100 * result['accuracy']:.2f}%{ranked} on {result.get('n')} "
                  "examples.", ""]
    table = _results_table(run.report)
    lines += ["Every mode of the run (mean ± std over seeds, from report/results.md):", "", *table, ""] if table \
        else ["The run has no report/results.md.", ""]
    lines += ["Paired bootstrap against standard fine-tuning (95% intervals over test examples, from "
              "report/significance.json):", "", *_significance(run.report), ""]
    lines += _reproduce(record, run, export_command)
    lines += ["## Licences", "", *_licence_lines(record), ""]
    return "\n".join(lines)


def _reproduce(record: Mapping[str, Any], run: RunDir, export_command: str | None) -> list[str]:
    first = ""
    try:
        first = run.config.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        pass
    found = first.rsplit("hash ", 1)[-1].strip() if "hash " in first else None
    cmd = (f"saliency-distill train run_config.yaml student.modes=[{record['mode']}] "
           f"student.seeds=[{record['seed']}] student.keep_models=true")
    lines = ["## Reproduce", "", "The run's resolved config is `run_config.yaml` in this folder. This student:", "",
             "```bash", cmd, "```", ""]
    if found and record.get("run_config_hash") and found != record["run_config_hash"]:
        lines += [f"Note: the run's config (hash {found}) was saved by a later command than the one that trained "
                  f"this student (hash {record['run_config_hash']}); the student's own settings are in "
                  "`saliency_distill.json`.", ""]
    if export_command:
        lines += ["This folder was written by:", "", "```bash", export_command, "```", ""]
    return lines

