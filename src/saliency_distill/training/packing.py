"""Batch layout: how an optimizer step's sequences become the rows a causal model reads.

An example is one or more encoded sequences (its "predict" and "explain" pairs) that usually
begin with the same prompt tokens. Three layouts compute the same losses:

- **separate**: every sequence in its own right-padded row (the usual layout);
- **shared prompt**: one row per example holding the common prompt once, then each sequence's
  remaining tokens (its tail). A 4D attention mask lets a tail see the shared prompt and itself
  but never another tail, and position ids restart every tail at the end of the prompt, so each
  tail is computed exactly as in its own sequence;
- **packed**: several examples' blocks side by side in one row (up to ``pack_length`` tokens),
  each attending only to itself: no padding inside a row.

Whatever the layout, the loss is read at ``target_index`` (flat indices into the rows) whose
next token is a target: the position before a target token *in its own sequence*, which for
the first token of a tail is the last shared token. So the LM head can run on those positions
alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import torch

from .features import IGNORE_INDEX, pad_batch

__all__ = ["Block", "causal_batch", "make_blocks", "seq2seq_batch"]


@dataclass
class Block:
    """One example's tokens as laid out in a row: ``shared`` prompt tokens, then the tails."""

    ids: list[int] = field(default_factory=list)  # row tokens: shared prompt, then each tail
    branch: list[int] = field(default_factory=list)  # 0: shared prompt; k >= 1: tail k
    positions: list[int] = field(default_factory=list)  # position id of every token
    sources: list[int] = field(default_factory=list)  # block-local index that predicts a target
    targets: list[int] = field(default_factory=list)  # the target token ids
    tasks: list[int] = field(default_factory=list)  # the task of every target
    seqs: list[int] = field(default_factory=list)  # the sequence (within the batch) of every target


def _shared_length(parts: Sequence[Mapping[str, Sequence[int]]]) -> int:
    """Tokens that every part begins with, stopping before any part's first labelled token."""
    limit = min(len(p["input_ids"]) for p in parts)
    for p in parts:
        labelled = [i for i, y in enumerate(p["labels"]) if y != IGNORE_INDEX]
        if labelled:
            limit = min(limit, labelled[0])
    first = parts[0]["input_ids"]
    n = 0
    while n < limit and all(p["input_ids"][n] == first[n] for p in parts):
        n += 1
    return n


def _readings(parts: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """An example's parts cut where the consistency ``view`` changes: a second reading of the input
    (words dropped) shares no prompt with the first, so each reading gets its own block."""
    return [list(run) for _, run in groupby(parts, key=lambda part: part.get("view", [0])[0])]


def make_blocks(
    items: Sequence[Mapping[str, Any]], share_prompt: bool, default_task: int = 0
) -> list[Block]:
    """Blocks of a micro-batch: one per example (shared prompt) or one per sequence.

    ``items`` are training items (``parts``: the example's encoded sequences, each with
    ``input_ids``, ``labels`` and optionally ``task``). Sequences are numbered in order.
    """
    groups = []
    for item in items:
        for parts in _readings(item["parts"]):
            if share_prompt and len(parts) > 1 and _shared_length(parts) > 0:
                groups.append(parts)
            else:  # nothing to share (e.g. the "predict: x" format): one block per sequence
                groups += [[part] for part in parts]
    blocks, seq = [], 0
    for parts in groups:
        shared = _shared_length(parts) if len(parts) > 1 else 0
        block = Block()
        block.ids += list(parts[0]["input_ids"][:shared])
        block.branch += [0] * shared
        block.positions += list(range(shared))
        for k, part in enumerate(parts, start=1):
            start = len(block.ids)  # where this tail begins in the block: sequence index q >= shared
            ids, labels = part["input_ids"], part["labels"]  # sits at block index start + q - shared
            block.ids += list(ids[shared:])
            block.branch += [k] * (len(ids) - shared)
            block.positions += list(range(shared, len(ids)))
            task = int(part["task"][0]) if "task" in part else default_task
            for q in range(1, len(ids)):
                if labels[q] != IGNORE_INDEX:
                    source = q - 1  # the position that predicts token q, in the sequence then the block
                    block.sources.append(source if source < shared else start + source - shared)
                    block.targets.append(int(labels[q]))
                    block.tasks.append(task)
                    block.seqs.append(seq)
            seq += 1
        blocks.append(block)
    return blocks


def _rows(blocks: Sequence[Block], pack_length: int | None) -> list[list[int]]:
    """Block indices per row: first fit in order, at most ``pack_length`` tokens a row (a longer
    block gets a row of its own); one block per row when ``pack_length`` is None."""
    if pack_length is None:
        return [[i] for i in range(len(blocks))]
    rows: list[list[int]] = []
    used: list[int] = []
    for i, block in enumerate(blocks):
        for r, n in enumerate(used):
            if n + len(block.ids) <= pack_length:
                rows[r].append(i)
                used[r] += len(block.ids)
                break
        else:
            rows.append([i])
            used.append(len(block.ids))
    return rows


def causal_batch(
    items: Sequence[Mapping[str, Any]], pad_token_id: int, share_prompt: bool = True,
    pack_length: int | None = None, default_task: int = 0,
) -> dict[str, torch.Tensor]:
    """Model inputs and loss targets of one micro-batch for a causal model.

    Returns ``input_ids`` (R, T), ``attention_mask`` ((R, T) when every row is one plain
    sequence, else a boolean (R, 1, T, T) mask, True where a token may attend),
    ``position_ids`` (R, T) with a 4D mask, and the loss targets ``target_index`` (N,) (flat
    indices into R * T), ``target_ids``, ``target_task``, ``target_seq`` (N,).
    """
    blocks = make_blocks(items, share_prompt, default_task)
    rows = _rows(blocks, pack_length)
    width = max(sum(len(blocks[i].ids) for i in row) for row in rows)
    n_rows = len(rows)
    input_ids = torch.full((n_rows, width), pad_token_id, dtype=torch.long)
    block_of = torch.full((n_rows, width), -1, dtype=torch.long)
    branch = torch.full((n_rows, width), -1, dtype=torch.long)
    positions = torch.zeros((n_rows, width), dtype=torch.long)
    index, targets, tasks, seqs = [], [], [], []
    for r, row in enumerate(rows):
        offset = 0
        for i in row:
            b = blocks[i]
            n = len(b.ids)
            input_ids[r, offset:offset + n] = torch.tensor(b.ids, dtype=torch.long)
            block_of[r, offset:offset + n] = i
            branch[r, offset:offset + n] = torch.tensor(b.branch, dtype=torch.long)
            positions[r, offset:offset + n] = torch.tensor(b.positions, dtype=torch.long)
            index += [r * width + offset + s for s in b.sources]
            targets += b.targets
            tasks += b.tasks
            seqs += b.seqs
            offset += n
    batch: dict[str, torch.Tensor] = {"input_ids": input_ids}
    plain = all(len(row) == 1 and set(blocks[row[0]].branch) <= {1} for row in rows)
    if plain:  # every row is one sequence: the model's own causal mask with padding
        batch["attention_mask"] = (block_of >= 0).long()
    else:
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        same_block = block_of[:, :, None] == block_of[:, None, :]
        visible = (branch[:, None, :] == 0) | (branch[:, :, None] == branch[:, None, :])
        batch["attention_mask"] = (causal & same_block & visible)[:, None]  # (R, 1, T, T)
        batch["position_ids"] = positions
    batch.update(_targets(index, targets, tasks, seqs))
    batch.update(_soft_targets(items))
    return batch


def seq2seq_batch(
    items: Sequence[Mapping[str, Any]], pad_token_id: int, default_task: int = 0
) -> dict[str, torch.Tensor]:
    """Encoder-decoder micro-batch: one padded row per sequence, the decoder labels as targets."""
    flat = [part for item in items for part in item["parts"]]
    batch = pad_batch(flat, pad_token_id)
    labels = batch["labels"]  # (B, A)
    index, targets, tasks, seqs = [], [], [], []
    for b, part in enumerate(flat):
        task = int(part["task"][0]) if "task" in part else default_task
        for t, y in enumerate(labels[b].tolist()):
            if y != IGNORE_INDEX:
                index.append(b * labels.size(1) + t)
                targets.append(y)
                tasks.append(task)
                seqs.append(b)
    batch.update(_targets(index, targets, tasks, seqs))
    batch.update(_soft_targets(items))
    return batch


def _soft_targets(items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Per sequence (numbered as the targets' ``target_seq``): ``seq_item`` (S,), the example it
    belongs to, and ``seq_teacher`` (S,), the teacher's log p of that option (NaN where the
    sequence is not a scored option), or ``seq_view`` (S,), a consistency option's reading (0 the
    whole input, 1 words dropped, -1 not such an option). Empty when there are neither."""
    parts = [(i, part) for i, item in enumerate(items) for part in item["parts"]]
    out = {}
    if any("teacher_logprob" in part for _, part in parts):
        out["seq_teacher"] = torch.tensor([float(part["teacher_logprob"][0]) if "teacher_logprob" in part
                                           else float("nan") for _, part in parts], dtype=torch.float32)
    if any("view" in part for _, part in parts):
        out["seq_view"] = torch.tensor([int(part["view"][0]) if "view" in part else -1 for _, part in parts],
                                       dtype=torch.long)
    if out:
        out["seq_item"] = torch.tensor([i for i, _ in parts], dtype=torch.long)
    return out


def _targets(index: list[int], targets: list[int], tasks: list[int], seqs: list[int]) -> dict[str, torch.Tensor]:
    return {
        "target_index": torch.tensor(index, dtype=torch.long),
        "target_ids": torch.tensor(targets, dtype=torch.long),
        "target_task": torch.tensor(tasks, dtype=torch.long),
        "target_seq": torch.tensor(seqs, dtype=torch.long),
    }
