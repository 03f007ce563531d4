"""Loss functions (pure): the multi-task loss of distillation with rationales.

Every training mode reduces to one weighted sum over the target tokens of an optimizer step:

    loss = sum_t w_t * nll_t

where ``nll_t`` is the negative log-likelihood of target token t and the weights are fixed by
:func:`target_weights` from each token's task (PREDICT / EXPLAIN) and sequence. With weights
computed over *all* micro-batches of an optimizer step, the micro-batch losses add up to the
loss of the whole step, so gradient accumulation gives the same gradients as one big batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .features import IGNORE_INDEX

PREDICT, EXPLAIN = 0, 1
AVERAGES = ("token", "sequence")

__all__ = ["AVERAGES", "EXPLAIN", "IGNORE_INDEX", "PREDICT", "target_nll", "target_weights", "weighted_loss"]


def target_nll(logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood: logits (N, V) at the positions that predict the
    targets, target_ids (N,). Computed in float32 whatever the logits' dtype."""
    return F.cross_entropy(logits.float(), target_ids, reduction="none")


def target_weights(
    tasks: Sequence[torch.Tensor], seqs: Sequence[torch.Tensor], alpha: float, average: str = "token"
) -> list[torch.Tensor]:
    """The weight of every target token of one optimizer step, one tensor per micro-batch.

    ``tasks[m]`` (N_m,) holds each target token's task, ``seqs[m]`` (N_m,) the sequence it
    belongs to (numbered within micro-batch m). The loss is ``alpha * L_predict + (1 - alpha)
    * L_explain``, where L_k averages task k's target tokens over the whole step:

    - ``token``: the mean over all task-k tokens (with one task this is the usual fine-tuning
      loss, and alpha = 1 is exactly the predict-only loss);
    - ``sequence``: the mean over task-k sequences of each sequence's mean token loss.

    The weights of the tasks present are renormalised to sum to 1, so a step that holds one task
    only is plain fine-tuning on it. Tokens of a task with weight 0 get weight 0.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    task_weight = {PREDICT: alpha, EXPLAIN: 1.0 - alpha}
    counts: dict[int, int] = {}  # task -> tokens (token) or sequences (sequence) in the whole step
    for t, s in zip(tasks, seqs):
        for task in task_weight:
            chosen = t == task
            if average == "token":
                n = int(chosen.sum())
            else:
                n = int(torch.unique(s[chosen]).numel())
            counts[task] = counts.get(task, 0) + n
    present = sum(w for task, w in task_weight.items() if counts.get(task, 0) > 0 and w > 0)
    out = []
    for t, s in zip(tasks, seqs):
        w = torch.zeros(t.shape, dtype=torch.float32)
        for task, weight in task_weight.items():
            chosen = t == task
            if weight <= 0 or not chosen.any():
                continue
            share = weight / present / counts[task]
            if average == "token":
                w[chosen] = share
            else:  # each sequence's tokens share its 1 / n_sequences equally
                _, inverse, length = torch.unique(s[chosen], return_inverse=True, return_counts=True)
                w[chosen] = share / length[inverse].float()
        out.append(w)
    return out


def weighted_loss(logits: torch.Tensor, target_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_t w_t * nll_t over one micro-batch; logits (N, V), target_ids (N,), weights (N,).

    A zero that stays in the graph when there is no target, so backward() still works."""
    if target_ids.numel() == 0:
        return logits.sum() * 0.0
    return (target_nll(logits, target_ids) * weights.to(logits.device)).sum()
