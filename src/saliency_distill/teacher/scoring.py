"""Log-likelihood of candidate answers given a prompt, batched, for causal and seq2seq models.

A causal model reads ``prompt + " " + answer`` and is scored on the answer tokens only (the
prompt and answer are tokenised separately and joined, so the prompt's tokens never depend on
the answer). An encoder-decoder model reads the prompt and is scored on the answer as labels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..attribution.inputs import answer_logprob, embed, encode, shared_prefix
from ..models import LoadedModel
from ..models.tokens import answer_ids
from .generate import length_order


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
    order = length_order([len(p) + len(a) for p, a in zip(prompts, answers)])
    sums: list[float] = [0.0] * len(prompts)
    lengths: list[int] = [0] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = encode(lm, [ids[i] for i in idx], [prompts[i] for i in idx], [answers[i] for i in idx],
                       share_prefix=True)
        f, _ = answer_logprob(lm, batch, embed(lm, batch))
        for row, i in enumerate(idx):
            sums[i] = f[row].item()
            lengths[i] = int(batch.target_mask[row].sum().item())
    return sums, lengths


def score_choices(
    lm: LoadedModel, prompts: Sequence[str], choices: Sequence[Sequence[str]], batch_size: int = 8,
    tick: Callable[[int], Any] | None = None,
) -> ChoiceScores:
    """Log-likelihood of every choice of every prompt.

    A causal model reads each prompt once and continues its key/value cache with every choice
    (a 5-choice question costs one prompt pass, not five; the tokens that every choice starts with
    are read in that pass, once), and reads the leading tokens that all ``prompts`` share
    (few-shot demonstrations) once per call; prompts of similar length are batched together. The
    values equal :func:`sequence_logprobs` of each (prompt, choice) pair. Encoder-decoder models
    score the flattened pairs. ``tick(n)`` after each batch of n prompts (a progress bar's update).
    """
    if lm.is_seq2seq:
        flat_p = [p for p, cs in zip(prompts, choices) for _ in cs]
        flat_a = [c for cs in choices for c in cs]
        sums, lens = sequence_logprobs(lm, flat_p, flat_a, batch_size)
        out_s, out_l, k = [], [], 0
        for cs in choices:
            out_s.append(sums[k:k + len(cs)])
            out_l.append(lens[k:k + len(cs)])
            k += len(cs)
        if tick is not None:
            tick(len(prompts))
        return ChoiceScores(out_s, out_l)
    prompt_ids = [lm.tokenizer(p)["input_ids"] for p in prompts]
    common = _read_prefix(lm, prompt_ids)  # few-shot demonstrations: read once for every batch
    # SNLI pairs in their own order padded a quarter more tokens than they hold, in batches of 8;
    # sorted within 64, 5% more.
    order = length_order([len(p) for p in prompt_ids])
    out_s: list[list[float]] = [[] for _ in prompts]
    out_l: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        s_, l_ = _score_shared_prefix(lm, [prompt_ids[i] for i in idx], [choices[i] for i in idx], common)
        for i, s, n in zip(idx, s_, l_):
            out_s[i], out_l[i] = s, n
        if tick is not None:
            tick(len(idx))
    return ChoiceScores(out_s, out_l)


@torch.no_grad()
def _read_prefix(lm: LoadedModel, prompt_ids: Sequence[Sequence[int]]) -> tuple[int, Any]:
    """The number c of leading tokens all ``prompt_ids`` share (0: too few) and the key/value
    cache of one copy of them."""
    c = shared_prefix(prompt_ids, min(map(len, prompt_ids)) - 1) if len(prompt_ids) > 1 else 0
    if not c:
        return 0, None
    device = next(lm.model.parameters()).device
    past = lm.model(input_ids=torch.tensor([prompt_ids[0][:c]], device=device), use_cache=True,
                    logits_to_keep=1).past_key_values
    return c, past


@torch.no_grad()
def _score_shared_prefix(
    lm: LoadedModel, prompt_ids: Sequence[Sequence[int]], choices: Sequence[Sequence[str]],
    common: tuple[int, Any] = (0, None),
) -> tuple[list[list[float]], list[list[int]]]:
    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    # Few-shot prompts share their demonstrations: that prefix (c tokens) is read once for the whole
    # call where every prompt shares it (``common``), else once for this batch.
    c, past = (common[0], copy.deepcopy(common[1])) if common[0] else _read_prefix(lm, prompt_ids)
    if c:
        past.reorder_cache(torch.zeros(len(prompt_ids), dtype=torch.long, device=device))
    owner = [i for i, cs in enumerate(choices) for _ in cs]
    answers = [answer_ids(lm, c) for cs in choices for c in cs]
    # Tokens every answer starts with (the " (" of "(a)", "(b)", ...) are read once per prompt, after
    # it, rather than once per choice; each answer keeps at least one token of its own.
    lead = _common_start(answers)
    width = max(map(len, prompt_ids)) - c + len(lead)
    # Left padding of the rest: every prompt ends at the same position, where the choices continue.
    ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    mask = torch.ones((len(prompt_ids), c + width), dtype=torch.long)
    for r, p in enumerate(prompt_ids):
        ids[r, width - len(p) - len(lead) + c:] = torch.tensor(p[c:] + lead)
        mask[r, c:c + width - len(p) - len(lead) + c] = 0
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions[:, c:], past_key_values=past,
                use_cache=True, logits_to_keep=len(lead) + 1)
    logits = torch.log_softmax(out.logits.float(), dim=-1)  # (B, len(lead) + 1, V)
    at = torch.arange(len(lead), device=device)
    lead_logp = logits[:, at, torch.tensor(lead, dtype=torch.long, device=device)].sum(-1)  # (B,)
    first = logits[:, -1]  # (B, V): each answer's first token after the shared ones

    rest = [a[len(lead):] for a in answers]
    logp = _continue(model, out.past_key_values, mask, positions, owner, rest, pad) if max(map(len, rest)) > 1 \
        else None

    sums: list[list[float]] = [[] for _ in prompt_ids]
    lens: list[list[int]] = [[] for _ in prompt_ids]
    for r, (i, a) in enumerate(zip(owner, rest)):
        total = lead_logp[i] + first[i, a[0]]
        if len(a) > 1:
            # the logits after answer token k predict token k + 1
            total = total + logp[r, torch.arange(len(a) - 1), torch.tensor(a[1:], device=device)].sum()
        sums[i].append(total.item())
        lens[i].append(len(lead) + len(a))
    return sums, lens


def _common_start(answers: Sequence[Sequence[int]]) -> list[int]:
    """The leading tokens all ``answers`` share, leaving each at least one."""
    return list(answers[0][:shared_prefix(answers, min(map(len, answers)) - 1, minimum=1)])


def _continue(model: Any, cache: Any, mask: torch.Tensor, positions: torch.Tensor, owner: list[int],
              answers: list[list[int]], pad: int) -> torch.Tensor:
    """Log-probabilities (N, A - 1, V) after each answer token but the last (they predict tokens 2..A),
    the prompts read from ``cache`` (one-token answers need no pass: the prompt's last logits score them)."""
    device = mask.device
    cache.reorder_cache(torch.tensor(owner, device=device))  # one cache row per (prompt, choice)
    width = max(map(len, answers)) - 1  # an answer's last token predicts nothing that is scored
    cont = torch.full((len(answers), width), pad, dtype=torch.long)
    cont_mask = torch.zeros((len(answers), width), dtype=torch.long)
    for r, a in enumerate(answers):
        cont[r, : len(a) - 1] = torch.tensor(a[:-1])
        cont_mask[r, : len(a) - 1] = 1
    cont, cont_mask = cont.to(device), cont_mask.to(device)
    owner_t = torch.tensor(owner, device=device)
    full_mask = torch.cat([mask[owner_t], cont_mask], dim=1)  # (N, P + A - 1)
    cont_pos = positions[owner_t, -1:] + 1 + torch.arange(width, device=device)  # (N, A - 1)
    logits = model(input_ids=cont, attention_mask=full_mask, position_ids=cont_pos,
                   past_key_values=cache, use_cache=False).logits  # (N, A - 1, V)
    return torch.log_softmax(logits.float(), dim=-1)
