"""`ftkit validate`: check data with the task's own readers, without training.

Errors (unreadable records, eval labels unseen in training, ...) and warnings (empty or
duplicate examples, task-specific oddities, inputs longer than the model's window) are
reported as ``file:line: message`` lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftkit.config import RunConfig
from ftkit.errors import FtkitError


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def exit_code(self, strict: bool) -> int:
        if self.errors:
            return 2
        return 1 if strict and self.warnings else 0


def validate_data(cfg: RunConfig, model: str | None = None) -> Report:
    from ftkit.engine.splits import load_split
    from ftkit.tasks import make_task

    task = make_task(cfg.task, cfg.task_options)
    report = Report()
    d = cfg.data
    paths = {"train": d.train, "validation": d.validation, "test": d.test}
    if not any(paths.values()):
        raise FtkitError("no data to validate", hint="pass --train/--validation/--test FILE")
    splits, labels = {}, None
    for name, path in paths.items():  # train first: its data decides options the other splits are read with
        if not path:
            continue
        try:
            splits[name] = load_split(task, path, name, cfg)
        except FtkitError as e:
            report.errors.append(e.one_line())
            continue
        if name == "train":
            try:
                labels = task.labels(splits["train"])
                task = task.with_options(task.resolve_options(splits["train"], None))
            except FtkitError as e:
                report.errors.append(f"{d.train}: {e.one_line()}")
    for name, ds in splits.items():
        report.summary[name] = task.data_summary(ds, name)
        report.warnings += [f"{where}: {msg}" for where, msg in task.lint(ds, name)]
        if labels is not None and name != "train":
            try:
                task.check_labels(ds, labels, paths[name])
            except FtkitError as e:
                report.errors.append(e.one_line())
    if model and labels is not None and not report.errors:
        _check_lengths(task, cfg, model, splits, labels, report)
    return report


def _check_lengths(task, cfg: RunConfig, model: str, splits, labels, report: Report) -> None:
    import numpy as np

    from ftkit.engine.feature_cache import encode_cached
    from ftkit.engine.models import resolve_facts
    from ftkit.engine.splits import workers_of
    from ftkit.families import load_config, load_tokenizer

    info = load_config(model)
    tokenizer = load_tokenizer(info)
    task, facts = resolve_facts(task, splits["train"], labels, info, tokenizer, cfg.training.max_length)
    max_length = facts.max_length
    for name, ds in splits.items():
        features = encode_cached(task, facts, ds, tokenizer, train=False, workers=workers_of(cfg))
        windows = np.bincount(features.with_format("arrow")["example_id"].to_numpy())
        long = int((windows > 1).sum())
        report.summary[name]["longer_than_window"] = long
        if long:
            report.warnings.append(
                f"{getattr(cfg.data, name)}: {long} of {len(ds)} examples exceed the model's {max_length} sub-tokens"
                " and will be split into windows")
