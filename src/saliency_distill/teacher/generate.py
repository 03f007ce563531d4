"""Greedy generation for free-form answers (e.g. SVAMP equations) and the student's evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..models import LoadedModel

DEFAULT_STOP = ("\n",)


def cut_at_stop(text: str, stop: Sequence[str] = DEFAULT_STOP) -> str:
    """``text`` (leading white space skipped) up to the first of the ``stop`` strings, stripped."""
    text = text.lstrip()
    ends = [i for s in stop if (i := text.find(s)) >= 0]
    return (text[: min(ends)] if ends else text).strip()


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices of ``lengths`` longest first (ties in input order): batches of neighbours in this
    order pad little, and the longest batch, the one that needs the most memory, comes first."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


@torch.no_grad()
def generate_continuations(
    lm: LoadedModel, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 8,
    stop: Sequence[str] = (), tick: Callable[[int], Any] | None = None,
) -> list[str]:
    """Each prompt's greedy continuation as decoded text, in the order of ``prompts``; generation
    of a row ends at EOS, after ``max_new_tokens`` or once it has produced one of the ``stop``
    strings (which the text then still holds: :func:`cut_at_stop` cuts it).

    Prompts are batched by token length (``length_order``), so a batch pads to about its own
    length instead of its longest member's; padding is masked, so an answer does not depend on
    its batch beyond floating-point rounding. ``tick(n)`` after each batch of n prompts (a
    progress bar's update)."""
    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    encoded = tok(list(prompts))["input_ids"] if prompts else []  # once: for the order and the batches
    order = length_order([len(ids) for ids in encoded])
    side = tok.padding_side
    tok.padding_side = "left"  # causal generation continues from the right edge
    stopping = {"stop_strings": list(stop), "tokenizer": tok} if stop else {}
    out: list[str] = [""] * len(prompts)
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            enc = tok.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt").to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, **stopping)
            if not lm.is_seq2seq:
                gen = gen[:, enc["input_ids"].shape[1]:]
            for i, text in zip(rows, tok.batch_decode(gen, skip_special_tokens=True)):
                out[i] = text
            if tick is not None:
                tick(len(rows))
    finally:
        tok.padding_side = side
    return out


def generate_answers(
    lm: LoadedModel, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 8,
    stop: Sequence[str] = DEFAULT_STOP, tick: Callable[[int], Any] | None = None,
) -> list[str]:
    """Each greedy continuation cut at its first ``stop`` string (by default: its first line),
    stripped, in the order of ``prompts``."""
    texts = generate_continuations(lm, prompts, max_new_tokens, batch_size, tick=tick)
    return [cut_at_stop(text, stop) for text in texts]
