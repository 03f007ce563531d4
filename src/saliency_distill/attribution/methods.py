"""The attribution methods' names: what the config accepts and the registry implements.

A module of its own, importing nothing of the package, so that the config can check a name
without importing the registry (whose methods import the config).
"""

from __future__ import annotations

ATTRIBUTION_METHODS: tuple[str, ...] = ("saliency", "input_x_gradient", "integrated_gradients", "attention")
# Methods whose scores are linear in the attributed quantity: the scores of log p(a) - log p(b)
# are those of log p(a) minus those of log p(b) (contrastive attribution).
LINEAR_METHODS: tuple[str, ...] = ("input_x_gradient", "integrated_gradients")
