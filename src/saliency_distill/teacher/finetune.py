"""Fine-tune the teacher on a task's train split: prompt -> gold label, loss on the label only.

The stage's output is ``output_dir/model``; a complete one made from the same base model,
training config and pairs is reused, so re-running the pipeline does not train twice.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..data import Example
from ..models import LoadedModel, ModelConfig, load_model
from ..models.loading import DTYPES
from ..run_dir import announce_reuse, refusal
from ..training.sft import MODEL_DIR, TrainConfig, train_supervised, trained_fingerprint, training_fingerprint
from .prompt import TeacherPrompter

logger = logging.getLogger(__name__)


def _dtype_name(lm: LoadedModel) -> str:
    name = str(getattr(lm.model, "dtype", "float32")).removeprefix("torch.")
    return name if name in DTYPES else "float32"


def finetune_teacher(
    lm: LoadedModel,
    prompter: TeacherPrompter,
    train_examples: Sequence[Example],
    cfg: TrainConfig,
    output_dir: str | os.PathLike[str],
    overwrite: bool = False,
) -> LoadedModel:
    """Train ``lm`` (in place) to answer as ``prompter`` asks (the prompt it renders -> the gold
    answer in its format) and return the saved model, freshly loaded."""
    pairs = [(prompter.render(ex).text, prompter.target(ex, ex.label)) for ex in train_examples]
    folder = Path(output_dir) / MODEL_DIR
    wanted = training_fingerprint(lm, pairs, cfg)
    found = trained_fingerprint(folder)  # None: no complete model yet
    if found is not None and found != wanted and overwrite:
        logger.info("--overwrite: removing %s (fine-tuned under another config)", output_dir)
        shutil.rmtree(output_dir)
        found = None
    if found is None:
        train_supervised(lm, pairs, cfg, output_dir, ids=[ex.id for ex in train_examples])
    elif found == wanted:
        announce_reuse(logger, "the fine-tuned teacher", folder)
    else:
        # Never replace a finished model silently: the run folder would no longer match its config.
        raise refusal(folder, "fine-tuned teacher", found, wanted)
    return load_model(ModelConfig(name=str(folder), dtype=_dtype_name(lm), kind=lm.kind))
