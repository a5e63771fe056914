"""Typed run configuration: a recipe YAML file maps 1:1 onto :class:`RunConfig`.

Resolution order: built-in recipe or recipe file -> CLI flags -> ``--set key=value``
overrides -> validation. Unknown keys are rejected with their dotted path and
wrong types are explained; both end as one-line :class:`FtkitError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ftkit.errors import FtkitError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    train: str | None = Field(None, description="training data: file, datasets folder or hub name")
    validation: str | None = Field(None, description="validation data used for model selection")
    test: str | None = Field(None, description="held-out test data, scored after training and by `ftkit eval`")
    format: Literal["auto", "conll", "jsonl", "csv", "tsv", "parquet", "disk", "hub"] = "auto"
    encoding: str = "utf-8"
    validation_fraction: float | None = Field(
        None, gt=0, lt=1, description="carve a seeded validation split of this size from train"
    )
    max_train_examples: int | None = Field(None, gt=0, description="use only the first N training examples")


class TrainingConfig(_Strict):
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="stop after N optimizer steps (overrides epochs when > 0)")
    batch_size: int = Field(16, gt=0)
    eval_batch_size: int | None = Field(None, gt=0)
    gradient_accumulation: int = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_length: int | None = Field(None, gt=8, description="sub-token window size; default: the model's limit")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 42
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    eval_steps: int | None = Field(None, gt=0)
    logging_steps: int = Field(25, gt=0)
    early_stopping_patience: int | None = Field(None, gt=0)
    save_total_limit: int | None = Field(2, gt=0, description="keep at most N checkpoints (the best is kept too)")
    auto_batch_size: bool = Field(False, description="halve the batch size on out-of-memory until it fits")
    group_by_length: bool = Field(True, description="batches of similar length (less padding), visited in random "
                                  "order with the longest first; false: plain random order")
    dataloader_workers: int = Field(0, ge=0)


class RunConfig(_Strict):
    task: str
    model: str = "minilm"
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    task_options: dict[str, Any] = Field(default_factory=dict)


def _format_validation_error(err: ValidationError, source: str, prefix: str = "") -> FtkitError:
    parts = []
    for e in err.errors():
        path = prefix + (".".join(str(p) for p in e["loc"]) or "<root>")
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{path}'")
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            parts.append(f"'{path}': {e['msg']}{shown}")
    return FtkitError("; ".join(parts), file=source)


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value the way YAML would (numbers, booleans, null, lists)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``dotted='a.b.c'``, creating sections as needed."""
    keys = dotted.split(".")
    if not all(keys):
        raise FtkitError(f"invalid key '{dotted}' in --set (expected dotted.key=value)")
    node = raw
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        elif not isinstance(nxt, dict):
            raise FtkitError(f"cannot set '{dotted}': '{k}' is not a section")
        node = nxt
    node[keys[-1]] = value


def parse_set_option(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise FtkitError(f"--set expects dotted.key=value, got '{item}'")
    key, _, value = item.partition("=")
    return key.strip(), parse_value(value.strip())


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FtkitError(f"recipe is not valid UTF-8 ({e.reason})", file=path) from None
    except OSError as e:
        raise FtkitError(f"cannot read recipe: {e.strerror}", file=path) from None
    try:
        data = yaml.safe_load(text)  # safe loader: a recipe can never name Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise FtkitError(f"invalid YAML: {problem}", file=path, line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FtkitError("a recipe must be a mapping of keys to values", file=path)
    return data


def validate(raw: dict[str, Any], source: str) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise _format_validation_error(e, source) from None


def validate_options(model: type[BaseModel], raw: dict[str, Any], source: str) -> BaseModel:
    """Validate a task's ``task_options`` section against the task's own typed model."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise _format_validation_error(e, source, prefix="task_options.") from None


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def resolve(
    task: str | None,
    recipe: str | None,
    flags: dict[str, Any],
    sets: list[str],
    default_recipe: bool = True,
) -> tuple[RunConfig, str]:
    """Recipe (named, file, or the task's default) -> flags -> ``--set`` -> validated config.

    ``flags`` maps dotted keys (``training.epochs``) to values; ``None`` values are
    flags the user did not pass.
    """
    from ftkit.recipes import load_recipe
    from ftkit.tasks import DEFAULT_RECIPES, get_task_class

    if recipe is None:
        if task is None:
            raise FtkitError("no task given", hint="pass --task ner (or --recipe NAME_OR_FILE)")
        get_task_class(task)  # unknown task -> clear error
        recipe = DEFAULT_RECIPES.get(task) if default_recipe else None
    if recipe is not None:
        path, raw = load_recipe(recipe)
        source = str(path)
    else:
        raw, source = {}, "command line"
    if task is not None:
        if raw.get("task") not in (None, task):
            raise FtkitError(f"recipe is for task '{raw.get('task')}', not '{task}'", file=source)
        raw["task"] = task
    for key, value in flags.items():
        if value is not None:
            apply_override(raw, key, value)
    for item in sets:
        key, value = parse_set_option(item)
        apply_override(raw, key, value)
    if "task" not in raw:
        raise FtkitError("the recipe names no task", file=source, hint="add `task: ner` or pass --task")
    return validate(raw, source), source
