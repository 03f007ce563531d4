"""Greedy generation for free-form answers (e.g. SVAMP equations)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models import LoadedModel


@torch.no_grad()
def generate_answers(
    lm: LoadedModel, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 8
) -> list[str]:
    """The first line of each greedy continuation, stripped."""
    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    side = tok.padding_side
    tok.padding_side = "left"  # causal generation continues from the right edge
    out: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tok(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True).to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            if not lm.is_seq2seq:
                gen = gen[:, enc["input_ids"].shape[1]:]
            for text in tok.batch_decode(gen, skip_special_tokens=True):
                out.append(text.strip().split("\n", 1)[0].strip())
    finally:
        tok.padding_side = side
    return out
