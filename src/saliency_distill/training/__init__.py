"""Training: supervised fine-tuning on (prompt, target) pairs, for the teacher and the student."""

from .features import IGNORE_INDEX, encode_pair, pad_batch
from .sft import TrainConfig, encode_pairs, last_checkpoint, train_supervised, trained_fingerprint, training_fingerprint

__all__ = [
    "IGNORE_INDEX",
    "TrainConfig",
    "encode_pair",
    "encode_pairs",
    "last_checkpoint",
    "pad_batch",
    "train_supervised",
    "trained_fingerprint",
    "training_fingerprint",
]
