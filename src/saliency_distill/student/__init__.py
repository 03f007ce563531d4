"""The student stage: training modes (what each learns), training and evaluation of every
(mode, seed), and early stopping on the validation split."""

from .modes import DEFAULT_MODES, MODES, Mode, build_pairs, templates
from .stage import EarlyStopConfig, StudentConfig, run_dir_of, train_and_evaluate

__all__ = [
    "DEFAULT_MODES",
    "MODES",
    "EarlyStopConfig",
    "Mode",
    "StudentConfig",
    "build_pairs",
    "run_dir_of",
    "templates",
    "train_and_evaluate",
]
