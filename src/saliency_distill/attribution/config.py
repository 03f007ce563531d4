"""The attribution stage's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import field
from ..errors import ConfigError
from .methods import ATTRIBUTION_METHODS, LINEAR_METHODS


@dataclass(frozen=True)
class AttributionConfig:
    method: str = field(
        "input_x_gradient", "saliency, input_x_gradient, integrated_gradients or attention"
    )
    target: Literal["teacher", "gold"] = field(
        "teacher", "attribute the log-probability of the teacher's answer, or of the gold answer"
    )
    steps: int = field(16, "integrated gradients: number of interpolation points (model passes)")
    baseline: Literal["zero", "pad", "mean"] = field(
        "zero", "integrated gradients: zero, pad-token or mean (over the vocabulary) input embedding"
    )
    quadrature: Literal["gauss_legendre", "riemann_middle", "riemann_trapezoid"] = field(
        "gauss_legendre", "integrated gradients: rule placing the interpolation points"
    )
    path_power: float = field(
        1.0,
        "integrated gradients: the rule's points u in [0, 1] are used at a = u**path_power (weights "
        "scaled to match); > 1 puts more of them near the baseline, where RMSNorm models change fastest",
    )
    scope: Literal["content", "prompt"] = field(
        "content",
        "integrated gradients: move only the content tokens (question, choices...) to the baseline and "
        "keep the template words as context (content), or every prompt token (prompt); content needs "
        "the prompts' content spans, else every prompt token moves",
    )
    rollout: bool = field(False, "attention: attention rollout over all layers instead of the last layer")
    bf16: bool | None = field(
        None,
        "bf16 autocast; unset = on for saliency, input_x_gradient and attention where the hardware "
        "has fast bf16 (measured agreement with fp32: r >= 0.98), off for integrated gradients",
    )
    batch_size: int = field(8, "examples per attribution batch")
    max_length: int | None = field(None, "longest prompt+answer in tokens; None = the model's context")
    splits: list[str] = field(["train"], "splits whose examples get rationales")
    contrast: bool | None = field(
        None, "true: attribute log p(target) minus log p(the strongest other option by the teacher's scores), so "
        "the words chosen separate the answer from its rival rather than make any answer likely (choice tasks; "
        "input_x_gradient and integrated_gradients, whose scores are linear in the attributed quantity)")
    reuse_rationales: list[str] = field(
        [], "run folders whose rationale-store rows are taken for the same examples instead of attributed "
        "again, where the teacher, the attribution settings, the prompt and the target agree")

    def __post_init__(self) -> None:
        if self.method not in ATTRIBUTION_METHODS:
            raise ConfigError(
                f"config key 'attribution.method': unknown method {self.method!r} "
                f"(choose from: {', '.join(ATTRIBUTION_METHODS)})"
            )
        if self.contrast and self.method not in LINEAR_METHODS:
            raise ConfigError(f"config key 'attribution.contrast': method {self.method} is not linear in the "
                              f"attributed quantity (choose from: {', '.join(LINEAR_METHODS)})")
        if self.steps < 1:
            raise ConfigError(f"config key 'attribution.steps': {self.steps} must be >= 1")
        if not self.path_power >= 1.0:
            raise ConfigError(f"config key 'attribution.path_power': {self.path_power} must be >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"config key 'attribution.batch_size': {self.batch_size} must be >= 1")
        if self.bf16 is True and self.method == "integrated_gradients":
            # Measured on SmolLM2-135M: bf16 IG correlates with fp32 IG at mean r = 0.53 only.
            raise ConfigError(
                "config key 'attribution.bf16': integrated gradients disagree with fp32 under bf16; "
                "use bf16=false"
            )

    def use_bf16(self, device: str) -> bool:
        """Whether to autocast to bf16 on ``device`` ("cpu", "cuda", ...)."""
        if self.bf16 is not None:
            return self.bf16
        if self.method == "integrated_gradients":
            return False
        return fast_bf16(device)


def fast_bf16(device: str) -> bool:
    """Whether autocasting to bf16 pays on ``device``: a CPU or CUDA device that computes it in
    hardware (:func:`~saliency_distill.models.native_dtype`); never on other accelerators."""
    from ..models import native_dtype

    return device.split(":")[0] in ("cpu", "cuda") and native_dtype("bfloat16", device)
