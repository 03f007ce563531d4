"""The attribution methods by name (the names themselves are in :mod:`.methods`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .methods import ATTRIBUTION_METHODS

if TYPE_CHECKING:
    from ..models import LoadedModel
    from .config import AttributionConfig
    from .inputs import AttributionBatch
    from .output import MethodOutput

Method = Callable[["LoadedModel", "AttributionBatch", "AttributionConfig"], "MethodOutput"]


def _methods() -> dict[str, Method]:
    from .attention import attention
    from .gradient import input_x_gradient, saliency
    from .integrated_gradients import integrated_gradients

    return {
        "saliency": saliency,
        "input_x_gradient": input_x_gradient,
        "integrated_gradients": integrated_gradients,
        "attention": attention,
    }


def list_methods() -> list[str]:
    return list(ATTRIBUTION_METHODS)


def get_method(name: str) -> Method:
    from ..errors import ConfigError

    methods = _methods()
    if name not in methods:
        raise ConfigError(f"unknown attribution method {name!r} (choose from: {', '.join(methods)})")
    return methods[name]
