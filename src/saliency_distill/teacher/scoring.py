"""Log-likelihood of candidate answers given a prompt, batched, for causal and seq2seq models.

A causal model reads ``prompt + " " + answer`` and is scored on the answer tokens only (the
prompt and answer are tokenised separately and joined, so the prompt's tokens never depend on
the answer). An encoder-decoder model reads the prompt and is scored on the answer as labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models import LoadedModel
from ..attribution.inputs import answer_logprob, embed, encode


@dataclass(frozen=True)
class ChoiceScores:
    """Per example, per choice: summed log-probability and number of answer tokens."""

    sums: list[list[float]]
    lengths: list[list[int]]

    def best(self, normalise: bool = False) -> list[int]:
        out = []
        for sums, lens in zip(self.sums, self.lengths):
            values = [s / max(n, 1) for s, n in zip(sums, lens)] if normalise else sums
            out.append(max(range(len(values)), key=values.__getitem__))
        return out


@torch.no_grad()
def sequence_logprobs(
    lm: LoadedModel, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 8
) -> tuple[list[float], list[int]]:
    """Summed log p(answer | prompt) and answer length in tokens, for aligned lists.

    The same function that attribution differentiates; only the answer positions go through
    the LM head, which matters with 150k-token vocabularies.
    """
    ids = [str(i) for i in range(len(prompts))]
    # Longest first: batches of similar length waste less padding.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]) - len(answers[i]))
    sums: list[float] = [0.0] * len(prompts)
    lengths: list[int] = [0] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = encode(lm, [ids[i] for i in idx], [prompts[i] for i in idx], [answers[i] for i in idx])
        f, _ = answer_logprob(lm, batch, embed(lm, batch))
        for row, i in enumerate(idx):
            sums[i] = f[row].item()
            lengths[i] = int(batch.target_mask[row].sum().item())
    return sums, lengths


def score_choices(
    lm: LoadedModel, prompts: Sequence[str], choices: Sequence[Sequence[str]], batch_size: int = 8
) -> ChoiceScores:
    """Log-likelihood of every choice of every prompt (flattened into one batched pass)."""
    flat_p = [p for p, cs in zip(prompts, choices) for _ in cs]
    flat_a = [c for cs in choices for c in cs]
    sums, lens = sequence_logprobs(lm, flat_p, flat_a, batch_size)
    out_s, out_l, k = [], [], 0
    for cs in choices:
        out_s.append(sums[k:k + len(cs)])
        out_l.append(lens[k:k + len(cs)])
        k += len(cs)
    return ChoiceScores(out_s, out_l)
