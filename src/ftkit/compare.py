"""``ftkit compare RUN_OR_SWEEP... [--json]``: runs side by side.

One row per run folder (a sweep folder counts as its trials, pruned ones included): task, model, the
recipe keys whose values differ between the rows, validation and test metrics, train time, steps and
trainable parameters. Everything is read from the folders (``run.json``, ``recipe.yaml``,
``eval_<split>.json``, a sweep's ``sweep.json``); nothing is loaded or recomputed. ``ftkit report``
builds its page from the same :class:`Comparison`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ftkit.errors import FtkitError

SPLITS = ("validation", "test")


@dataclass
class RunRow:
    """One run (or one trial of a sweep) as the comparison shows it."""

    name: str
    path: Path
    task: str
    model: str
    #: the task's selection metric (``f1``, ``chrf``...)
    metric: str
    #: ``complete`` or ``pruned`` (a sweep trial stopped early)
    state: str = "complete"
    #: the sweep the trial belongs to, and whether it is that sweep's best trial
    sweep: str | None = None
    best: bool = False
    #: the resolved recipe by dotted key
    recipe: dict[str, Any] = field(default_factory=dict)
    #: scalar scores per split: ``{"validation": {"f1": 0.8, ...}, "test": {...}}``
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    train_time_s: float | None = None
    steps: int | None = None
    #: ``{"trainable": N, "total": M}`` (run.json)
    parameters: dict[str, int] | None = None

    def score(self, split: str) -> float | None:
        return self.metrics.get(split, {}).get(self.metric)


@dataclass
class SweepInfo:
    """A sweep folder: its ``sweep.json`` and its trials' rows."""

    name: str
    path: Path
    meta: dict[str, Any]
    rows: list[RunRow]


@dataclass
class Comparison:
    rows: list[RunRow]
    #: recipe keys whose values differ between the rows
    differing: list[str]
    sweeps: list[SweepInfo]

    def to_json(self) -> dict[str, Any]:
        return {
            "differing": self.differing,
            "runs": [{
                "name": r.name, "path": str(r.path), "task": r.task, "model": r.model, "state": r.state,
                "sweep": r.sweep, "best": r.best, "metric": r.metric,
                "hyperparameters": {k: r.recipe.get(k) for k in self.differing},
                "validation": r.metrics.get("validation"), "test": r.metrics.get("test"),
                "train_time_s": r.train_time_s, "steps": r.steps, "parameters": r.parameters,
            } for r in self.rows],
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and cells of the comparison as text (what ``ftkit compare`` prints and the report shows)."""
        metrics = {r.metric for r in self.rows}
        one = metrics.pop() if len(metrics) == 1 else None
        header = (["run", "task", "model", "state"] + [short_key(k) for k in self.differing]
                  + [f"validation {one}" if one else "validation", f"test {one}" if one else "test",
                     "train time", "steps", "trainable params"])
        names = display_names([r.name for r in self.rows])
        cells = []
        for r, name in zip(self.rows, names):
            scores = []
            for split in SPLITS:
                v = r.score(split)
                scores.append("-" if v is None else (f"{v:.4f}" if one else f"{r.metric} {v:.4f}"))
            state = r.state + (" (best)" if r.best else "")
            cells.append([name, r.task, short_path(r.model), state] + [value_text(r.recipe.get(k)) for k in self.differing]
                         + scores + [seconds_text(r.train_time_s), "-" if r.steps is None else str(r.steps),
                                     count_text(r.parameters)])
        return header, cells

    def text(self) -> str:
        header, cells = self.table()
        widths = [max(len(row[i]) for row in [header] + cells) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + cells]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def short_key(key: str) -> str:
    """``training.learning_rate`` -> ``learning_rate`` (task options keep their section)."""
    section, _, leaf = key.partition(".")
    return leaf if section in ("training", "data") and leaf else key


def value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "none"
    return "-" if v is None else short_path(str(v))


def short_path(text: str, keep: int = 2) -> str:
    """A long path as its last ``keep`` parts (``.../data/train.txt``); other text as it is."""
    parts = text.split("/")
    return text if len(text) <= 32 or len(parts) <= keep else ".../" + "/".join(parts[-keep:])


def display_names(names: list[str]) -> list[str]:
    """Run names without the folder they all share (``runs/a``, ``runs/b`` -> ``a``, ``b``)."""
    if len(names) < 2:
        return [short_path(n) for n in names]
    try:
        common = os.path.commonpath(names)
    except ValueError:  # absolute and relative paths mixed
        return names
    shown = [os.path.relpath(n, common) if common else n for n in names]
    return shown if all(s not in (".", "") for s in shown) else names


def seconds_text(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f}min"


def count_text(p: dict[str, int] | None) -> str:
    if not p or "trainable" not in p:
        return "-"
    n = p["trainable"]
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else str(n)


def _read(path: Path) -> dict[str, Any]:
    from ftkit.engine.run_folder import read_json

    return read_json(path)


def _recipe(folder: Path) -> dict[str, Any]:
    """The run's recipe by dotted key, with the schema's defaults for keys it predates (a recipe written by
    an older ftkit differs from a new one only where the values do)."""
    from ftkit.config import flat_keys, validate
    from ftkit.recipes import load_yaml

    path = folder / "recipe.yaml"
    if not path.exists():
        return {}
    raw = load_yaml(path)
    try:
        raw = validate(raw, str(path)).model_dump(mode="json")
    except FtkitError:
        pass  # e.g. a plugin task that is not installed here: compare the recipe as written
    return flat_keys(raw)


def _scalars(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "examples"}


def load_run(path: Path, name: str | None = None) -> RunRow:
    """A finished run folder as a row; a folder without eval results is an error."""
    from ftkit.tasks import get_task_class

    path = Path(path)
    if not path.is_dir():
        raise FtkitError("no such run or sweep folder", file=path)
    if not (path / "run.json").exists():
        if (path / "recipe.yaml").exists():
            raise FtkitError("no eval results: the run has not finished (no run.json)", file=path,
                             hint="finish it with `ftkit finetune --output RUN --resume`")
        raise FtkitError("not an ftkit run or sweep folder (no run.json, no sweep.json)", file=path)
    meta = _read(path / "run.json")
    m = meta.get("metrics", {})
    metrics = {}
    for split in SPLITS:
        evaluated = path / f"eval_{split}.json"
        scores = _scalars(_read(evaluated) if evaluated.exists() else m.get(split))
        if scores:
            metrics[split] = scores
    if not metrics:
        raise FtkitError("no eval results (no validation or test scores in run.json or eval_<split>.json)",
                         file=path, hint="score it with `ftkit eval RUN --split test`")
    task = meta.get("task", "?")
    try:
        metric = get_task_class(task).best_metric
    except FtkitError:
        metric = "f1"
    return RunRow(name=name or os.path.normpath(str(path)), path=path, task=task, model=str(meta.get("base_model")),
                  metric=metric, recipe=_recipe(path), metrics=metrics,
                  train_time_s=m.get("train_time_s", meta.get("wall_time_s")), steps=m.get("train_steps"),
                  parameters=meta.get("parameters"))


def load_sweep(path: Path) -> SweepInfo:
    """A sweep folder's trials as rows: completed trials from their run folders, pruned ones from the study
    (their last validation score and the step they stopped at)."""
    path = Path(path)
    meta = _read(path / "sweep.json")
    name = os.path.normpath(str(path))
    rows = []
    for t in meta.get("trials", []):
        folder = path / t["folder"]
        trial_name = f"{name}/{t['folder']}"
        if t["state"] == "complete":
            row = load_run(folder, trial_name)
        elif t["state"] == "pruned":
            last = list(t.get("intermediate", {}).values())[-1:] or [None]
            row = RunRow(name=trial_name, path=folder, task=meta["task"], model=str(meta["recipe"].get("model")),
                         metric=meta["metric"], state="pruned", recipe=_recipe(folder),
                         metrics={"validation": {meta["metric"]: last[0]}} if last[0] is not None else {},
                         steps=t.get("steps"))
        else:
            continue  # running or failed: nothing to compare yet
        row.sweep, row.best = name, t["number"] == meta.get("best_trial")
        rows.append(row)
    if not rows:
        raise FtkitError("no eval results: no trial of this sweep has finished yet", file=path)
    return SweepInfo(name=name, path=path, meta=meta, rows=rows)


def compare(paths: Sequence[str | Path]) -> Comparison:
    """The comparison of run and sweep folders (in the order given)."""
    from ftkit.sweep import is_sweep

    if not paths:
        raise FtkitError("nothing to compare", hint="give run or sweep folders")
    rows: list[RunRow] = []
    sweeps: list[SweepInfo] = []
    for p in paths:
        if is_sweep(p):
            info = load_sweep(Path(p))
            sweeps.append(info)
            rows.extend(info.rows)
        else:
            rows.append(load_run(Path(p)))
    keys = sorted({k for r in rows for k in r.recipe})
    differing = [k for k in keys if len({json.dumps(r.recipe.get(k), sort_keys=True) for r in rows}) > 1]
    return Comparison(rows=rows, differing=differing, sweeps=sweeps)
