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
    kwargs: dict[str, Any] = {}
    n = workers_for(len(examples), plan.workers)
    if n > 1:
        kwargs["num_proc"] = n
    if plan.cache_file and not plan.used[0]:  # the first map of an encode writes the planned file
        plan.used[0] = True
        kwargs.update(cache_file_name=plan.cache_file, new_fingerprint=plan.fingerprint)
    return examples.map(fn, batched=True, with_indices=with_indices, remove_columns=remove_columns, desc=desc,
                        features=features, **kwargs)


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
