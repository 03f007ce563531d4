"""Supervised features: a (prompt, target) pair as token ids with the loss on the target only.

A causal model reads ``prompt + " " + target + eos``; the prompt and the target are tokenised
separately and joined, exactly as :mod:`saliency_distill.teacher.scoring` does, so a model is
trained on the same token sequence it is later scored on. An encoder-decoder model reads the
prompt and learns the target (plus eos) as its decoder labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import DataError
from ..models import LoadedModel
from ..models.tokens import answer_ids

IGNORE_INDEX = -100  # label value that torch's cross-entropy (and HF models) skip


def encode_pair(
    lm: LoadedModel, prompt: str, target: str, max_length: int | None = None
) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` for one pair; labels are IGNORE_INDEX outside the target.

    Raises DataError when the sequence is longer than ``max_length`` tokens: truncating would
    cut the target (causal) or the question (seq2seq) and teach the model something else.
    """
    prompt_ids = lm.tokenizer(prompt)["input_ids"]
    target_ids = answer_ids(lm, target, causal_eos=True)
    if lm.is_seq2seq:
        input_ids, labels = prompt_ids, target_ids
        length = max(len(input_ids), len(labels))
    else:
        input_ids = prompt_ids + target_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + target_ids
        length = len(input_ids)
    if max_length is not None and length > max_length:
        raise DataError(f"{length} tokens is longer than max_length={max_length}")
    return {"input_ids": input_ids, "labels": labels}


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def pad_batch(features: Sequence[Mapping[str, Sequence[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of :func:`encode_pair` features to the longest one in the batch.

    Labels are padded with IGNORE_INDEX and separately from the inputs, since a seq2seq
    model's labels (decoder side) are not as long as its inputs.
    """
    if not features:
        raise ValueError("pad_batch needs at least one feature")
    ids = [f["input_ids"] for f in features]
    input_ids = _pad(ids, pad_token_id)  # (B, T)
    attention_mask = _pad([[1] * len(r) for r in ids], 0)  # (B, T)
    labels = _pad([f["labels"] for f in features], IGNORE_INDEX)  # (B, T) causal, (B, A) seq2seq
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
