"""The model over features in one process, fast: batches of similar length, no Trainer.

Features are sorted by length and cut into batches (each padded only to its own longest feature: see
:func:`plan_batches` for where the cuts go), run under ``torch.inference_mode()``, reduced per batch by
``task.reduce_logits`` and put back in feature order. The
result is what the Trainer's prediction loop returns for the same features -- a numpy array (or a tuple of
them), every dimension after the first padded with -100 to the longest -- so ``task.decode`` takes either.
Building a Trainer costs tens of milliseconds a call (a server predicts once per request batch) and its loop
pads every batch to the longest feature in feature order.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

#: what the Trainer pads predictions of different lengths with (``task.decode`` never reads it)
PAD = -100
#: what one forward pass costs on a CPU beside its positions, in positions: measured with MiniLM on 2 cores
#: (``bench/batch_plan.py``: 5-8 ms a pass plus 0.14-0.17 ms a position, 38-49 positions from run to run;
#: the plan's cost changes little within that range); a GPU pass is cheap per position, so there it is larger
CPU_PASS_POSITIONS = 48
GPU_PASS_POSITIONS = 4096
#: above this many features the cuts are every ``batch_size`` (sorted that many are alike in length)
PLAN_LIMIT = 8192


def feature_lengths(features) -> np.ndarray:
    """Sub-tokens per feature (``input_ids`` lengths), read from the Arrow column without decoding rows."""
    import pyarrow.compute as pc

    ids = features.with_format("arrow")["input_ids"] if len(features) else None
    if ids is None:
        return np.zeros(0, dtype=np.int64)
    return pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)


def plan_batches(lengths: np.ndarray, batch_size: int, pass_positions: int = CPU_PASS_POSITIONS) -> list[np.ndarray]:
    """Feature indices cut into batches of at most ``batch_size``, longest first, each batch a run of the
    length-sorted order, the cuts placed where they cost least: a batch costs ``pass_positions`` plus its
    padded positions (size x its longest feature). Batches of a large set sorted by length are alike, so
    cutting every ``batch_size`` is nearly free of padding; a server's batch of a few dozen inputs of any
    length is not: one sentence of 60 sub-tokens among 30 of 15 would make the pass cost 1,800 positions
    instead of about 700 in two passes. The cuts are exact (dynamic programming over the sorted lengths)."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    n = len(order)
    if n <= batch_size and n and pass_positions >= n * (int(lengths[order[0]]) - int(lengths[order[-1]])):
        return [order]  # one pass can cost no more than any cut (the common case for a few inputs)
    if n > PLAN_LIMIT or batch_size <= 1:
        return [order[s:s + batch_size] for s in range(0, n, batch_size)]
    longest = np.asarray(lengths, dtype=np.int64)[order]
    best = np.zeros(n + 1, dtype=np.int64)  # best[i]: the least cost of the first i sorted features
    cut = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        starts = np.arange(max(0, i - batch_size), i)  # the last batch is starts..i-1, its longest the first
        costs = best[starts] + pass_positions + (i - starts) * longest[starts]
        k = int(np.argmin(costs))
        best[i], cut[i] = costs[k], starts[k]
    batches, i = [], n
    while i > 0:
        batches.append(order[cut[i]:i])
        i = int(cut[i])
    return batches[::-1]


def pass_positions_for(device) -> int:
    return GPU_PASS_POSITIONS if getattr(device, "type", str(device)) not in ("cpu", "mps") else CPU_PASS_POSITIONS


def input_columns(task, model, features) -> list[str]:
    """The columns the model gets: the task's model columns that the forward takes, labels left out (no loss)."""
    accepted = _forward_parameters(type(model))
    label_like = {"labels", "start_positions", "end_positions", "label"}
    return [c for c in task.model_columns if c in features.column_names and c in accepted and c not in label_like]


@functools.lru_cache(maxsize=None)
def _forward_parameters(model_class) -> frozenset[str]:
    import inspect

    return frozenset(inspect.signature(model_class.forward).parameters)


def forward_outputs(task, facts, model, tokenizer, features, batch_size: int, device) -> Any:
    """``task.reduce_logits`` outputs for ``features``, in feature order, as the Trainer's predict returns them."""
    import torch

    if model.training:  # (both walk every module: a few milliseconds, paid by a server on every batch)
        model.eval()
    if next(model.parameters()).device != torch.device(device):
        model.to(device)
    ignore = set(getattr(model.config, "keys_to_ignore_at_inference", None) or ()) | {"loss"}

    def run(batch):
        out = model(**{k: v.to(device) for k, v in batch.items()})
        logits = tuple(v for k, v in out.items() if k not in ignore)
        return task.reduce_logits(logits[0] if len(logits) == 1 else logits, facts)

    with torch.inference_mode():
        return sorted_outputs(features, input_columns(task, model, features), task.collator(tokenizer, facts),
                              run, batch_size, pass_positions_for(device))


def sorted_outputs(features, columns: list[str], collate, run, batch_size: int,
                   pass_positions: int = CPU_PASS_POSITIONS) -> Any:
    """``run(padded batch)`` over ``features`` in batches of similar length (:func:`plan_batches`; longest
    first: a batch too large for memory fails at once), its outputs (tensors, arrays or tuples of them)
    joined in feature order."""
    n = len(features)
    parts: list[tuple[np.ndarray, Any]] = []
    # the model's columns only, as Python objects (one copy of the dataset's metadata, about a millisecond)
    data = features.select_columns(columns)
    data = data if data.format.get("type") is None else data.with_format(None)
    for idx in plan_batches(feature_lengths(features), batch_size, pass_positions):
        cols = data[idx.tolist()]
        parts.append((idx, _numpy(run(collate([{c: cols[c][i] for c in columns} for i in range(len(idx))])))))
    if not parts:
        return np.zeros((0,), dtype=np.float32)
    return _in_order(parts, n)


def _numpy(x):
    if isinstance(x, (tuple, list)):
        return type(x)(_numpy(v) for v in x)
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _in_order(parts: list[tuple[np.ndarray, Any]], n: int):
    """Per-batch outputs (same nesting each) -> one array per leaf, rows in feature order, padded with PAD."""
    first = parts[0][1]
    if isinstance(first, (tuple, list)):
        return type(first)(_in_order([(idx, out[i]) for idx, out in parts], n) for i in range(len(first)))
    shape = [n] + [max(out.shape[d] for _, out in parts) for d in range(1, first.ndim)]
    result = np.full(shape, PAD, dtype=first.dtype)
    for idx, out in parts:
        result[(idx, *(slice(0, s) for s in out.shape[1:]))] = out
    return result
