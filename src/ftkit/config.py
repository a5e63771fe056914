"""Typed run configuration: a recipe YAML file maps 1:1 onto :class:`RunConfig`.

Resolution order: built-in recipe or recipe file -> CLI flags -> ``--set key=value``
overrides -> validation. Unknown keys are rejected with their dotted path and
wrong types are explained; both end as one-line :class:`FtkitError`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ftkit.errors import FtkitError, from_validation_error
from ftkit.recipes import load_recipe


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
    workers: int | None = Field(None, ge=1, description="processes that read large files and tokenize "
                                "(--workers); default: the cores available")
    streaming: bool = Field(False, description="read the training split lazily as a datasets.IterableDataset "
                            "(datasets folders, hub names, any file) and tokenize it while training; needs "
                            "training.max_steps")


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

    @field_validator("eval_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, v):
        return "no" if v is False else v  # YAML 1.1 reads an unquoted `no` (recipe or --set) as false
    eval_steps: int | None = Field(None, gt=0)
    logging_steps: int = Field(25, gt=0)
    early_stopping_patience: int | None = Field(None, gt=0)
    save_total_limit: int | None = Field(2, gt=0, description="keep at most N checkpoints (the best is kept too)")
    auto_batch_size: bool = Field(False, description="halve the batch size on out-of-memory until it fits")
    group_by_length: bool = Field(True, description="batches of similar length (less padding), visited in random "
                                  "order with the longest first; false: plain random order")
    dataloader_workers: int = Field(0, ge=0)
    auto_resume: bool = Field(False, description="re-running the same command continues the run in the output "
                              "folder from its last complete checkpoint (fresh when there is none): for "
                              "schedulers that requeue a preempted job")
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = Field(
        default_factory=list, description="experiment trackers the Trainer logs to (tensorboard writes "
        "RUN/tensorboard/, mlflow a store under RUN/mlflow/ unless MLFLOW_TRACKING_URI is set); none by default")

    @field_validator("report_to", mode="before")
    @classmethod
    def _tracker_list(cls, v: Any) -> Any:
        """``"tensorboard,mlflow"`` (the CLI flag) or a list; ``none`` alone means no tracker."""
        if v is None:
            return []
        items = v.split(",") if isinstance(v, str) else v
        if not isinstance(items, (list, tuple)):
            return v
        names = [x.strip() if isinstance(x, str) else x for x in items]
        return list(dict.fromkeys(x for x in names if x not in ("", "none")))


class PeftConfig(_Strict):
    """Parameter-efficient fine-tuning: LoRA adapters on the attention projections (the ``peft`` package).

    The task head and any layer the base checkpoint does not provide stay fully trainable; the rows of
    tokens a task adds (relation markers) are trained too. ``target_modules`` names module leaves
    (``query``, ``c_attn``...); the default is chosen per family: ``query``/``value`` (BERT-like),
    ``c_attn`` (GPT-2), ``q``/``v`` (T5).
    """

    method: Literal["none", "lora"] = Field("none", description="none: full fine-tuning; lora: LoRA adapters")
    r: int = Field(8, gt=0, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the LoRA branch")
    target_modules: list[str] | None = Field(
        None, min_length=1, description="module names that get adapters; default: the family's attention projections")
    learning_rate: float | None = Field(
        1e-3, gt=0, description="the learning rate of a run that --peft lora (or --set peft.method=lora) turns to "
        "LoRA, unless --learning-rate / --set training.learning_rate says otherwise (a recipe's rate is tuned for "
        "full fine-tuning; LoRA trains far fewer weights and wants a larger one: bench/results/lora_sst2.json); "
        "null: training.learning_rate")


class TaskOptionsError(ValueError):
    """Raised inside RunConfig validation; carries the task options' own pydantic errors."""

    def __init__(self, error, known: list[str]):
        super().__init__(str(error))
        self.error, self.known = error, known


class RunConfig(_Strict):
    task: str
    model: str = "minilm"
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    peft: PeftConfig = PeftConfig()
    #: the task's own typed options (``Task.Options``); a mapping is validated against it on load
    task_options: Any = Field(default_factory=dict)

    @model_validator(mode="after")
    def _typed_task_options(self) -> "RunConfig":
        from ftkit.tasks import get_task_class

        options_cls = get_task_class(self.task).Options  # an unknown task is an FtkitError
        if not isinstance(self.task_options, options_cls):
            raw = self.task_options if self.task_options is not None else {}
            if isinstance(raw, BaseModel):
                raw = raw.model_dump()
            if not isinstance(raw, dict):
                raise ValueError(f"task_options must be a mapping of option names to values, got {raw!r}")
            try:
                typed = options_cls.model_validate(raw)  # the task's own model: one place for option rules
            except ValidationError as e:
                raise TaskOptionsError(e, list(options_cls.model_fields)) from None
            object.__setattr__(self, "task_options", typed)
        return self


def _config_error(err: ValidationError, source: str, origins: dict[str, str] | None = None) -> FtkitError:
    """Task-option problems keep their own dotted paths (``task_options.tag_scheme``)."""
    for e in err.errors():
        inner = (e.get("ctx") or {}).get("error")
        if isinstance(inner, TaskOptionsError):
            return from_validation_error(inner.error, source, "task_options.", origins,
                                         {"task_options": inner.known})
    return from_validation_error(err, source, "", origins)


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


def validate(raw: dict[str, Any], source: str, origins: dict[str, str] | None = None) -> RunConfig:
    """A raw recipe mapping -> :class:`RunConfig`, task options included; one-line errors naming the
    key and where it came from (the recipe file, or the flag in ``origins``)."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise _config_error(e, source, origins) from None


def dump_yaml(cfg: RunConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def flat_keys(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A recipe mapping by dotted key: ``{"training": {"epochs": 1}}`` -> ``{"training.epochs": 1}``."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value the way YAML would (numbers, booleans, null, lists)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def resolve(
    task: str | None,
    recipe: str | None,
    flags: dict[str, Any],
    sets: list[str] | dict[str, Any] = (),
    default_recipe: bool = True,
    flag_names: dict[str, str] | None = None,
) -> tuple[RunConfig, str]:
    """Recipe (named, file, or the task's demo) -> flags -> ``--set`` -> validated config.

    ``flags`` maps dotted keys (``training.epochs``) to values; ``None`` values are flags the user
    did not pass. ``sets`` are ``--set`` items (``"key=value"`` strings, or a mapping of dotted keys to
    values from the Python API). ``flag_names`` says how each flag was written (``--epochs``), so a
    bad value is blamed on the flag rather than the recipe. Returns the config and the recipe's path
    (or ``"command line"``).

    Without a recipe, ``--task T`` alone is the task's bundled demo; with data of the user's own
    (``--train``/``--validation``/``--test``) it is the task's general defaults: nothing that describes
    the demo's data (label names, line formats, article splits...) applies to the user's files.
    """
    from ftkit.tasks import get_task_class

    items = [(k, v, f"{k}={v!r}") for k, v in sets.items()] if isinstance(sets, dict) else [
        (*parse_set_option(item), f"--set {item}") for item in sets]
    data_keys = {"data.train", "data.validation", "data.test"}
    user_data = any(flags.get(k) is not None for k in data_keys) or any(k in data_keys for k, _, _ in items)
    if recipe is None:
        if task is None:
            raise FtkitError("no task given", hint="pass --task ner (or --recipe NAME_OR_FILE)")
        demo = get_task_class(task).demo_recipe  # an unknown task is a clear error here
        recipe = demo if default_recipe and not user_data else None
    if recipe is not None:
        path, raw = load_recipe(recipe)
        source = str(path)
    else:
        raw, source = {}, "command line (the task's general defaults)"
    if task is not None:
        if raw.get("task") not in (None, task):
            raise FtkitError(f"recipe is for task '{raw.get('task')}', not '{task}'", file=source)
        raw["task"] = task
    recipe_lora = (raw.get("peft") or {}).get("method") == "lora"
    origins: dict[str, str] = {}
    for key, value in flags.items():
        if value is not None:
            apply_override(raw, key, value)
            origins[key] = (flag_names or {}).get(key) or f"--{key.rpartition('.')[2].replace('_', '-')}"
    for key, value, how in items:
        apply_override(raw, key, value)
        origins[key] = how
    if "task" not in raw:
        raise FtkitError("the recipe names no task", file=source, hint="add `task: ner` or pass --task")
    peft = raw.get("peft") or {}
    if peft.get("method") == "lora" and not recipe_lora and "training.learning_rate" not in origins:
        # LoRA switched on from the command line: the recipe's rate was chosen for full fine-tuning
        lora_rate = peft.get("learning_rate", PeftConfig.model_fields["learning_rate"].default)
        if lora_rate is not None:
            apply_override(raw, "training.learning_rate", lora_rate)
            origins.setdefault("training.learning_rate", origins.get("peft.learning_rate", "peft.learning_rate"))
    return validate(raw, source, origins), source
