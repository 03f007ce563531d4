"""Loss functions (pure): the multi-task loss of distillation with rationales."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .features import IGNORE_INDEX

PREDICT, EXPLAIN = 0, 1


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean negative log-likelihood of each sequence's labelled tokens.

    logits: (B, T, V); labels: (B, T) with IGNORE_INDEX where there is no target; ``shift``
    for causal models, whose logits at t predict the token at t + 1. Returns (B,) losses and a
    (B,) bool mask of the sequences that have at least one labelled token.
    """
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    token = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape)  # (B, T)
    counts = (labels != IGNORE_INDEX).sum(-1)  # (B,)
    return token.sum(-1) / counts.clamp(min=1), counts > 0


def multitask_loss(
    logits: torch.Tensor, labels: torch.Tensor, tasks: torch.Tensor, alpha: float, shift: bool
) -> torch.Tensor:
    """alpha * L_predict + (1 - alpha) * L_explain over one batch.

    logits (B, T, V), labels (B, T), tasks (B,) with PREDICT / EXPLAIN. L_k is the mean of the
    per-sequence losses of task k. When a batch holds one task only, the loss is that task's
    mean (the weights of the tasks present are renormalised), so single-task training is plain
    fine-tuning. 0 when every label is masked.
    """
    nll, valid = sequence_nll(logits, labels, shift)  # (B,), (B,)
    total = nll.sum() * 0.0  # a zero that stays in the graph, so backward() works when all is masked
    weight_sum = 0.0
    for task, weight in ((PREDICT, alpha), (EXPLAIN, 1.0 - alpha)):
        chosen = valid & (tasks == task)
        if chosen.any() and weight > 0:
            total = total + weight * nll[chosen].mean()
            weight_sum += weight
    return total / weight_sum if weight_sum > 0 else total
