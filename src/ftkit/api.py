"""The Python API: everything the ``ftkit`` command does, for notebooks and scripts.

The CLI is a thin layer over these functions; they take the same arguments (``--learning-rate``
is ``learning_rate=``, ``--set k=v`` is ``overrides={"k": v}``) and return typed results::

    import ftkit

    run = ftkit.finetune(task="ner", train="train.conll", validation="dev.conll", test="test.conll",
                         output="runs/ner", epochs=1)
    run.metrics["test"]["f1"]                      # scores written to runs/ner/eval_test.json
    ftkit.evaluate("runs/ner", split="test").metrics
    folder = ftkit.export("runs/ner", "my-ner-model")
    ftkit.predict(folder, ["EU rejects German call to boycott British lamb ."])

Bad input raises :class:`ftkit.errors.FtkitError` (one line naming the file and line, or the key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

#: finetune argument -> recipe key
FINETUNE_FLAGS = {
    "model": "model", "train": "data.train", "validation": "data.validation", "test": "data.test",
    "validation_fraction": "data.validation_fraction", "epochs": "training.epochs",
    "max_steps": "training.max_steps", "batch_size": "training.batch_size",
    "learning_rate": "training.learning_rate", "gradient_accumulation": "training.gradient_accumulation",
    "precision": "training.precision", "device": "training.device", "seed": "training.seed",
    "early_stopping": "training.early_stopping_patience", "save_total_limit": "training.save_total_limit",
    "auto_batch_size": "training.auto_batch_size", "report_to": "training.report_to", "workers": "data.workers",
    "source_lang": "task_options.source_lang", "target_lang": "task_options.target_lang",
    "auto_resume": "training.auto_resume",
    "peft": "peft.method",
}


@dataclass(frozen=True)
class RunResult:
    """A finished training run (``run.json`` as fields)."""

    run_dir: Path
    task: str
    model: str
    labels: list[str]
    #: scores per scored split: ``{"validation": {...}, "test": {...}}``
    metrics: dict[str, dict[str, Any]]
    train_loss: float
    train_steps: int
    wall_time_s: float
    #: the whole run.json
    meta: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class EvalResult:
    """The scores of one split (what ``eval_<split>.json`` holds)."""

    split: str
    data: str
    metrics: dict[str, Any]
    #: the scores as the CLI prints them
    table: str = field(repr=False, default="")

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]


def _origins(style: str) -> dict[str, str]:
    if style == "cli":
        return {key: "--" + arg.replace("_", "-") for arg, key in FINETUNE_FLAGS.items()} | {
            "training.early_stopping_patience": "--early-stopping"}
    return {key: f"{arg}=" for arg, key in FINETUNE_FLAGS.items()}


def resolve_config(task: str | None = None, *, recipe: str | None = None,
                   overrides: Mapping[str, Any] | Sequence[str] = (), default_recipe: bool = True,
                   _style: str = "python", **flags: Any):
    """``(RunConfig, source)``: a recipe (or the task's demo) with flags and overrides applied and validated."""
    from ftkit.config import resolve

    unknown = set(flags) - set(FINETUNE_FLAGS)
    if unknown:
        raise TypeError(f"unknown argument(s): {', '.join(sorted(unknown))}")
    dotted = {FINETUNE_FLAGS[k]: v for k, v in flags.items()}
    sets = dict(overrides) if isinstance(overrides, Mapping) else list(overrides)
    return resolve(task, recipe, dotted, sets, default_recipe=default_recipe, flag_names=_origins(_style))


def finetune(
    task: str | None = None,
    *,
    recipe: str | None = None,
    model: str | None = None,
    train: str | None = None,
    validation: str | None = None,
    test: str | None = None,
    output: str | Path | None = None,
    epochs: float | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    gradient_accumulation: int | None = None,
    precision: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    early_stopping: int | None = None,
    validation_fraction: float | None = None,
    save_total_limit: int | None = None,
    auto_batch_size: bool | None = None,
    workers: int | None = None,
    source_lang: str | None = None,
    target_lang: str | None = None,
    auto_resume: bool | None = None,
    peft: str | None = None,
    report_to: str | Sequence[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    overwrite: bool = False,
    resume: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    processes: int | None = None,
    accelerate_config: str | None = None,
    _style: str = "python",
) -> RunResult:
    """Fine-tune a model; returns the run's results (also in ``OUTPUT/run.json``).

    ``task`` alone runs the task's bundled demo; with data of your own (``train``...) it starts from
    the task's general defaults; with ``recipe`` (a built-in name or a YAML file) from the recipe.
    ``peft="lora"`` trains LoRA adapters (``peft.r``, ``peft.alpha``... through ``overrides``) instead of
    every weight. ``source_lang``/``target_lang`` set the translation pair (``task_options.source_lang``/``target_lang``). Every other argument overrides one recipe key, as the CLI flag of
    the same name does; ``overrides`` sets any key (``{"training.warmup_ratio": 0.1}`` or
    ``["training.warmup_ratio=0.1"]``). ``output`` defaults to ``runs/<task>-<time>``.
    ``resume=True`` continues the run in ``output`` from its last complete checkpoint, with the
    recipe saved there. ``auto_resume=True`` makes the *same call* continue the run in ``output`` when it
    has a complete checkpoint and start fresh when it has none (for schedulers that requeue a job after
    SIGTERM; the run exits with status 143 after saving a checkpoint on SIGTERM). ``report_to`` names
    experiment trackers (``"tensorboard,mlflow"`` or a list). ``workers`` (``data.workers``) is how many
    processes read large files and tokenize (default: the cores available).
    ``processes=N`` trains on N local processes started through accelerate's launcher (CPU workers talk
    over gloo, CUDA workers over NCCL; ``batch_size`` stays per process, so the global batch is N times it);
    ``accelerate_config`` names a config of ``recipes/accelerate`` (``ddp``, ``fsdp``, ``deepspeed-zero2``...)
    or an accelerate YAML file. Under ``torchrun``/``accelerate launch`` leave both out: every process
    calls ``finetune`` and gets the same result.
    """
    import os

    from ftkit import timing

    # the command's time counts from the process's start (interpreter and imports); the API's from this call
    clock = timing.begin(timing.process_start() if timing.command_line else None)
    from ftkit.engine.finetune import finetune as run
    from ftkit.engine.prepare import EXCHANGE_ENV
    from ftkit.engine.run_folder import RECIPE_FILE
    from ftkit.errors import FtkitError
    from ftkit.log import log

    flags = dict(model=model, train=train, validation=validation, test=test, epochs=epochs, max_steps=max_steps,
                 batch_size=batch_size, learning_rate=learning_rate, gradient_accumulation=gradient_accumulation,
                 precision=precision, device=device, seed=seed, early_stopping=early_stopping,
                 validation_fraction=validation_fraction, save_total_limit=save_total_limit,
                 auto_batch_size=auto_batch_size, workers=workers, source_lang=source_lang, target_lang=target_lang,
                 auto_resume=auto_resume, report_to=report_to, peft=peft)
    if processes is not None and processes < 1:
        raise FtkitError(f"{'--processes' if _style == 'cli' else 'processes='} must be at least 1, got {processes}")
    cfg = None
    if resume:
        if output is None:
            raise FtkitError("--resume needs --output RUN_DIR" if _style == "cli" else "resume=True needs output=")
        saved = Path(output) / RECIPE_FILE
        if saved.exists():
            from ftkit.config import validate
            from ftkit.recipes import load_yaml

            cfg, source = validate(load_yaml(saved), str(saved)), str(saved)
            if not os.environ.get(EXCHANGE_ENV):  # a worker of --processes: its launcher said it
                log(f"resuming with the run's own recipe {saved}")
        else:
            resume = False
    if cfg is None:
        cfg, source = resolve_config(task, recipe=recipe, overrides=overrides, _style=_style, **flags)
        if not os.environ.get(EXCHANGE_ENV):
            log(f"recipe: {source}")
        if cfg.training.auto_resume and output is None:
            raise FtkitError("--auto-resume needs --output RUN_DIR (the folder the same command finds again)"
                             if _style == "cli" else "auto_resume=True needs output=")
    run_dir = Path(output) if output is not None else Path("runs") / f"{cfg.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (processes or 1) > 1 or accelerate_config is not None:
        from ftkit.launch import launch

        meta = launch(cfg, run_dir, processes=processes or 1, accelerate_config=accelerate_config,
                      overwrite=overwrite, resume=resume, recipe_source=source, allow_pickle=allow_pickle,
                      trust_remote_code=trust_remote_code)
    else:
        meta = run(cfg, run_dir, overwrite=overwrite, resume=resume, recipe_source=source,
                   allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, clock=clock)
    m = meta["metrics"]
    return RunResult(run_dir=run_dir, task=meta["task"], model=meta["base_model"], labels=list(meta["labels"]),
                     metrics={k: v for k, v in m.items() if isinstance(v, dict)}, train_loss=m["train_loss"],
                     train_steps=m["train_steps"], wall_time_s=meta["wall_time_s"], meta=meta)


def evaluate(run: str | Path, split: str = "test", *, data: str | None = None, batch_size: int = 32,
             device: str = "auto", allow_pickle: bool = False, write: bool = True) -> EvalResult:
    """Score a run's best model (or an exported folder) on a split: the run's own ``split`` data, or
    ``data``. In a run folder, ``write`` stores ``eval_<split>.json`` (and the task's output files)."""
    from ftkit.engine.inference import evaluate_run
    from ftkit.engine.run_folder import RUN_FILE, task_of, write_eval
    from ftkit.errors import FtkitError

    if split not in ("test", "validation"):
        raise FtkitError(f"split must be test or validation, got '{split}'")
    metrics = evaluate_run(run, split, data, batch_size, device, allow_pickle=allow_pickle)
    if write and (Path(run) / RUN_FILE).exists():
        write_eval(Path(run), metrics)
    task, _, _ = task_of(run)
    scores = {k: v for k, v in metrics.items() if k not in ("split", "data")}
    return EvalResult(split=split, data=metrics["data"], metrics=scores, table=task.format_table(metrics))


def predict(model: str | Path, inputs: Iterable[str | Mapping[str, Any]], *, batch_size: int = 32,
            device: str = "auto", allow_pickle: bool = False,
            task_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Predictions for ``inputs`` (texts, or records such as ``{"question": .., "context": ..}``), one
    JSON-ready dict per input, in order: what ``ftkit predict`` prints. ``task_options`` changes task options
    for this prediction (NER: ``{"aggregation": "simple"}`` groups sub-tokens as transformers' pipeline does)."""
    from ftkit.engine.inference import predict_records

    records = [{"text": x} if isinstance(x, str) else dict(x) for x in inputs]
    return predict_records(model, records, batch_size, device, allow_pickle=allow_pickle,
                           task_options=dict(task_options or {}))


def export(run: str | Path, output: str | Path | None = None, *, overwrite: bool = False,
           format: str = "transformers", quantize: str | None = None, adapter_only: bool = False,
           push_to_hub: str | None = None, private: bool = False) -> Path | None:
    """Write a run's best model as a folder plain ``transformers`` loads (safetensors, tokenizer, card; a
    LoRA run's adapter merged in), or ``format="onnx"`` (``quantize="int8"``: int8 weights) for
    onnxruntime, or ``adapter_only=True`` for the LoRA adapter as ``peft`` saves it. ``push_to_hub=
    "OWNER/NAME"`` uploads the folder (``output`` may then be None). Returns the folder written."""
    from ftkit.export import export_run

    return export_run(Path(run), Path(output) if output is not None else None, overwrite, fmt=format,
                      quantize=quantize, adapter_only=adapter_only, push_to_hub=push_to_hub, private=private)


def serve(model: str | Path, *, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          max_batch_size: int = 128, max_wait_ms: float = 5.0, max_body_bytes: int = 1_048_576, max_inputs: int = 256,
          max_input_chars: int = 20_000, max_queue: int = 4096, api_key: str | None = None, access_log: bool = True,
          allow_pickle: bool = False, task_options: Mapping[str, Any] | None = None) -> None:
    """Serve ``model`` (a run folder or an export) over HTTP until SIGINT/SIGTERM: what ``ftkit serve`` runs.

    ``POST /predict`` answers with what :func:`predict` returns, concurrent requests batched together
    (``max_batch_size`` inputs per model call, a request waiting at most ``max_wait_ms`` for others).
    """
    from ftkit.serving import ServeOptions, run_server

    run_server(model, ServeOptions(host=host, port=port, device=device, max_batch_size=max_batch_size,
                                   max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes, max_inputs=max_inputs,
                                   max_input_chars=max_input_chars, max_queue=max_queue, api_key=api_key,
                                   access_log=access_log, allow_pickle=allow_pickle,
                                   task_options=dict(task_options or {})))


def validate(task: str | None = None, *, recipe: str | None = None, train: str | None = None,
             validation: str | None = None, test: str | None = None, model: str | None = None,
             source_lang: str | None = None, target_lang: str | None = None, workers: int | None = None,
             overrides: Mapping[str, Any] | Sequence[str] = (), _style: str = "python"):
    """Check data with the task's readers without training: a report with ``errors``, ``warnings``,
    ``summary`` and ``exit_code(strict)``."""
    from ftkit.validate import validate_data

    # explicit files are validated alone (the task's general defaults), not mixed with the demo's sample
    cfg, _ = resolve_config(task, recipe=recipe, overrides=overrides, _style=_style, train=train,
                            validation=validation, test=test, source_lang=source_lang, target_lang=target_lang,
                            workers=workers)
    return validate_data(cfg, model)
