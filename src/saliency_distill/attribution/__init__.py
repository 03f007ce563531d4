"""Attribution: score each prompt token by its influence on the teacher's answer."""

from .api import attribute, iter_attribute, iter_contrast
from .config import AttributionConfig
from .integrated_gradients import quadrature
from .output import MethodOutput, TokenScores
from .registry import ATTRIBUTION_METHODS, get_method, list_methods

__all__ = [
    "ATTRIBUTION_METHODS",
    "AttributionConfig",
    "MethodOutput",
    "TokenScores",
    "attribute",
    "get_method",
    "iter_attribute",
    "iter_contrast",
    "list_methods",
    "quadrature",
]
