"""The ``ftkit`` command line: thin Typer commands over importable functions.

Heavy libraries are imported inside the commands, so ``ftkit --help`` is instant.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

app = typer.Typer(
    name="ftkit",
    help="Fine-tune pretrained Hugging Face checkpoints (encoder, T5 and GPT families) for NER, text classification, "
    "relation extraction, extractive QA and translation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DebugOpt = typer.Option(False, "--debug", help="Show full tracebacks and library warnings.")
PickleOpt = typer.Option(False, "--allow-pickle", help="Load pickle (.bin/.pt) weights: only for checkpoints you trust.")


def _handled(fn: Callable) -> Callable:
    """Turn errors into one line on stderr and an exit status; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug") or os.environ.get("FTKIT_DEBUG") == "1"
        _quiet_libraries(debug)
        from ftkit.errors import FtkitError

        try:
            return fn(*args, **kwargs)
        except FtkitError as e:
            if debug:
                raise
            typer.echo(f"error: {e.one_line()}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence
            if debug:
                raise
            msg = " ".join(str(e).split())[:300]
            typer.echo(f"error: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)",
                       err=True)
            raise typer.Exit(1) from None

    return wrapper


def _quiet_libraries(debug: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        import warnings

        warnings.filterwarnings("ignore")


@app.command()
@_handled
def finetune(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="ner | classification | relation | qa | translation"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Built-in recipe name or a YAML file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Alias (minilm), HF hub name or local folder."),
    train: Optional[str] = typer.Option(None, "--train", help="Training data file or folder."),
    validation: Optional[str] = typer.Option(None, "--validation", help="Validation data (model selection)."),
    test: Optional[str] = typer.Option(None, "--test", help="Test data, scored after training."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder [default: runs/<task>-<time>]."),
    epochs: Optional[float] = typer.Option(None, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", "--lr"),
    gradient_accumulation: Optional[int] = typer.Option(None, "--gradient-accumulation"),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto|fp32|bf16|fp16"),
    device: Optional[str] = typer.Option(None, "--device", help="auto|cpu|cuda"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    early_stopping: Optional[int] = typer.Option(None, "--early-stopping", help="Patience in evaluations."),
    validation_fraction: Optional[float] = typer.Option(None, "--validation-fraction"),
    save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", help="Keep at most N checkpoints."),
    auto_batch_size: Optional[bool] = typer.Option(None, "--auto-batch-size/--no-auto-batch-size",
                                                   help="Halve the batch size on out-of-memory until it fits."),
    allow_pickle: bool = PickleOpt,
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                           help="Run Python code shipped with a checkpoint (auto_map)."),
    set_: List[str] = typer.Option([], "--set", help="Override any recipe key: dotted.key=value (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty run folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last checkpoint."),
    debug: bool = DebugOpt,
) -> None:
    """Fine-tune a model; `ftkit finetune --task ner` (or `--task classification`) alone runs a bundled demo."""
    import time

    from ftkit.config import load_yaml, resolve, validate
    from ftkit.errors import FtkitError

    if resume:
        if output is None:
            raise FtkitError("--resume needs --output RUN_DIR")
        saved = output / "recipe.yaml"
        if saved.exists():
            cfg, source = validate(load_yaml(saved), str(saved)), str(saved)
            typer.echo(f"resuming with the run's own recipe {saved}", err=True)
        else:
            resume = False
    if not resume:
        flags = {
            "model": model, "data.train": train, "data.validation": validation, "data.test": test,
            "data.validation_fraction": validation_fraction, "training.epochs": epochs,
            "training.max_steps": max_steps, "training.batch_size": batch_size,
            "training.learning_rate": learning_rate, "training.gradient_accumulation": gradient_accumulation,
            "training.precision": precision, "training.device": device, "training.seed": seed,
            "training.early_stopping_patience": early_stopping, "training.save_total_limit": save_total_limit,
            "training.auto_batch_size": auto_batch_size,
        }
        cfg, source = resolve(task, recipe, flags, set_)
    run_dir = output or Path("runs") / f"{cfg.task}-{time.strftime('%Y%m%d-%H%M%S')}"

    from ftkit.engine import finetune as run

    meta = run(cfg, run_dir, overwrite=overwrite, resume=resume, recipe_source=source, allow_pickle=allow_pickle,
               trust_remote_code=trust_remote_code)
    m = meta["metrics"]
    typer.echo(f"run folder: {run_dir}", err=True)
    for split in ("validation", "test"):
        if split in m:
            s = m[split]
            typer.echo(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in s.items() if isinstance(v, float)))
    typer.echo(f"wall time {meta['wall_time_s']:.0f}s", err=True)


@app.command("eval")
@_handled
def eval_(
    run_dir: Path = typer.Argument(..., help="A run folder made by `ftkit finetune`."),
    split: str = typer.Option("test", "--split", help="test|validation"),
    data: Optional[str] = typer.Option(None, "--data", help="Score this file instead of the run's split."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    allow_pickle: bool = PickleOpt,
    debug: bool = DebugOpt,
) -> None:
    """Score the run's best model on a held-out split; writes RUN_DIR/eval_<split>.json (and confusion_<split>.png for classification tasks)."""
    from ftkit.engine import evaluate_run, task_of, write_eval
    from ftkit.errors import FtkitError

    if split not in ("test", "validation"):
        raise FtkitError(f"--split must be test or validation, got '{split}'")
    metrics = evaluate_run(run_dir, split, data, batch_size, device, allow_pickle=allow_pickle)
    if (run_dir / "run.json").exists():
        write_eval(run_dir, metrics)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        task, _ = task_of(run_dir)
        typer.echo(f"{split} ({metrics['data']})")
        typer.echo(task.format_table(metrics))


@app.command()
@_handled
def export(
    run_dir: Path = typer.Argument(..., help="A run folder made by `ftkit finetune`."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to create."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    debug: bool = DebugOpt,
) -> None:
    """Write the best model as a folder plain transformers loads (safetensors, tokenizer, model card)."""
    from ftkit.export import export_run

    out = export_run(run_dir, output, overwrite)
    typer.echo(f"exported to {out}", err=True)


@app.command()
@_handled
def predict(
    model: str = typer.Argument(..., help="A run folder or an exported folder."),
    input_: str = typer.Option("-", "--input", "-i", help="Text lines or JSONL; '-' reads stdin."),
    output: str = typer.Option("-", "--output", "-o", help="JSONL out; '-' writes stdout."),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    allow_pickle: bool = PickleOpt,
    debug: bool = DebugOpt,
) -> None:
    """Predict on text lines or JSONL records; prints one JSON object per input."""
    from ftkit.engine import predict_records
    from ftkit.errors import FtkitError

    if input_ == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        from ftkit.data.records import read_text

        text, name = read_text(input_), input_
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise FtkitError(f"invalid JSON: {e.msg}", file=name, line=lineno) from None
        else:
            rec = {"text": line}
        records.append(rec)
    results = predict_records(model, records, batch_size, device, allow_pickle=allow_pickle)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if output == "-":
        sys.stdout.write(lines)
    else:
        Path(output).write_text(lines, encoding="utf-8")


@app.command()
@_handled
def validate(
    task: Optional[str] = typer.Option(None, "--task", "-t"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Built-in recipe name or a YAML file."),
    train: Optional[str] = typer.Option(None, "--train"),
    validation: Optional[str] = typer.Option(None, "--validation"),
    test: Optional[str] = typer.Option(None, "--test"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Also count inputs longer than its window."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when there are warnings."),
    set_: List[str] = typer.Option([], "--set", help="Override any recipe key: dotted.key=value."),
    debug: bool = DebugOpt,
) -> None:
    """Check data with the task's readers, without training. Exit 0 clean, 1 warnings (--strict), 2 errors."""
    from ftkit.config import resolve
    from ftkit.validate import validate_data

    flags = {"data.train": train, "data.validation": validation, "data.test": test}
    # explicit files are validated alone, not mixed with the default recipe's bundled sample
    cfg, _ = resolve(task, recipe, flags, set_, default_recipe=not (train or validation or test))
    report = validate_data(cfg, model)
    for name, summary in report.summary.items():
        typer.echo(f"{name}: {json.dumps(summary)}")
    for line in report.errors:
        typer.echo(f"error: {line}")
    for line in report.warnings:
        typer.echo(f"warning: {line}")
    code = report.exit_code(strict)
    typer.echo({0: "ok", 1: "warnings", 2: "errors"}[code] + f" ({len(report.errors)} errors, "
               f"{len(report.warnings)} warnings)", err=True)
    raise typer.Exit(code)


@app.command()
@_handled
def recipes(debug: bool = DebugOpt) -> None:
    """List the built-in recipes."""
    from ftkit.recipes import builtin_recipes, describe

    for name, path in builtin_recipes().items():
        typer.echo(f"{name:<28}{describe(path)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
