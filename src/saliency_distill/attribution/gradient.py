"""Gradient-based token scores: saliency (gradient norm) and input x gradient."""

from __future__ import annotations

import torch

from ..models import LoadedModel
from .config import AttributionConfig
from .inputs import AttributionBatch, answer_logprob, autocast, embed
from .output import MethodOutput


def _input_gradient(
    lm: LoadedModel, batch: AttributionBatch, cfg: AttributionConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embeddings, d f / d embeddings, f) with f = log p(answer), one forward and one backward."""
    x = embed(lm, batch).detach().requires_grad_(True)  # (B, T, H)
    with autocast(lm, cfg):
        f, _ = answer_logprob(lm, batch, x)  # (B,)
    (grad,) = torch.autograd.grad(f.sum(), x)
    return x.detach(), grad.float(), f.detach()


def saliency(lm: LoadedModel, batch: AttributionBatch, cfg: AttributionConfig) -> MethodOutput:
    """L2 norm of the gradient w.r.t. each input embedding."""
    _, grad, f = _input_gradient(lm, batch, cfg)
    return MethodOutput(grad.norm(dim=-1), f)


def input_x_gradient(lm: LoadedModel, batch: AttributionBatch, cfg: AttributionConfig) -> MethodOutput:
    """Gradient dotted with the input embedding (signed)."""
    x, grad, f = _input_gradient(lm, batch, cfg)
    return MethodOutput((grad * x.float()).sum(-1), f)
