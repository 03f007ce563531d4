"""Models: the embedded GGUF registry and one loader for embedded names, folders and hub ids."""

from .gguf import ensure_converted
from .loading import LoadedModel, ModelConfig, load_model, native_dtype, release, resolve
from .registry import EMBEDDED_MODELS, EmbeddedModel, get_embedded, list_models

__all__ = [
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "LoadedModel",
    "ModelConfig",
    "ensure_converted",
    "get_embedded",
    "list_models",
    "load_model",
    "native_dtype",
    "release",
    "resolve",
]
