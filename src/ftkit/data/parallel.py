"""Encoding in parallel: ``datasets.map`` as the engine plans it (worker processes, target file).

A task's ``encode`` calls :func:`map_examples` instead of ``examples.map``; the engine's feature cache
(``ftkit.engine.feature_cache``) decides, around the call, how many processes tokenize (``--workers``)
and which file the features are written to (``planned``). Outside such a plan, and for a
``datasets.IterableDataset`` (``data.streaming``, encoded lazily as it is read), ``map_examples`` is a
plain one-process ``map``. Counters kept inside a batch function would stay in the worker processes:
return them as a column and add it up afterwards (:func:`column_sum`).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

#: a worker is started only for this many examples or more (starting one costs about a second)
MIN_ROWS_PER_WORKER = 5000
#: up to this many examples (``map``'s own batch size, so the function sees the same single batch), an
#: encoding that is not written to the feature cache calls the function directly
DIRECT_ROWS = 1000


@dataclass
class MapPlan:
    workers: int = 1
    cache_file: str | None = None
    fingerprint: str | None = None
    used: list[bool] = field(default_factory=lambda: [False])


_PLAN: contextvars.ContextVar[MapPlan] = contextvars.ContextVar("ftkit_map_plan", default=MapPlan())


@contextmanager
def planned(workers: int = 1, cache_file: str | None = None, fingerprint: str | None = None):
    """Within the block, ``map_examples`` uses up to ``workers`` processes and writes to ``cache_file``."""
    token = _PLAN.set(MapPlan(workers, cache_file, fingerprint))
    try:
        yield
    finally:
        _PLAN.reset(token)


def workers_for(rows: int, workers: int) -> int:
    return max(1, min(workers, rows // MIN_ROWS_PER_WORKER))


def map_examples(examples, fn: Callable, *, remove_columns: list[str], desc: str = "Tokenizing",
                 features=None, with_indices: bool = True):
    """``examples.map(fn, batched=True, with_indices=True, ...)``, parallel and cached as planned."""
    from datasets import Dataset

    if not isinstance(examples, Dataset):
        return examples.map(fn, batched=True, with_indices=with_indices, remove_columns=remove_columns,
                            features=features)
    plan = _PLAN.get()
    if not plan.cache_file and 0 < len(examples) <= DIRECT_ROWS:
        return _map_directly(examples, fn, remove_columns, features, with_indices)
    kwargs: dict[str, Any] = {}
    n = workers_for(len(examples), plan.workers)
    if n > 1:
        kwargs["num_proc"] = n
    if plan.cache_file and not plan.used[0]:  # the first map of an encode writes the planned file
        plan.used[0] = True
        kwargs.update(cache_file_name=plan.cache_file, new_fingerprint=plan.fingerprint)
    return examples.map(fn, batched=True, with_indices=with_indices, remove_columns=remove_columns, desc=desc,
                        features=features, **kwargs)


def _map_directly(examples, fn: Callable, remove_columns: list[str], features, with_indices: bool):
    """What ``examples.map(fn, batched=True)`` returns for a set that fits one of its batches, without
    ``map``'s machinery (an Arrow writer, fingerprints, a progress bar: about 2 ms a call, what encoding a
    sentence costs). ``Predictor.predict`` encodes each served batch this way."""
    batch = examples[:]
    out = fn(batch, list(range(len(examples)))) if with_indices else fn(batch)
    kept = {k: v for k, v in batch.items() if k not in remove_columns and k not in out}
    return in_memory({**kept, **out}, features=features)


def in_memory(columns: dict[str, list], features=None):
    """A ``datasets.Dataset`` of these columns with a random fingerprint: ``Dataset.from_dict`` hashes its
    whole table to name it (about 2 ms for a sentence), a name ftkit never uses (its caches key on the
    input data); tasks build the examples of ``predict`` with it. Its ``map`` skips hashing too
    (:class:`ftkit.data.unhashed.UnhashedMaps`)."""
    from datasets.arrow_writer import OptimizedTypedSequence
    from datasets.fingerprint import generate_random_fingerprint
    from datasets.table import InMemoryTable

    from ftkit.data.unhashed import UnhashedMaps

    if features is not None:
        table = InMemoryTable.from_pydict(columns, schema=features.arrow_schema)
    else:  # the column types from_dict and map choose (input_ids as int32, attention_mask as int8...)
        table = InMemoryTable.from_pydict({k: OptimizedTypedSequence(v, col=k) for k, v in columns.items()})
    return UnhashedMaps(table, fingerprint=generate_random_fingerprint())


def rows_in_memory(rows: list[dict[str, Any]], empty_columns: list[str]):
    """:func:`in_memory` of records (``empty_columns`` when there are none)."""
    if not rows:
        return in_memory({c: [] for c in empty_columns})
    return in_memory({c: [r.get(c) for r in rows] for c in rows[0]})


def column_sum(features, column: str) -> int:
    """The sum of a numeric column of a (map-style) dataset, without loading it as Python objects."""
    from datasets import Dataset

    if not isinstance(features, Dataset) or column not in features.column_names or len(features) == 0:
        return 0
    import pyarrow.compute as pc

    return int(pc.sum(features.with_format("arrow")[column]).as_py() or 0)


def has_nulls(examples, column: str) -> bool:
    """Whether a column of a (map-style) dataset holds a null, read as Arrow (a stream: False)."""
    from datasets import Dataset

    if not isinstance(examples, Dataset) or len(examples) == 0:
        return False
    return examples.with_format("arrow")[column].null_count > 0
