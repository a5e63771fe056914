"""The model over features in one process, fast: batches of similar length, no Trainer.

Features are sorted by length and cut into batches (each padded only to its own longest feature: see
:func:`plan_batches` for where the cuts go), run under ``torch.inference_mode()``, reduced per batch by
``task.reduce_logits`` and put back in feature order. The
result is what the Trainer's prediction loop returns for the same features -- a numpy array (or a tuple of
them), every dimension after the first padded with -100 to the longest -- so ``task.decode`` takes either.
Building a Trainer costs tens of milliseconds a call (a server predicts once per request batch) and its loop
pads every batch to the longest feature in feature order.

Packed passes: for a task whose outputs are per token (``Task.outputs_per_token``: NER), a batch of inputs of
any length -- what a server gathers -- pads badly even when cut well. There, when packing costs less than the
padded passes, the batch's sequences are laid end to end in rows of ``PACK_ROW`` positions, each attending only
to itself (a block-diagonal attention mask) with its positions restarting at 0: the logits of every sequence are
those of its own pass (float noise), and the padding is gone. Whether a model packs exactly is checked once per
model on a probe (:func:`packs_exactly`: RoBERTa's offset positions, DistilBERT's missing ``position_ids``, a
causal model... do not, and keep padded passes).
"""

from __future__ import annotations

import contextlib
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
#: positions of a packed row (only inputs that fit one are packed: see _groups). Attention in a row costs row x row whatever
#: it masks; 64 leaves less of it wasted than 128 and packs CoNLL-length inputs as tightly (MiniLM on 2 cores,
#: random groups of 57 CoNLL sentences: 48-80 alike, 128 about 4% slower, 192 about 12%)
PACK_ROW = 64
#: attention over a packed row costs about row x row / this in positions of the rest of a pass (per layer, the
#: scores and the weighted sum against the projections and the feed-forward of one position, BERT-sized models)
ATTENTION_PAIRS_PER_POSITION = 2300
#: pack only when the packed pass costs at most this share of the padded passes (a mask and a copy cost too)
PACK_GAIN = 0.9


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


def plan_cost(plan: list[np.ndarray], lengths: np.ndarray, pass_positions: int) -> int:
    """What the padded passes of ``plan`` cost, in positions: per pass ``pass_positions`` plus its inputs x its
    longest (the cost :func:`plan_batches` minimises)."""
    return sum(pass_positions + len(b) * int(lengths[b].max()) for b in plan)


def pack_rows(lengths: list[int], row: int) -> list[list[int]]:
    """Indices into ``lengths`` packed into rows of at most ``row`` positions (first fit, longest first)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(row - lengths[i])
    return rows


def packed_cost(lengths: list[int], pass_positions: int) -> tuple[int, list[list[int]], int]:
    """(cost in positions, rows, row length) of one packed pass over sequences of ``lengths``."""
    rows = pack_rows(lengths, PACK_ROW)
    width = max(sum(lengths[i] for i in r) for r in rows)
    return pass_positions + len(rows) * (width + width * width // ATTENTION_PAIRS_PER_POSITION), rows, width


def packs_exactly(model, device) -> bool:
    """Whether ``model`` gives a sequence laid in a packed row (block-diagonal mask, positions from 0) the logits
    of its own pass: measured once per model on two short probes (max abs difference 1e-4)."""
    import torch

    cached = getattr(model, "_ftkit_packs_exactly", None)
    if cached is not None:
        return cached
    ok = False
    if "position_ids" in _forward_parameters(type(model)):
        try:
            with torch.inference_mode():
                vocab = int(getattr(model.config, "vocab_size", 0) or 0)
                gen = torch.Generator().manual_seed(0)
                seqs = [torch.randint(min(5, vocab - 1), vocab, (n,), generator=gen) for n in (7, 4)]
                alone = [model(input_ids=s[None].to(device)).logits[0] for s in seqs]
                ids = torch.cat(seqs)[None].to(device)
                seg = torch.tensor([k for k, s in enumerate(seqs) for _ in range(len(s))])
                mask = (seg[:, None] == seg[None, :])[None, None].to(device)
                pos = torch.cat([torch.arange(len(s)) for s in seqs])[None].to(device)
                out = model(input_ids=ids, position_ids=pos, attention_mask=mask).logits[0]
                ok = all(float((a - b).abs().max()) <= 1e-4
                         for a, b in zip(torch.split(out, [len(s) for s in seqs]), alone))
        except Exception:  # noqa: BLE001 - a model that does not take these inputs keeps padded passes
            ok = False
    try:
        model._ftkit_packs_exactly = ok
    except AttributeError:
        pass
    return ok


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

    columns = input_columns(task, model, features)
    from ftkit.engine.cpu_linear import packed_linears

    # on a CPU, the linear layers run on oneDNN with weights packed once (see cpu_linear)
    packing_weights = packed_linears(model) if torch.device(device).type == "cpu" else contextlib.nullcontext()
    with torch.inference_mode(), packing_weights:
        if getattr(task, "outputs_per_token", False) and packs_exactly(model, device):
            def run_packed(ids, types, positions, mask):
                inputs = {"input_ids": ids, "position_ids": positions, "attention_mask": mask}
                if types is not None:  # (present only when the model takes it: ``columns``)
                    inputs["token_type_ids"] = types
                return run(inputs)

            return sorted_outputs(features, columns, task.collator(tokenizer, facts), run, batch_size,
                                  pass_positions_for(device), run_packed)
        return sorted_outputs(features, columns, task.collator(tokenizer, facts), run, batch_size,
                              pass_positions_for(device))


def sorted_outputs(features, columns: list[str], collate, run, batch_size: int,
                   pass_positions: int = CPU_PASS_POSITIONS, run_packed=None) -> Any:
    """``run(padded batch)`` over ``features`` in batches of similar length (:func:`plan_batches`; longest
    first: a batch too large for memory fails at once), its outputs (tensors, arrays or tuples of them)
    joined in feature order. With ``run_packed(ids, token_types, positions, mask)`` (outputs per token), a
    group of ``batch_size`` inputs whose planned passes pad more than a packed pass costs runs packed."""
    n = len(features)
    parts: list[tuple[np.ndarray, Any]] = []
    # the model's columns only, as Python objects (one copy of the dataset's metadata, about a millisecond)
    data = features.select_columns(columns)
    data = data if data.format.get("type") is None else data.with_format(None)
    lengths = feature_lengths(features)
    for group in _groups(lengths, batch_size, pass_positions, run_packed is not None):
        if isinstance(group, tuple):  # (indices, rows, width): one packed pass
            idx, rows, width = group
            cols = data[idx.tolist()]
            parts.append((idx, _numpy(_packed_pass(cols, rows, width, run_packed))))
            continue
        cols = data[group.tolist()]
        parts.append((group, _numpy(run(collate([{c: cols[c][i] for c in columns} for i in range(len(group))])))))
    if not parts:
        return np.zeros((0,), dtype=np.float32)
    return _in_order(parts, n)


def _groups(lengths: np.ndarray, batch_size: int, pass_positions: int, packing: bool):
    """The planned padded passes (:func:`plan_batches`); with ``packing``, each run of ``batch_size``
    length-sorted inputs is planned on its own, and its inputs that fit a ``PACK_ROW`` row run as one packed
    pass ``(indices, rows, width)`` where that costs at most ``PACK_GAIN`` of their padded passes (inputs of any
    length, as a server gathers); longer ones keep padded passes (a row as long as the longest input would make
    every row's attention cost that length squared)."""
    if not packing:
        yield from plan_batches(lengths, batch_size, pass_positions)
        return
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        long_, short = idx[lengths[idx] > PACK_ROW], idx[lengths[idx] <= PACK_ROW]
        for part, may_pack in ((long_, False), (short, True)):
            if not len(part):
                continue
            plan = plan_batches(lengths[part], batch_size, pass_positions)
            if may_pack and len(part) > 1:
                padded = plan_cost(plan, lengths[part], pass_positions)
                cost, rows, width = packed_cost([int(x) for x in lengths[part]], pass_positions)
                if cost <= PACK_GAIN * padded:
                    yield part, rows, width
                    continue
            yield from (part[b] for b in plan)


def _packed_pass(cols: dict, rows: list[list[int]], width: int, run_packed):
    """One pass over the inputs in ``cols`` laid end to end in ``rows``; outputs split back per input,
    ``[inputs, longest, ...]`` padded with PAD as a padded pass would return them."""
    import torch

    ids = cols["input_ids"]
    types = cols.get("token_type_ids")
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    # each input's row and offset there, for all inputs at once: rows laid end to end, offsets from each row's start
    order = np.fromiter((i for members in rows for i in members), dtype=np.int64, count=len(ids))
    sizes = [len(members) for members in rows]
    starts = np.cumsum(lengths[order]) - lengths[order]
    row_in, offset_in = np.empty_like(order), np.empty_like(order)
    row_in[order] = np.repeat(np.arange(len(rows)), sizes)
    offset_in[order] = starts - np.repeat(starts[np.cumsum(sizes) - sizes], sizes)
    # every position of every input, as (row, column) of the packed batch, in input order
    flat_row = np.repeat(row_in, lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat_col = np.repeat(offset_in, lengths) + within
    r = len(rows)

    def lay(values, fill: int) -> torch.Tensor:
        out = np.full((r, width), fill, dtype=np.int64)
        out[flat_row, flat_col] = values
        return torch.from_numpy(out)

    input_ids = lay(np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]), 0)
    token_types = lay(np.concatenate([np.asarray(x, dtype=np.int64) for x in types]), 0) if types is not None else None
    positions = lay(within, 0)
    segment = lay(np.arange(len(ids)).repeat(lengths), -1)
    # each position attends to its own sequence; a padding position to itself alone (its output is dropped)
    mask = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    mask |= torch.eye(width, dtype=torch.bool)[None]
    out = _numpy(run_packed(input_ids, token_types, positions, mask[:, None]))
    longest = int(lengths.max())
    flat_out = np.repeat(np.arange(len(ids)), lengths)

    def split(x: np.ndarray) -> np.ndarray:
        result = np.full((len(ids), longest, *x.shape[2:]), PAD, dtype=x.dtype)
        result[flat_out, within] = x[flat_row, flat_col]
        return result

    return type(out)(split(v) for v in out) if isinstance(out, (tuple, list)) else split(out)


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
