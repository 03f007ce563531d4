"""Batches for attribution and the function being attributed: log p(answer | prompt).

Prompts are tokenised with their character offsets (for word aggregation later); the answer is
tokenised separately and appended, exactly as in :mod:`saliency_distill.teacher.scoring`, so the
attributed quantity is the same log-likelihood that chose the teacher's answer.

Few-shot prompts begin with the same demonstrations: a causal batch whose rows share their first
tokens (before any feature token, when features are given) reads that prefix once and continues
its key/value cache with each row (``AttributionBatch.prefix``). Gradients are exact for every
position after the prefix; the prefix positions (template only) get none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ..errors import DataError
from ..models import LoadedModel
from ..models.tokens import answer_ids, context_length
from .config import AttributionConfig


@dataclass
class AttributionBatch:
    ids: list[str]
    input_ids: torch.Tensor  # (B, T): prompt (+ answer for causal models), right-padded
    attention_mask: torch.Tensor  # (B, T)
    prompt_mask: torch.Tensor  # (B, T) bool: the positions being attributed
    feature_mask: torch.Tensor  # (B, T) bool: prompt positions inside the given spans (all if none)
    prompt_lengths: list[int]
    offsets: list[list[tuple[int, int]]]  # per prompt token: character span in the prompt
    positions: torch.Tensor  # (B, A): causal: positions whose logits predict the answer tokens
    targets: torch.Tensor  # (B, A): answer token ids (0 where padded)
    target_mask: torch.Tensor  # (B, A) bool
    prefix: int = 0  # leading tokens every row shares, read once (see shared_prefix)


MIN_PREFIX = 16  # a shorter shared prefix is not worth a separate pass


def shared_prefix(rows: Sequence[Sequence[int]], limit: int, minimum: int = MIN_PREFIX) -> int:
    """The number of leading tokens all ``rows`` share, at most ``limit``; 0 below ``minimum``."""
    n = min(limit, *map(len, rows))
    first = rows[0]
    for row in rows[1:]:
        n = next((i for i in range(n) if row[i] != first[i]), n)
    return n if n >= max(minimum, 1) else 0


def encode(
    lm: LoadedModel, ids: Sequence[str], prompts: Sequence[str], answers: Sequence[str],
    max_length: int | None = None, spans: Sequence[Sequence[tuple[int, int]]] | None = None,
    share_prefix: bool = False,
) -> AttributionBatch:
    """Tokenise a batch; ``spans`` (character spans per prompt) mark the feature tokens.

    ``share_prefix`` (causal models): read the rows' common first tokens once, up to the first
    feature token of any row when ``spans`` are given (their scores must stay exact), and always
    leaving each row at least one prompt token of its own."""
    tok = lm.tokenizer
    device = next(lm.model.parameters()).device
    limit = max_length or context_length(lm)
    rows, offsets, ans = [], [], []
    for ex_id, prompt, answer in zip(ids, prompts, answers):
        enc = tok(prompt, return_offsets_mapping=True)
        a = answer_ids(lm, answer)
        if not a:
            raise DataError(f"example {ex_id}: the answer {answer!r} tokenises to nothing")
        total = len(enc["input_ids"]) + (0 if lm.is_seq2seq else len(a))
        if limit is not None and total > limit:
            raise DataError(
                f"example {ex_id}: prompt and answer are {total} tokens, longer than the "
                f"{limit}-token limit of {lm.name} (shorten the example or raise attribution.max_length)"
            )
        rows.append(list(enc["input_ids"]) + ([] if lm.is_seq2seq else a))
        offsets.append([tuple(o) for o in enc["offset_mapping"]])
        ans.append(a)
    bsz, width, awidth = len(rows), max(map(len, rows)), max(map(len, ans))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.full((bsz, width), pad, dtype=torch.long)
    attention = torch.zeros((bsz, width), dtype=torch.long)
    prompt_mask = torch.zeros((bsz, width), dtype=torch.bool)
    feature_mask = torch.zeros((bsz, width), dtype=torch.bool)
    positions = torch.zeros((bsz, awidth), dtype=torch.long)
    targets = torch.zeros((bsz, awidth), dtype=torch.long)
    target_mask = torch.zeros((bsz, awidth), dtype=torch.bool)
    lengths = []
    for r, (row, off, a) in enumerate(zip(rows, offsets, ans)):
        p = len(off)
        lengths.append(p)
        input_ids[r, : len(row)] = torch.tensor(row)
        attention[r, : len(row)] = 1
        prompt_mask[r, :p] = True
        if spans is None or spans[r] is None:
            feature_mask[r, :p] = True
        else:
            for t, (s, e) in enumerate(off):
                feature_mask[r, t] = any(s < se and e > ss for ss, se in spans[r])
        targets[r, : len(a)] = torch.tensor(a)
        target_mask[r, : len(a)] = True
        positions[r, : len(a)] = torch.arange(p - 1, p - 1 + len(a))
    prefix = 0
    if share_prefix and not lm.is_seq2seq and bsz > 1:
        limit = min(lengths) - 1
        if spans is not None:
            firsts = [int(m.nonzero()[0]) for m in feature_mask if m.any()]
            limit = min([limit, *firsts])
        prefix = shared_prefix([row[:p] for row, p in zip(rows, lengths)], limit)
    return AttributionBatch(
        list(ids), input_ids.to(device), attention.to(device), prompt_mask.to(device), feature_mask.to(device), lengths,
        offsets, positions.to(device), targets.to(device), target_mask.to(device), prefix,
    )


def repeat(batch: AttributionBatch, times: int) -> AttributionBatch:
    """The batch stacked ``times`` over (step-major), for batched interpolation steps."""
    rep = lambda t: t.repeat(times, *([1] * (t.dim() - 1)))  # noqa: E731
    return AttributionBatch(
        batch.ids * times, rep(batch.input_ids), rep(batch.attention_mask), rep(batch.prompt_mask),
        rep(batch.feature_mask),
        batch.prompt_lengths * times, batch.offsets * times, rep(batch.positions), rep(batch.targets),
        rep(batch.target_mask), batch.prefix,
    )


def embed(lm: LoadedModel, batch: AttributionBatch) -> torch.Tensor:
    return lm.model.get_input_embeddings()(batch.input_ids)  # (B, T, H)


def answer_logprob(
    lm: LoadedModel, batch: AttributionBatch, inputs_embeds: torch.Tensor, output_attentions: bool = False
) -> tuple[torch.Tensor, object]:
    """Summed log p(answer | prompt) per example, shape (B,), and the raw model output."""
    model = lm.model
    if lm.is_seq2seq:
        labels = batch.targets.masked_fill(~batch.target_mask, -100)
        out = model(inputs_embeds=inputs_embeds, attention_mask=batch.attention_mask, labels=labels,
                    output_attentions=output_attentions)
        logits = out.logits  # (B, A, V)
    else:
        c, rest = batch.prefix, {}
        if c:  # the shared prefix once, its cache copied to every row; positions continue after it
            with torch.no_grad():
                past = model.base_model(input_ids=batch.input_ids[:1, :c], use_cache=True).past_key_values
            past.reorder_cache(torch.zeros(inputs_embeds.size(0), dtype=torch.long, device=inputs_embeds.device))
            width = inputs_embeds.size(1)
            positions = torch.arange(c, width, device=inputs_embeds.device).expand(inputs_embeds.size(0), -1)
            rest = {"past_key_values": past, "position_ids": positions, "use_cache": False}
        out = model.base_model(inputs_embeds=inputs_embeds[:, c:], attention_mask=batch.attention_mask,
                               output_attentions=output_attentions, **rest)
        hidden = out.last_hidden_state  # (B, T - prefix, H)
        idx = (batch.positions - c).clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        # Only the answer positions go through the LM head: (B, A, V), not (B, T, V).
        logits = model.get_output_embeddings()(hidden.gather(1, idx))
    # Half-precision logits are upcast; float64 (used by finite-difference checks) is kept.
    logp = torch.log_softmax(logits.float() if logits.element_size() < 4 else logits, dim=-1)
    picked = logp.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)  # (B, A)
    return picked.masked_fill(~batch.target_mask, 0.0).sum(-1), out


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Parameters without gradients (only input gradients are computed), restored afterwards."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def autocast(lm: LoadedModel, cfg: AttributionConfig) -> contextlib.AbstractContextManager:
    device = next(lm.model.parameters()).device.type
    if not cfg.use_bf16(device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)
