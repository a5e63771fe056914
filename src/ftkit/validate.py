"""`ftkit validate`: check data with the task's own readers, without training.

Errors (unreadable records, eval labels unseen in training, ...) and warnings (empty or
duplicate examples, task-specific oddities, inputs longer than the model's window) are
reported as ``file:line: message`` lines.
"""

from __future__ import annotations

from collections import Counter
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
    from ftkit.engine import make_task

    task = make_task(cfg.task, cfg.task_options)
    report = Report()
    d = cfg.data
    paths = {"train": d.train, "validation": d.validation, "test": d.test}
    if not any(paths.values()):
        raise FtkitError("no data to validate", hint="pass --train/--validation/--test FILE")
    splits = {}
    for name, path in paths.items():
        if not path:
            continue
        try:
            splits[name] = task.read(path, name, d.format, d.encoding)
        except FtkitError as e:
            report.errors.append(e.one_line())
    labels = None
    if "train" in splits:
        try:
            labels = task.labels(splits["train"])
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
    from ftkit.families import load_config, load_tokenizer, max_length_for

    info = load_config(model)
    tokenizer = load_tokenizer(info)
    max_length = max_length_for(info, tokenizer, cfg.training.max_length)
    for name, ds in splits.items():
        features = task.encode(ds, tokenizer, labels, max_length, train=False)
        windows = Counter(features["example_id"])
        long = sum(1 for n in windows.values() if n > 1)
        report.summary[name]["longer_than_window"] = long
        if long:
            report.warnings.append(
                f"{getattr(cfg.data, name)}: {long} of {len(ds)} examples exceed the model's {max_length} sub-tokens"
                " and will be split into windows")
