"""Export a kept student as a standalone Hugging Face folder: weights, tokenizer, prompt record,
model card and the run's config.

The folder loads with plain ``transformers`` (``AutoModelForCausalLM.from_pretrained``, no remote
code) and its ``saliency_distill.json`` says how to build the prompt the student was trained on,
so nothing of this package is needed to use it. Weights are copied as they were saved
(safetensors only: a pickled weight file is never copied). The folder is written under a
temporary name and renamed, so a failed export leaves nothing at ``output``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import load_prepared
from ..errors import ConfigError, DataError, ModelError
from ..io import atomic_dir, write_json
from ..run_dir import RunDir
from ..student.predict import run_student_folder
from ..student.record import RECORD_FILE, read_record, student_prompt_text
from ..training.checkpoints import RECORD as TRAINING_RECORD
from .card import model_card

logger = logging.getLogger(__name__)

PICKLED = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
CARD = "README.md"
RUN_CONFIG = "run_config.yaml"


def _first_test_example(run_dir: Path) -> Any:
    try:
        examples = load_prepared(run_dir, "test")
    except (DataError, OSError):
        return None
    return examples[0] if examples else None


def usage_lines(record: Mapping[str, Any], folder_name: str, example: Any = None) -> list[str]:
    """The card's Use section: the prompt format, one real prompt, and plain ``transformers`` code
    that builds the prompt from ``saliency_distill.json`` and answers greedily (and, for a causal
    choice student, scores the options as ``saliency-distill predict`` does)."""
    seq2seq = record["model"]["kind"] == "seq2seq"
    auto = "AutoModelForSeq2SeqLM" if seq2seq else "AutoModelForCausalLM"
    lines = ["The student reads this prompt (a `str.format` string: `prompt_template` in `saliency_distill.json`; "
             "`{choices}`, where the template has it, is the options, one per line as `(a) text`) and answers "
             "greedily; its answer is the first "
             "line of what it generates:", "", "```text", record["prompt_template"], "```", ""]
    if example is not None:
        lines += ["For example, the first test example of its run:", "", "```text",
                  student_prompt_text(record, example), "```", ""]
    fields = ", ".join(f'"{name}": "..."' for name in record["task"]["input_fields"]["content"])
    choice_task = record["task"]["answer"] == "choice"
    keep = "0]" if seq2seq else "0, inputs[\"input_ids\"].shape[1]:]"
    code = [
        "import json", "", f"from transformers import {auto}, AutoTokenizer", "",
        f'folder = "{folder_name}"  # this folder',
        'fmt = json.load(open(f"{folder}/saliency_distill.json"))',
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
        f"model = {auto}.from_pretrained(folder).eval()", "", "",
        "def prompt(fields, choices=()):",
        '    options = fmt["choice_separator"].join(fmt["choice_format"].format(letter=fmt["choice_letters"][i], '
        "choice=c)",
        "                                          for i, c in enumerate(choices))",
        '    return fmt["prompt_template"].format(**fields, choices=options)', "", "",
        "def answer(fields, choices=()):",
        '    inputs = tokenizer(prompt(fields, choices), return_tensors="pt")',
        '    out = model.generate(**inputs, max_new_tokens=fmt["max_new_tokens"], do_sample=False)',
        f"    text = tokenizer.decode(out[{keep}, skip_special_tokens=True)",
        '    return text.strip().split("\\n", 1)[0].strip()',
    ]
    if choice_task and not seq2seq:
        code += ["", "", "def option_logprobs(fields, choices):",
                 '    """Summed log p of each option after the prompt (the ranked choice is the highest)."""',
                 "    import torch", "",
                 '    ids = tokenizer(prompt(fields, choices))["input_ids"]',
                 "    out = []", "    for c in choices:",
                 '        opt = tokenizer(" " + c, add_special_tokens=False)["input_ids"]',
                 "        with torch.no_grad():",
                 "            logits = model(torch.tensor([ids + opt])).logits[0, len(ids) - 1:-1].float()",
                 "        out.append(torch.log_softmax(logits, -1)[range(len(opt)), opt].sum().item())",
                 "    return out"]
    labels = record["task"]["input_fields"].get("labels")
    choices = "" if not choice_task else (f", {json.dumps(labels)}" if labels else ', ["...", "..."]')
    code += ["", "", f"print(answer({{{fields}}}{choices}))"]
    return [*lines, "With plain `transformers` (no remote code):", "", "```python", *code, "```", "",
            "Or with this package: `saliency-distill predict --model <this folder> --input rows.jsonl "
            "--output predictions.jsonl`."]


def export_student(run_dir: str | Path, mode: str, seed: int, output: str | Path, overwrite: bool = False,
                   command: str | None = None) -> Path:
    """Write ``output``: the kept student of ``mode``/``seed`` in ``run_dir`` as a standalone
    Hugging Face folder with its model card. An existing non-empty ``output`` is an error unless
    ``overwrite``; ``command`` (the export command line) goes into the card."""
    run_dir, output = Path(run_dir), Path(output)
    source = run_student_folder(run_dir, mode, seed)
    record = read_record(source)
    if not any(source.glob("*.safetensors")):
        raise ModelError(f"{source}: no safetensors weights to export")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ConfigError(f"{output}: folder exists and is not empty (use --overwrite to replace it)")
    if output.resolve().is_relative_to(source.resolve()):
        raise ConfigError(f"{output}: cannot export into the student's own folder")
    card = model_card(record, run_dir, usage_lines(record, output.name, _first_test_example(run_dir)), command)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(output) as tmp:
        for path in sorted(source.iterdir()):
            if path.is_file() and path.suffix not in PICKLED and path.name not in (TRAINING_RECORD, RECORD_FILE):
                shutil.copy2(path, tmp / path.name)
        write_json(tmp / RECORD_FILE, {**record, "exported_from": {"run_dir": str(run_dir), "mode": mode,
                                                                   "seed": seed}})
        (tmp / CARD).write_text(card, encoding="utf-8")
        if RunDir(run_dir).config.is_file():
            shutil.copy2(RunDir(run_dir).config, tmp / RUN_CONFIG)
    logger.debug("exported %s seed %d of %s to %s", mode, seed, run_dir, output)
    return output
