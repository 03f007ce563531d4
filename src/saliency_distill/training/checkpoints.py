"""Run-folder files of a training run: resumable checkpoints, the saved model and its record.

Checkpoints go to ``output_dir/checkpoints`` and a killed job resumes from the last complete one
(one made from another model, config or data is refused); the final model is written to
``output_dir/model`` through a temporary folder and a rename, so a folder named ``model`` is
always complete, with ``training.json`` saying what made it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..io import atomic_dir, write_json
from ..models import LoadedModel
from ..run_dir import refusal

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
RECORD = "training.json"  # written inside the model folder: what made it
METRICS = "train_metrics.json"
ELAPSED = "wall_seconds.json"  # written into each checkpoint: the training time up to it, every sitting


def resume_point(folder: Path, fingerprint: str) -> Path | None:
    """The checkpoint to resume from, refusing one made from another model, config or data."""
    record = folder / "run.json"
    resume = last_checkpoint(folder) if folder.is_dir() else None
    if resume is None:
        write_json(record, {"fingerprint": fingerprint})
        return None
    try:
        found = json.loads(record.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != fingerprint:
        raise refusal(folder, "checkpoints", found, fingerprint,
                      "delete the folder or choose another output folder")
    logger.info("resuming from %s", resume)
    return resume


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: its trainer state was written (the Trainer writes that file
    last) and its weights and optimizer state are still there (a deletion killed half-way can leave
    a trainer state without them)."""
    found = []
    for path in folder.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
            if weights and (path / "optimizer.pt").is_file():
                return path
        except (OSError, ValueError):
            pass
        logger.warning("skipping incomplete checkpoint %s", path)
    return None


def elapsed_at(checkpoint: Path | None) -> float:
    """Training seconds up to ``checkpoint``, earlier sittings included (0 without one, or for a
    checkpoint whose time was not written: a kill between the two writes)."""
    if checkpoint is None:
        return 0.0
    try:
        return float(json.loads((checkpoint / ELAPSED).read_text(encoding="utf-8"))["wall_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def finished_state(checkpoint: Path) -> Any:
    """The checkpoint's ``TrainerState`` when it was written at the run's last step, else None."""
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    return state if state.max_steps and state.global_step >= state.max_steps else None


def remove_checkpoints(folder: Path) -> None:
    """Delete a checkpoint folder so that a kill cannot leave half of it: it is renamed away
    first (one atomic step), then removed."""
    if not folder.exists():
        return
    doomed = folder.with_name(f".{folder.name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)  # left by an earlier kill
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def trained_fingerprint(model_dir: str | os.PathLike[str]) -> str | None:
    """Fingerprint recorded in a complete saved model folder; None if it is missing or incomplete."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        return None
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_model_folder(lm: LoadedModel, folder: Path, record: dict[str, Any]) -> None:
    """Write model + tokenizer + record beside ``folder`` and rename it into place."""
    with atomic_dir(folder) as tmp:
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        write_json(tmp / RECORD, record)
