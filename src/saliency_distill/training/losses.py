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

PREDICT, EXPLAIN, OPTION = 0, 1, 2  # OPTION: a choice scored for soft labels (no NLL weight)
AVERAGES = ("token", "sequence")

__all__ = ["AVERAGES", "EXPLAIN", "IGNORE_INDEX", "OPTION", "PREDICT", "option_kl", "sequence_logprobs", "target_nll",
           "target_weights", "vocab_kl", "weighted_loss"]


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


def sequence_logprobs(logits: torch.Tensor, target_ids: torch.Tensor, seqs: torch.Tensor,
                      n_seqs: int) -> torch.Tensor:
    """log p of each sequence's target: the sum of its tokens' log-probabilities.

    logits (N, V) at the positions that predict the targets, target_ids (N,), seqs (N,) the
    sequence of every target (0 .. n_seqs - 1). Returns (n_seqs,) float32; 0 for a sequence
    with no target token."""
    out = torch.zeros(n_seqs, dtype=torch.float32, device=logits.device)
    return out.index_add(0, seqs.to(logits.device), -target_nll(logits, target_ids))


def option_kl(
    student_logprobs: torch.Tensor, groups: torch.Tensor, teacher_logprobs: torch.Tensor,
    group_weights: torch.Tensor, temperature: float = 1.0,
) -> torch.Tensor:
    """Soft-label distillation over a choice task's options, needing no shared vocabulary.

    Every option of an example is one sequence: ``student_logprobs`` (M,) its log p under the
    student, ``teacher_logprobs`` (M,) under the teacher (any per-option scores: they are
    renormalised), ``groups`` (M,) the example it belongs to (0 .. G - 1). Per example the
    loss is T^2 * KL(p_teacher || p_student) with both distributions softmax(scores / T) over
    its options (the T^2 keeps gradient sizes comparable across temperatures). Returns
    ``sum_g group_weights[g] * KL_g``; ``group_weights`` (G,) are e.g. 1 / (examples in the
    optimizer step). 0 (in the graph) when M is 0.
    """
    if student_logprobs.numel() == 0:
        return student_logprobs.sum() * 0.0
    device = student_logprobs.device
    groups = groups.to(device)
    n_groups = int(group_weights.numel())
    s = student_logprobs.float() / temperature
    t = teacher_logprobs.to(device).float() / temperature
    log_q = s - _group_logsumexp(s, groups, n_groups)[groups]  # student log-probabilities
    log_p = t - _group_logsumexp(t, groups, n_groups)[groups]  # teacher log-probabilities
    per_option = log_p.exp() * (log_p - log_q)
    kl = torch.zeros(n_groups, dtype=torch.float32, device=device).index_add(0, groups, per_option)
    return (kl * group_weights.to(device).float()).sum() * temperature**2


def _group_logsumexp(x: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """logsumexp of x (M,) within each group: (n_groups,)."""
    top = torch.full((n_groups,), -torch.inf, dtype=x.dtype, device=x.device)
    top = top.scatter_reduce(0, groups, x.detach(), reduce="amax", include_self=True)
    sums = torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add(0, groups, (x - top[groups]).exp())
    return top + sums.log()


def vocab_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor,
             temperature: float = 1.0) -> torch.Tensor:
    """Logit distillation for a teacher and student that share a vocabulary.

    student_logits, teacher_logits (N, V) at the same N target positions, weights (N,) (e.g.
    the :func:`target_weights` of those tokens). Returns ``sum_t w_t * T^2 * KL(p_t || q_t)``
    with p = softmax(teacher / T), q = softmax(student / T), computed in float32. The teacher
    side carries no gradient. 0 (in the graph) when N is 0.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: logit distillation needs one vocabulary")
    if student_logits.numel() == 0:
        return student_logits.sum() * 0.0
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach().to(student_logits.device).float() / temperature, dim=-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)  # (N,)
    return (per_token * weights.to(per_token.device)).sum() * temperature**2
