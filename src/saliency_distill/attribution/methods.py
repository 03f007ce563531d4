"""The attribution methods' names: what the config accepts and the registry implements.

A module of its own, importing nothing of the package, so that the config can check a name
without importing the registry (whose methods import the config).
"""

from __future__ import annotations

ATTRIBUTION_METHODS: tuple[str, ...] = ("saliency", "input_x_gradient", "integrated_gradients", "attention")
