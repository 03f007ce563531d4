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
from ..models.tokens import answer_ids


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
    """Summed log p(answer | prompt) and answer length in tokens, for aligned lists."""
    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    prompt_ids = [tok(p)["input_ids"] for p in prompts]
    target_ids = [answer_ids(lm, a) for a in answers]
    sums: list[float] = []
    lengths: list[int] = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    order = sorted(range(len(prompts)), key=lambda i: -(len(prompt_ids[i]) + len(target_ids[i])))
    results: dict[int, tuple[float, int]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if lm.is_seq2seq:
            enc = [prompt_ids[i] for i in idx]
            dec = [target_ids[i] for i in idx]
            enc_t, enc_mask = _pad(enc, pad, device)
            labels, dec_mask = _pad(dec, -100, device)
            logits = model(input_ids=enc_t, attention_mask=enc_mask, labels=labels).logits  # (B, A, V)
            targets, mask = labels, dec_mask.bool()
        else:
            seqs = [prompt_ids[i] + target_ids[i] for i in idx]
            ids, attn = _pad(seqs, pad, device)
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]  # (B, T-1, V)
            targets = ids[:, 1:]
            mask = torch.zeros_like(targets, dtype=torch.bool)
            for row, i in enumerate(idx):
                p, a = len(prompt_ids[i]), len(target_ids[i])
                mask[row, p - 1:p - 1 + a] = True
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
        picked = picked.masked_fill(~mask, 0.0)
        for row, i in enumerate(idx):
            results[i] = (picked[row].sum().item(), int(mask[row].sum().item()))
    for i in range(len(prompts)):
        sums.append(results[i][0])
        lengths.append(results[i][1])
    return sums, lengths


def _pad(seqs: list[list[int]], value: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids.to(device), mask.to(device)


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
