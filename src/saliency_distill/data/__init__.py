"""Tasks and data: reading datasets into examples, rendering prompts with content spans, splits."""

from .arithmetic import evaluate as evaluate_arithmetic
from .config import FieldMap, TaskConfig
from .dsbs import parse_llm_completion
from .example import Example, Prompt, make_example, render
from .prepare import SPLITS, load_prepared, make_splits, prepare, read_manifest
from .tasks import TASKS, Task, get_task, list_tasks

__all__ = [
    "SPLITS",
    "TASKS",
    "Example",
    "FieldMap",
    "Prompt",
    "Task",
    "TaskConfig",
    "evaluate_arithmetic",
    "get_task",
    "list_tasks",
    "load_prepared",
    "make_example",
    "make_splits",
    "parse_llm_completion",
    "prepare",
    "read_manifest",
    "render",
]
