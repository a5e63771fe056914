"""Every split a recipe names, read by the task, with the label set, the data summary and lint.

Splits are read by ``ftkit.data.stream``: streamed into memory-mapped Arrow (cached, in ``data.workers``
processes for large files), the label set, summary and lint coming from the profile made in the same
pass. With ``data.streaming`` the training split stays a ``datasets.IterableDataset``, read again
lazily while training.
"""

from __future__ import annotations

import json
from typing import Any

from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.log import log

SPLITS = ("train", "validation", "test")
#: examples a stream is shuffled within (``datasets.IterableDataset.shuffle``)
STREAM_SHUFFLE_BUFFER = 10_000


def workers_of(cfg: RunConfig) -> int:
    """``data.workers``, or every core this process may use."""
    from ftkit.data.stream import default_workers

    return cfg.data.workers or default_workers()


def load_split(task, path: str, split: str, cfg: RunConfig, stream: bool = False):
    """One split: a memory-mapped ``datasets.Dataset`` (a stream with ``stream``), its profile attached."""
    from ftkit.data.stream import build_split, stream_split
    from ftkit.tasks.base import Task

    d = cfg.data
    if type(task).iter_examples is Task.iter_examples:  # a plugin that implements read() only
        ds = task.read(path, split, d.format, d.encoding)
        task.profile(ds, split)
        return ds
    if stream:
        return stream_split(task, path, split, d.format, d.encoding, workers_of(cfg))
    return build_split(task, path, split, d.format, d.encoding, workers_of(cfg))


def read_splits(task, cfg: RunConfig) -> tuple[Any, dict[str, Any], list[str]]:
    """``(task, {split: examples}, labels)``: read, validated and label-checked.

    The label set comes from the whole training file, before ``max_train_examples`` or a
    ``validation_fraction`` carve-out, so neither can make a rare label unknown. The returned task has
    the options the training data decides (e.g. the SQuAD version) resolved, and the evaluation
    splits are read with them.
    """
    d = cfg.data
    if not d.train:
        raise FtkitError("no training data", hint="pass --train FILE or set data.train in the recipe")
    if d.streaming and d.validation_fraction:
        raise FtkitError("data.streaming cannot carve data.validation_fraction out of a stream (it has no length)",
                         hint="pass --validation FILE")
    train = load_split(task, d.train, "train", cfg, stream=d.streaming)
    if d.streaming:  # examples in a random order within a window of the stream, drawn from the seed
        train = _keep_profile(train, train.shuffle(seed=cfg.training.seed, buffer_size=STREAM_SHUFFLE_BUFFER))
    labels = task.labels(train)
    task = task.with_options(task.resolve_options(train, None))
    splits = {"train": train}
    if d.max_train_examples:
        if d.streaming:
            splits["train"] = _keep_profile(train, train.take(d.max_train_examples))
        else:
            splits["train"] = train.select(range(min(d.max_train_examples, len(train))))
    if d.validation:
        splits["validation"] = load_split(task, d.validation, "validation", cfg)
    elif d.validation_fraction:
        n = len(splits["train"])
        if round(n * d.validation_fraction) < 1 or n - round(n * d.validation_fraction) < 1:
            raise FtkitError(
                f"data.validation_fraction={d.validation_fraction} of {n} training examples leaves an empty split",
                file=d.train, hint="use a larger training file, another fraction, or --validation FILE",
            )
        parts = splits["train"].train_test_split(test_size=d.validation_fraction, seed=cfg.training.seed)
        splits["train"], splits["validation"] = parts["train"], parts["test"]
    if d.test:
        splits["test"] = load_split(task, d.test, "test", cfg)
    for name in ("validation", "test"):
        if name in splits and getattr(d, name):
            task.check_labels(splits[name], labels, getattr(d, name))
    return task, splits, labels


def _keep_profile(source, derived):
    """A stream cut short (``take``) is summarised by the profile of the whole stream."""
    from ftkit.data.profile import PROFILE_ATTR

    setattr(derived, PROFILE_ATTR, getattr(source, PROFILE_ATTR))
    return derived


def describe(task, splits: dict[str, Any], show: bool = True) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``(summary per split, lint warnings)``; with ``show`` both are printed (at most 10 warnings)."""
    summary = {name: task.data_summary(ds, name) for name, ds in splits.items()}
    warnings = [w for name, ds in splits.items() for w in task.lint(ds, name)]
    if show:
        for name, s in summary.items():
            log(f"  {name}: {json.dumps(s)}")
        for where, msg in warnings[:10]:
            log(f"  warning: {where}: {msg}")
        if len(warnings) > 10:
            log(f"  ... and {len(warnings) - 10} more warnings (see `ftkit validate`)")
    return summary, warnings
