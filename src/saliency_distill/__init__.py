"""saliency-distill: make small language models better at a task by distilling what a larger
teacher model looks at (saliency rationales), after Ballout et al., NLDB 2024."""

from ._version import __version__
from .config import apply_overrides, build, config_hash, load_config, to_dict
from .data import Example, Prompt, Task, TaskConfig, get_task, list_tasks, prepare
from .errors import ConfigError, DataError, ModelError, SaliencyDistillError
from .experiment import ExperimentConfig
from .models import LoadedModel, ModelConfig, list_models, load_model

__all__ = [
    "ConfigError",
    "DataError",
    "Example",
    "ExperimentConfig",
    "LoadedModel",
    "ModelConfig",
    "ModelError",
    "Prompt",
    "SaliencyDistillError",
    "Task",
    "TaskConfig",
    "__version__",
    "apply_overrides",
    "build",
    "config_hash",
    "get_task",
    "list_models",
    "list_tasks",
    "load_config",
    "load_model",
    "prepare",
    "to_dict",
]
