"""Every split a recipe names, read by the task, with the label set, the data summary and lint."""

from __future__ import annotations

import json
from typing import Any

from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.log import log

SPLITS = ("train", "validation", "test")


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
    train = task.read(d.train, "train", d.format, d.encoding)
    labels = task.labels(train)
    task = task.with_options(task.resolve_options(train, None))
    splits = {"train": train}
    if d.max_train_examples:
        splits["train"] = train.select(range(min(d.max_train_examples, len(train))))
    if d.validation:
        splits["validation"] = task.read(d.validation, "validation", d.format, d.encoding)
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
        splits["test"] = task.read(d.test, "test", d.format, d.encoding)
    for name in ("validation", "test"):
        if name in splits and getattr(d, name):
            task.check_labels(splits[name], labels, getattr(d, name))
    return task, splits, labels


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
