"""The training stage's config: what a supervised fine-tuning run does, and what identifies it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from ..config import field, to_dict
from ..errors import ConfigError

# Fields that change neither the trained weights nor what a checkpoint holds.
_BOOKKEEPING = frozenset(
    {"logging_steps", "save_steps", "save_minutes", "save_total_limit", "progress_bar", "keep_checkpoints",
     "report_to"}
)
# Fields a resumed run may change: training longer continues from the same checkpoints.
_RUN_LENGTH = frozenset({"epochs", "max_steps"})
# Fields added after runs were made: left out of the identity at these values, so those runs stay valid.
# Fused and unfused AdamW are one update rule (they differ in rounding only): a run made with either counts.
# So are eager and sdpa attention (one computation, two kernels).
ATTENTION = ("auto", "model", "eager", "sdpa")
_ADDED_LATER = {"optim": ("adamw_torch", "adamw_torch_fused"), "attention": ATTENTION, "freeze_embeddings": (False,)}
EAGER_UP_TO = 128  # tokens: the longest batch (padded row) for which auto attention picks eager


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = field(3.0, "passes over the training pairs (used when max_steps is unset)")
    max_steps: int | None = field(None, "optimizer steps to run; unset: run for `epochs`")
    learning_rate: float = field(5e-5, "peak learning rate (AdamW, linear decay)")
    batch_size: int = field(8, "pairs per device per forward pass")
    grad_accum: int = field(1, "forward passes accumulated into one optimizer step")
    weight_decay: float = field(0.0, "AdamW weight decay")
    warmup_ratio: float = field(0.0, "share of the steps spent warming the learning rate up, in [0, 1)")
    seed: int = field(0, "seed of the data order, dropout and LoRA initialisation")
    bf16: bool | Literal["auto"] = field(
        False, "bfloat16 autocast: true, false, or auto (true where the model's device computes bf16 in hardware: "
        "AVX-512 BF16 or AMX CPUs, Ampere or newer GPUs; resolved when the config is read)"
    )
    lora: bool = field(False, "train LoRA adapters instead of every weight; merged into the saved model")
    lora_r: int = field(16, "LoRA rank")
    lora_alpha: int = field(32, "LoRA scaling numerator (scale = lora_alpha / lora_r)")
    lora_dropout: float = field(0.05, "dropout on the LoRA input, in [0, 1)")
    lora_targets: list[str] | None = field(
        None, "module names to adapt; unset: peft's default for the architecture, else q_proj, v_proj"
    )
    max_grad_norm: float = field(1.0, "clip the gradient norm to this (0: no clipping)")
    max_length: int | None = field(1024, "longest pair in tokens; a longer one is an error, not cut")
    share_prompt: bool = field(
        True, "causal multi-task: an example's sequences share one copy of their common prompt in one row"
    )
    pack_length: int | None = field(
        None, "causal: pack several examples into rows of at most this many tokens (no padding); unset: one a row"
    )
    target_logits: bool = field(True, "causal: run the LM head only where the next token is a target")
    group_by_length: bool = field(False, "batch pairs of similar length together (less padding)")
    optim: str = field(
        "adamw_torch_fused", "the Trainer's optimizer; the default updates every weight in one fused kernel a step "
        "(6.7x faster than adamw_torch's update on 2 CPU cores, benchmarks/results/training_speed_levers_bf16.md)"
    )
    freeze_embeddings: bool = field(
        False, "train every weight but the input embeddings (and an output head tied to them): no dense "
        "embedding gradient or its AdamW state (measured in the demo: no faster, docs/results.md)"
    )
    attention: str = field(
        "auto", "causal models' attention kernel while training: auto (eager on CPU for a batch of rows up to 128 "
        "tokens, 1.27x there, benchmarks/results/training_speed_memory_bf16.md; else the model's own), model, "
        "eager, sdpa"
    )
    report_to: list[str] = field([], "Trainer loggers, e.g. [tensorboard] (needs the tensorboard package)")
    logging_steps: int = field(10, "log the training loss every this many steps")
    save_steps: int | None = field(None, "also write a resumable checkpoint every this many steps")
    save_minutes: float | None = field(
        3.0, "write a resumable checkpoint when this many minutes passed since the last one (and at least 20x "
        "the time the last one took, so saving costs <= 5%); unset: no timed checkpoints"
    )
    save_total_limit: int | None = field(2, "keep at most this many checkpoints; unset: keep all")
    progress_bar: bool = field(True, "show a progress bar on stderr")
    keep_checkpoints: bool = field(
        False, "keep the resumable checkpoints after training finished (model + optimizer: GBs each)"
    )

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "learning_rate": self.learning_rate, "lora_alpha": self.lora_alpha,
                    "save_minutes": self.save_minutes}
        for key, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"config key '{key}': {value} must be > 0")
        at_least_one = {
            "max_steps": self.max_steps, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
            "lora_r": self.lora_r, "max_length": self.max_length, "logging_steps": self.logging_steps,
            "save_steps": self.save_steps, "save_total_limit": self.save_total_limit,
            "pack_length": self.pack_length,
        }
        for key, value in at_least_one.items():
            if value is not None and value < 1:
                raise ConfigError(f"config key '{key}': {value} must be >= 1")
        for key in ("weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 0")
        # warmup_ratio and lora_dropout are fractions; Trainer reads a warmup >= 1 as a step count.
        for key in ("warmup_ratio", "lora_dropout"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"config key '{key}': {value} is not in [0, 1)")
        if self.attention not in ATTENTION:
            raise ConfigError(f"config key 'attention': {self.attention!r} is not one of {list(ATTENTION)}")
        if self.lora_targets is not None and (not self.lora_targets or not all(self.lora_targets)):
            raise ConfigError(f"config key 'lora_targets': {self.lora_targets!r} must list module names")


def identity(cfg: TrainConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that change what training produces (not logging, saving, bars)."""
    return {k: v for k, v in to_dict(cfg).items()
            if k not in _BOOKKEEPING and (k not in _ADDED_LATER or v not in _ADDED_LATER[k])}


def resolve_bf16(cfg: TrainConfig, device: str) -> TrainConfig:
    """``cfg`` with ``bf16: auto`` made true or false for a model on ``device`` (``auto`` allowed)."""
    if cfg.bf16 != "auto":
        return cfg
    from ..models.loading import native_dtype, resolve_device

    return replace(cfg, bf16=native_dtype("bfloat16", resolve_device(device)))
