"""How an answer is tokenised after a prompt: one rule shared by scoring, attribution and
training, so a model is trained, scored and attributed on the same token sequence."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DataError
from .loading import LoadedModel


def answer_ids(lm: LoadedModel, answer: str, causal_eos: bool = False) -> list[int]:
    """Token ids of ``answer`` as it follows the prompt.

    Causal models read ``prompt + " " + answer`` with prompt and answer tokenised separately
    (so the prompt's tokens never depend on the answer); ``causal_eos`` appends eos (training
    teaches the model to stop; scoring compares choices without it). Encoder-decoder models
    get the answer as decoder labels, always ending in eos.
    """
    tok = lm.tokenizer
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    if lm.is_seq2seq:
        return tok(answer, add_special_tokens=False)["input_ids"] + eos
    return tok(" " + answer, add_special_tokens=False)["input_ids"] + (eos if causal_eos else [])


def context_length(lm: LoadedModel) -> int | None:
    """The longest sequence the model reads, from its config (None if it does not say)."""
    cfg = lm.model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(lm: LoadedModel, texts: Sequence[str], names: Sequence[str], extra: Sequence[int] | int = 0,
                  what: str = "tokens") -> None:
    """A one-line DataError naming the first text (``names[i]``) whose tokens plus ``extra[i]``
    (the answer it is scored or generated with) do not fit the model's context."""
    limit = context_length(lm)
    if limit is None:
        return
    extras = [extra] * len(texts) if isinstance(extra, int) else list(extra)
    for text, name, more in zip(texts, names, extras):
        n = len(lm.tokenizer(text)["input_ids"]) + more
        if n > limit:
            raise DataError(f"{name}: {n} {what} is longer than the model's context ({limit}); "
                            "shorten the input or use a model with a longer context")
