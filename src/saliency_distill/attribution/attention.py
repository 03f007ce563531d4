"""Attention as attribution: how much the positions that predict the answer attend to each
prompt token, in the last layer (mean over heads), or propagated through all layers (rollout).

For an encoder-decoder model the decoder's last cross-attention layer is used (rollout is then
not defined and is refused). Attention weights are only returned by the eager implementation,
so the model is switched to it for the call and back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..errors import ConfigError
from ..models import LoadedModel
from .config import AttributionConfig
from .inputs import AttributionBatch, answer_logprob, autocast, embed
from .output import MethodOutput


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    before = getattr(model.config, "_attn_implementation", None)
    if before != "eager":
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before not in (None, "eager"):
            model.set_attn_implementation(before)


def _rollout(layers: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
    """Product over layers of 0.5 * (mean-head attention) + 0.5 * I, rows renormalised: (B, T, T)."""
    eye = torch.eye(layers[0].size(-1), device=mask.device).unsqueeze(0)
    joint = None
    for att in layers:
        a = 0.5 * att.float().mean(1) + 0.5 * eye  # (B, T, T)
        a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint
    return joint


@torch.no_grad()
def attention(lm: LoadedModel, batch: AttributionBatch, cfg: AttributionConfig) -> MethodOutput:
    if cfg.rollout and lm.is_seq2seq:
        raise ConfigError("config key 'attribution.rollout': not defined for encoder-decoder models")
    with eager_attention(lm.model), autocast(lm, cfg):
        f, out = answer_logprob(lm, batch, embed(lm, batch), output_attentions=True)
    if lm.is_seq2seq:
        att = out.cross_attentions[-1].float().mean(1)  # (B, A, T_enc)
        weights = batch.target_mask.float().unsqueeze(-1)
    else:
        full = _rollout(out.attentions, batch.attention_mask) if cfg.rollout else out.attentions[-1].float().mean(1)
        idx = batch.positions.unsqueeze(-1).expand(-1, -1, full.size(-1))
        att = full.gather(1, idx)  # (B, A, T): rows of the answer-predicting positions
        weights = batch.target_mask.float().unsqueeze(-1)
    scores = (att * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, T)
    return MethodOutput(scores, f)
