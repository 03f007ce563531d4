"""Integrated gradients over the prompt embeddings, with the interpolation steps batched.

scores_t = (x_t - b_t) . sum_k w_k grad f(b + a_k (x - b))_t, for prompt positions t. The answer
tokens of a causal model keep their embeddings: they are the target, not features. Completeness
(sum of scores = f(x) - f(b)) holds in the limit; the quadrature rule decides how fast it is
approached: Gauss-Legendre is exact for polynomials of degree 2m-1 and needs far fewer passes
than the Riemann sums at the same gap.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models import LoadedModel
from .config import AttributionConfig
from .inputs import AttributionBatch, answer_logprob, embed, repeat
from .output import MethodOutput

# Sequences per forward pass: batch x steps is split into chunks of about this size.
INTERNAL_BATCH = 64


def quadrature(rule: str, steps: int, power: float = 1.0) -> tuple[list[float], list[float]]:
    """Points a_k in [0, 1] and weights w_k (summing to 1) of a rule with ``steps`` points.

    With ``power`` p > 1 the rule is applied after the substitution a = u^p: the integral of
    g(a) over [0, 1] equals that of g(u^p) p u^(p-1), so the points become u_k^p and the weights
    w_k p u_k^(p-1). The points crowd towards a = 0, where a path from a zero baseline crosses
    the region in which RMSNorm's epsilon matters and the integrand is steep.
    """
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        u, w = (nodes + 1) / 2, weights / 2
    elif rule == "riemann_middle":
        u, w = (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    elif rule == "riemann_trapezoid":
        if steps == 1:
            u, w = np.ones(1), np.ones(1)
        else:
            u, w = np.arange(steps) / (steps - 1), np.full(steps, 1.0 / (steps - 1))
            w[0] = w[-1] = 0.5 / (steps - 1)
    else:
        raise ValueError(f"unknown quadrature rule {rule!r}")
    if power != 1.0:
        u, w = u**power, w * power * u ** (power - 1)
    return [float(a) for a in u], [float(x) for x in w]


def baseline_embeddings(
    lm: LoadedModel, batch: AttributionBatch, x: torch.Tensor, kind: str, scope: str = "prompt"
) -> torch.Tensor:
    """x with the moved positions replaced by the baseline (zero, pad-token or mean embedding):
    every prompt position, or (scope "content") only the feature positions of ``batch``."""
    table = lm.model.get_input_embeddings().weight.detach()  # (V, H)
    if kind == "zero":
        fill = torch.zeros(x.size(-1), dtype=x.dtype, device=x.device)
    elif kind == "mean":
        fill = table.float().mean(0).to(x.dtype)
    else:
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        fill = table[pad]
    mask = (batch.feature_mask if scope == "content" else batch.prompt_mask).unsqueeze(-1)  # (B, T, 1)
    return torch.where(mask, fill.expand_as(x), x)


def integrated_gradients(lm: LoadedModel, batch: AttributionBatch, cfg: AttributionConfig) -> MethodOutput:
    x = embed(lm, batch).detach()  # (B, T, H)
    b = baseline_embeddings(lm, batch, x, cfg.baseline, cfg.scope)
    alphas, weights = quadrature(cfg.quadrature, cfg.steps, cfg.path_power)
    bsz = x.size(0)
    per_pass = max(1, INTERNAL_BATCH // bsz)
    total = torch.zeros_like(x)
    for start in range(0, len(alphas), per_pass):
        a = torch.tensor(alphas[start:start + per_pass], dtype=x.dtype, device=x.device)
        w = torch.tensor(weights[start:start + per_pass], dtype=x.dtype, device=x.device)
        n = a.numel()
        # (n*B, T, H), step-major: rows k*B .. k*B+B-1 are step k.
        points = (b.unsqueeze(0) + a.view(n, 1, 1, 1) * (x - b).unsqueeze(0)).reshape(n * bsz, *x.shape[1:])
        points.requires_grad_(True)
        f, _ = answer_logprob(lm, repeat(batch, n), points)
        (grad,) = torch.autograd.grad(f.sum(), points)
        total += (grad.view(n, bsz, *x.shape[1:]) * w.view(n, 1, 1, 1)).sum(0)
    with torch.no_grad():
        both = torch.cat([x, b])
        f_both, _ = answer_logprob(lm, repeat(batch, 2), both)
    scores = ((x - b) * total).sum(-1)  # (B, T)
    return MethodOutput(scores, f_both[:bsz], f_both[bsz:])
