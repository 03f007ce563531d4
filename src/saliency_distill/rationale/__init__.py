"""Rationales: word scores from token scores, top-k selection, and the append-only store."""

from .extract import RationaleConfig, random_rationales, reselect, reselect_row, select
from .stage import adopt_tune_rows, attribute_split, open_store, shard_path, store_path
from .store import RationaleStore, merge_stores, read_store
from .words import Word, content_words, word_scores

__all__ = [
    "RationaleConfig",
    "RationaleStore",
    "Word",
    "adopt_tune_rows",
    "attribute_split",
    "content_words",
    "merge_stores",
    "open_store",
    "random_rationales",
    "reselect",
    "reselect_row",
    "read_store",
    "select",
    "shard_path",
    "store_path",
    "word_scores",
]
