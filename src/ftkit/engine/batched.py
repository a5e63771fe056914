"""The model over features in one process, fast: batches of similar length, no Trainer.

Features are sorted by length and cut into batches (each padded only to its own longest feature), run under
``torch.inference_mode()``, reduced per batch by ``task.reduce_logits`` and put back in feature order. The
result is what the Trainer's prediction loop returns for the same features -- a numpy array (or a tuple of
them), every dimension after the first padded with -100 to the longest -- so ``task.decode`` takes either.
Building a Trainer costs tens of milliseconds a call (a server predicts once per request batch) and its loop
pads every batch to the longest feature in feature order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: what the Trainer pads predictions of different lengths with (``task.decode`` never reads it)
PAD = -100


def feature_lengths(features) -> np.ndarray:
    """Sub-tokens per feature (``input_ids`` lengths), read from the Arrow column without decoding rows."""
    import pyarrow.compute as pc

    ids = features.with_format("arrow")["input_ids"] if len(features) else None
    if ids is None:
        return np.zeros(0, dtype=np.int64)
    return pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)


def input_columns(task, model, features) -> list[str]:
    """The columns the model gets: the task's model columns that the forward takes, labels left out (no loss)."""
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    label_like = {"labels", "start_positions", "end_positions", "label"}
    return [c for c in task.model_columns if c in features.column_names and c in accepted and c not in label_like]


def forward_outputs(task, facts, model, tokenizer, features, batch_size: int, device) -> Any:
    """``task.reduce_logits`` outputs for ``features``, in feature order, as the Trainer's predict returns them."""
    import torch

    model.eval()
    model.to(device)
    ignore = set(getattr(model.config, "keys_to_ignore_at_inference", None) or ()) | {"loss"}

    def run(batch):
        out = model(**{k: v.to(device) for k, v in batch.items()})
        logits = tuple(v for k, v in out.items() if k not in ignore)
        return task.reduce_logits(logits[0] if len(logits) == 1 else logits, facts)

    with torch.inference_mode():
        return sorted_outputs(features, input_columns(task, model, features), task.collator(tokenizer, facts),
                              run, batch_size)


def sorted_outputs(features, columns: list[str], collate, run, batch_size: int) -> Any:
    """``run(padded batch)`` over ``features`` in batches of similar length (longest first: a batch too large
    for memory fails at once), its outputs (tensors, arrays or tuples of them) joined in feature order."""
    n = len(features)
    data = features.select_columns(columns).with_format(None)
    order = np.argsort(-feature_lengths(features), kind="stable")
    parts: list[tuple[np.ndarray, Any]] = []
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
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
