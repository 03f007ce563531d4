"""The module that training updates: the model itself, or LoRA adapters (peft) merged afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigError
from ..models import LoadedModel
from .config import TrainConfig


def wrap_lora(lm: LoadedModel, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    targets = cfg.lora_targets
    if targets is None and getattr(lm.model.config, "model_type", None) not in PEFT_DEFAULTS:
        targets = ["q_proj", "v_proj"]  # peft has no default for this architecture
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(targets) if targets is not None else None,
        task_type=TaskType.SEQ_2_SEQ_LM if lm.is_seq2seq else TaskType.CAUSAL_LM,
    )
    try:
        return get_peft_model(lm.model, lora)
    except ValueError as e:
        raise ConfigError(f"config key 'lora_targets': {str(e).strip().splitlines()[0]}") from None


@contextlib.contextmanager
def fine_tuning(lm: LoadedModel, cfg: TrainConfig) -> Iterator[Any]:
    """Yield the module to train (with ``cfg.freeze_embeddings``, its input embeddings frozen);
    afterwards ``lm.model`` holds the trained weights (LoRA merged, or dropped if training failed)
    with its mode, device, requires_grad and use_cache as before."""
    model = lm.model
    was_training = model.training
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    device = next(model.parameters()).device
    use_cache = getattr(model.config, "use_cache", None)  # Trainer turns the KV cache off
    trainable = wrap_lora(lm, cfg) if cfg.lora else model
    if cfg.freeze_embeddings and not cfg.lora:  # an output head tied to them is the same tensor
        model.get_input_embeddings().weight.requires_grad_(False)
    ok = False
    try:
        yield trainable
        ok = True
    finally:
        if cfg.lora:
            # peft swapped LoRA layers into lm.model's modules; fold them back (or drop them).
            lm.model = trainable.merge_and_unload() if ok else trainable.unload()
        for name, p in lm.model.named_parameters():
            p.requires_grad_(grads.get(name, p.requires_grad))
        if use_cache is not None:
            lm.model.config.use_cache = use_cache
        lm.model.to(device)
        lm.model.train(was_training)
