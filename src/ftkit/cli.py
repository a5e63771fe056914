"""The ``ftkit`` command line: thin Typer commands over the Python API (``ftkit.api``).

Each command parses its options, calls one API function and prints the result. Heavy libraries
are imported inside the API, so ``ftkit --help`` is instant. Every error -- bad data, a bad recipe
key, an unknown flag -- ends as one ``error:`` line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

# Plain help and plain one-line errors: no rich panels (they also cost start-up time). Must be set
# before typer is imported.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # noqa: E402

from ftkit.tasks import task_names  # noqa: E402  (the registry: no task module is imported)

TASKS = " | ".join(task_names())

app = typer.Typer(
    name="ftkit",
    help="Fine-tune pretrained Hugging Face checkpoints (encoder, T5 and GPT families) for "
    + ", ".join(task_names()) + ".",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

#: 128 + SIGPIPE: the status a shell reports for a command whose reader closed the pipe (`ftkit recipes | head -1`)
EXIT_PIPE = 141

DebugOpt = typer.Option(False, "--debug", help="Show full tracebacks and library warnings.")
SourceLangOpt = typer.Option(None, "--source-lang", help="Translation: source language code (reads PREFIX.<code>).")
TargetLangOpt = typer.Option(None, "--target-lang", help="Translation: target language code (reads PREFIX.<code>).")
PickleOpt = typer.Option(False, "--allow-pickle", help="Load pickle (.bin/.pt) weights: only for checkpoints you trust.")
WorkersOpt = typer.Option(None, "--workers", min=1,
                          help="Processes that read large files and tokenize (data.workers) [default: the cores available].")


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
            typer.echo(f"error: {_rank_prefix()}{e.one_line()}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `ftkit recipes | head -1`: the reader has gone, nothing more to say
            _silence_stdout()
            raise typer.Exit(EXIT_PIPE) from None
        except (typer.Exit, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence
            if debug:
                raise
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:  # a write the engine did not foresee
                where = f" while writing {e.filename}" if e.filename else ""
                typer.echo(f"error: no space left on the device{where} (hint: free some space and run again)",
                           err=True)
                raise typer.Exit(2) from None
            msg = " ".join(str(e).split())[:300]
            typer.echo(f"error: {_rank_prefix()}internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)",
                       err=True)
            raise typer.Exit(1) from None

    return wrapper


def _rank_prefix() -> str:
    """``[rank 1] `` on the other processes of a distributed run (an error only one of them met)."""
    from ftkit.log import is_main_process

    return "" if is_main_process() else f"[rank {os.environ.get('RANK')}] "


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
    task: Optional[str] = typer.Option(None, "--task", "-t", help=TASKS),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Built-in recipe name or a YAML file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Alias (minilm), HF hub name or local folder."),
    train: Optional[str] = typer.Option(None, "--train", help="Training data file or folder."),
    validation: Optional[str] = typer.Option(None, "--validation", help="Validation data (model selection)."),
    test: Optional[str] = typer.Option(None, "--test", help="Test data, scored after training."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder [default: runs/<task>-<time>]."),
    epochs: Optional[float] = typer.Option(None, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Per device (as in the Trainer)."),
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
    workers: Optional[int] = WorkersOpt,
    source_lang: Optional[str] = SourceLangOpt,
    target_lang: Optional[str] = TargetLangOpt,
    peft: Optional[str] = typer.Option(None, "--peft", help="lora: train LoRA adapters (set peft.r, peft.alpha, "
                                       "peft.dropout, peft.target_modules with --set); none: every weight."),
    report_to: Optional[str] = typer.Option(None, "--report-to", help="Experiment trackers, comma-separated: "
                                            "tensorboard,mlflow,wandb,trackio (default: none)."),
    allow_pickle: bool = PickleOpt,
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                           help="Run Python code shipped with a checkpoint (auto_map)."),
    set_: List[str] = typer.Option([], "--set", help="Override any recipe key: dotted.key=value (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty run folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last checkpoint."),
    auto_resume: Optional[bool] = typer.Option(
        None, "--auto-resume/--no-auto-resume",
        help="Running the same command again continues the run in --output from its last complete checkpoint "
             "(fresh when there is none); SIGTERM saves a checkpoint and exits 143. For requeued jobs."),
    processes: Optional[int] = typer.Option(
        None, "--processes", help="Train on N local processes started by accelerate (CPU: gloo, CUDA: NCCL); "
                                  "--batch-size stays per process."),
    accelerate_config: Optional[str] = typer.Option(
        None, "--accelerate-config", help="Built-in accelerate config (ddp, fsdp, deepspeed-zero2, deepspeed-zero3, "
                                          "deepspeed-zero3-offload; see `ftkit recipes`) or an accelerate YAML file."),
    debug: bool = DebugOpt,
) -> None:
    """Fine-tune a model; `ftkit finetune --task ner` (or any task) alone runs a bundled demo."""
    from ftkit.api import finetune as api_finetune

    run = api_finetune(
        task, recipe=recipe, model=model, train=train, validation=validation, test=test, output=output,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
        gradient_accumulation=gradient_accumulation, precision=precision, device=device, seed=seed,
        early_stopping=early_stopping, validation_fraction=validation_fraction, save_total_limit=save_total_limit,
        auto_batch_size=auto_batch_size, workers=workers, source_lang=source_lang, target_lang=target_lang,
        auto_resume=auto_resume, report_to=report_to, peft=peft, overrides=set_, overwrite=overwrite, resume=resume,
        allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, processes=processes,
        accelerate_config=accelerate_config, _style="cli",
    )
    from ftkit.log import is_main_process

    if not is_main_process() or os.environ.get("FTKIT_LAUNCHER") == "ftkit":
        return  # one set of results: from the main process, or from the --processes launcher that started it
    typer.echo(f"run folder: {run.run_dir}", err=True)
    for split, scores in run.metrics.items():
        typer.echo(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)))
    from ftkit.timing import one_line

    typer.echo(one_line(run.meta["timings"]) if run.meta.get("timings") else f"wall time {run.wall_time_s:.0f}s",
               err=True)


@app.command("eval")
@_handled
def eval_(
    run_dir: Path = typer.Argument(..., help="A run folder made by `ftkit finetune` (or an exported folder with --data)."),
    split: str = typer.Option("test", "--split", help="test|validation"),
    data: Optional[str] = typer.Option(None, "--data", help="Score this file instead of the run's split."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    allow_pickle: bool = PickleOpt,
    debug: bool = DebugOpt,
) -> None:
    """Score the run's best model on a held-out split; writes RUN_DIR/eval_<split>.json (and confusion_<split>.png for classification tasks)."""
    from ftkit.api import evaluate

    result = evaluate(run_dir, split, data=data, batch_size=batch_size, device=device, allow_pickle=allow_pickle)
    if as_json:
        typer.echo(json.dumps({"split": result.split, "data": result.data, **result.metrics}))
    else:
        typer.echo(f"{split} ({result.data})")
        typer.echo(result.table)


@app.command()
@_handled
def export(
    run_dir: Path = typer.Argument(..., help="A run folder made by `ftkit finetune`."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder to create."),
    format_: str = typer.Option("transformers", "--format", help="transformers (safetensors) | onnx"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: onnxruntime dynamic quantization "
                                           "of the ONNX graph (with --format onnx)."),
    adapter_only: bool = typer.Option(False, "--adapter-only", help="LoRA runs: the adapter (and trained heads) "
                                      "as peft saves it, instead of the merged model."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Upload the export to the hub repo "
                                              "OWNER/NAME (token: HF_TOKEN or `hf auth login`)."),
    private: bool = typer.Option(False, "--private", help="Create the hub repo private."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    debug: bool = DebugOpt,
) -> None:
    """Write the best model as a folder plain transformers loads (safetensors, tokenizer, model card), an
    ONNX graph, or a LoRA adapter; optionally push it to the Hugging Face hub."""
    from ftkit.api import export as api_export

    out = api_export(run_dir, output, overwrite=overwrite, format=format_, quantize=quantize,
                     adapter_only=adapter_only, push_to_hub=push_to_hub, private=private)
    if out is not None:
        typer.echo(f"exported to {out}", err=True)


def read_predict_inputs(text: str, name: str) -> list[dict]:
    """``ftkit predict`` input: JSONL records, or plain text lines (``{"text": line}``); blank lines skipped."""
    from ftkit.errors import FtkitError

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
    return records


TaskSetOpt = typer.Option([], "--set", help="Change a task option for prediction: task_options.KEY=VALUE (repeatable; "
                          "NER: task_options.aggregation=simple groups sub-tokens as transformers' pipeline does).")


def _task_options(items: List[str]) -> dict:
    """``--set task_options.KEY=VALUE`` items of predict/serve -> ``{KEY: VALUE}`` (the task validates them)."""
    from ftkit.config import parse_set_option
    from ftkit.errors import FtkitError

    options = {}
    for item in items:
        key, value = parse_set_option(item)
        if not key.startswith("task_options.") or key == "task_options.":
            raise FtkitError(f"--set here changes task options only (task_options.KEY=VALUE), got '{key}'",
                             hint="the rest of a trained model's recipe is fixed: train again to change it")
        options[key[len("task_options."):]] = value
    return options


@app.command()
@_handled
def predict(
    model: str = typer.Argument(..., help="A run folder or an exported folder."),
    input_: str = typer.Option("-", "--input", "-i", help="Text lines or JSONL; '-' reads stdin."),
    output: str = typer.Option("-", "--output", "-o", help="JSONL out; '-' writes stdout."),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    set_: List[str] = TaskSetOpt,
    allow_pickle: bool = PickleOpt,
    debug: bool = DebugOpt,
) -> None:
    """Predict on text lines or JSONL records; prints one JSON object per input."""
    from ftkit.api import predict as api_predict

    task_options = _task_options(set_)

    if input_ == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        from ftkit.data.records import read_text

        text, name = read_text(input_), input_
    results = api_predict(model, read_predict_inputs(text, name), batch_size=batch_size, device=device,
                          allow_pickle=allow_pickle, task_options=task_options)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if output == "-":
        sys.stdout.write(lines)
    else:
        Path(output).write_text(lines, encoding="utf-8")


@app.command()
@_handled
def serve(
    model: str = typer.Argument(..., help="A run folder or an exported folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (anything but loopback exposes the "
                             "model to the network: see the README)."),
    port: int = typer.Option(8000, "--port", help="TCP port; 0 picks a free one."),
    device: str = typer.Option("auto", "--device"),
    max_batch_size: int = typer.Option(128, "--max-batch-size", help="Inputs per model call (dynamic batching)."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a request waits for others to batch with."),
    max_body_bytes: int = typer.Option(1_048_576, "--max-body-bytes", help="Larger request bodies get 413."),
    max_inputs: int = typer.Option(256, "--max-inputs", help="Inputs per request; more get 413."),
    max_input_chars: int = typer.Option(20_000, "--max-input-chars", help="Characters per input; more get 413."),
    max_queue: int = typer.Option(4096, "--max-queue", help="Inputs waiting for the model; past it new requests get 503."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FTKIT_API_KEY",
                                          help="Require this key (Authorization: Bearer KEY or X-API-Key) on every "
                                          "request; better given as FTKIT_API_KEY than on the command line."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="One log line per request."),
    set_: List[str] = TaskSetOpt,
    allow_pickle: bool = PickleOpt,
    debug: bool = DebugOpt,
) -> None:
    """Serve a model over HTTP: POST /predict (batched), GET /health, /info, /docs, and / to try it by hand."""
    from ftkit.api import serve as api_serve

    api_serve(model, host=host, port=port, device=device, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
              max_body_bytes=max_body_bytes, max_inputs=max_inputs, max_input_chars=max_input_chars,
              max_queue=max_queue, api_key=api_key, access_log=access_log, allow_pickle=allow_pickle,
              task_options=_task_options(set_))


@app.command()
@_handled
def validate(
    task: Optional[str] = typer.Option(None, "--task", "-t", help=TASKS),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Built-in recipe name or a YAML file."),
    train: Optional[str] = typer.Option(None, "--train"),
    validation: Optional[str] = typer.Option(None, "--validation"),
    test: Optional[str] = typer.Option(None, "--test"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Also count inputs longer than its window."),
    workers: Optional[int] = WorkersOpt,
    source_lang: Optional[str] = SourceLangOpt,
    target_lang: Optional[str] = TargetLangOpt,
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when there are warnings."),
    set_: List[str] = typer.Option([], "--set", help="Override any recipe key: dotted.key=value."),
    debug: bool = DebugOpt,
) -> None:
    """Check data with the task's readers, without training. Exit 0 clean, 1 warnings (--strict), 2 errors."""
    from ftkit.api import validate as api_validate

    report = api_validate(task, recipe=recipe, train=train, validation=validation, test=test, model=model,
                          source_lang=source_lang, target_lang=target_lang, workers=workers, overrides=set_,
                          _style="cli")
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


def _sweep(**kw) -> None:
    """Search hyper-parameters (optuna: TPE, median pruning) over the recipe keys in --space; every
    finetune flag sets the base recipe. Resumable (--resume); writes SWEEP/best.yaml."""
    from ftkit.sweep import sweep as run_sweep

    kw.pop("debug", None)
    result = run_sweep(overrides=kw.pop("set_"), _style="cli", **kw)
    typer.echo(f"sweep folder: {result.sweep_dir}", err=True)
    typer.echo(f"best: {result.meta['best_folder']}  validation {result.metric} {result.best_value:.4f}"
               + (f"  test {result.metric} {result.test[result.metric]:.4f}"
                  if result.test and isinstance(result.test.get(result.metric), float) else ""))
    typer.echo(f"recipe: {result.sweep_dir / 'best.yaml'}", err=True)


def _sweep_signature() -> inspect.Signature:
    """Every finetune flag (so a new one reaches the sweep by itself), then the sweep's own options."""
    own = {
        "space": (Optional[Path], typer.Option(None, "--space", help="YAML: recipe keys -> {float|int: [low, high], "
                                               "log: bool} or {choice: [...]} [default with --resume: the sweep's]")),
        "trials": (Optional[int], typer.Option(None, "--trials", help="Trials to finish (completed or pruned) "
                                               "[default with --resume: the sweep's]")),
        "output": (Path, typer.Option(..., "--output", "-o", help="Sweep folder.")),
        "resume": (bool, typer.Option(False, "--resume", help="Continue the sweep in --output: finished trials are "
                                      "kept, an interrupted one runs again.")),
        "sampler": (str, typer.Option("tpe", "--sampler", help="tpe|random")),
        "pruner": (str, typer.Option("median", "--pruner", help="median|none: stop trials whose validation metric "
                                     "is below the median of finished trials at the same step.")),
        "startup_trials": (Optional[int], typer.Option(None, "--startup-trials", help="Trials sampled at random and "
                                                       "never pruned [default: a quarter of --trials, at least 2].")),
    }
    params = [p for name, p in inspect.signature(finetune, eval_str=True).parameters.items()
              if name not in ("output", "overwrite", "resume", "debug", "processes", "accelerate_config")]
    # (a sweep's trials run in its own process: --processes is finetune's)
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
               for name, (ann, default) in own.items()]
    params.append(inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=DebugOpt, annotation=bool))
    return inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])


_sweep.__signature__ = _sweep_signature()
app.command("sweep")(_handled(_sweep))


@app.command()
@_handled
def compare(
    runs: List[Path] = typer.Argument(..., help="Run folders and sweep folders."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    debug: bool = DebugOpt,
) -> None:
    """One row per run (every trial of a sweep): task, model, the hyper-parameters that differ,
    validation and test metrics, train time, steps, trainable parameters."""
    from ftkit.compare import compare as api_compare

    table = api_compare(runs)
    typer.echo(json.dumps(table.to_json(), indent=2) if as_json else table.text())


@app.command()
@_handled
def report(
    runs: List[Path] = typer.Argument(..., help="Run folders and sweep folders."),
    output: Path = typer.Option(..., "--output", "-o", help="The HTML file to write."),
    debug: bool = DebugOpt,
) -> None:
    """One self-contained HTML page: comparison, learning curves, per-label scores, confusion matrix,
    error analysis, and for a sweep each trial's score against each searched hyper-parameter."""
    from ftkit.report import write_report

    path = write_report(runs, output)
    typer.echo(f"report: {path}", err=True)


@app.command()
@_handled
def recipes(debug: bool = DebugOpt) -> None:
    """List the built-in recipes."""
    from ftkit.launch import ACCELERATE_DIR, accelerate_configs
    from ftkit.recipes import builtin_recipes, describe

    for name, path in builtin_recipes().items():
        typer.echo(f"{name:<28}{describe(path)}")
    configs = accelerate_configs()
    if configs:
        typer.echo(f"\naccelerate configs (--accelerate-config NAME, or accelerate launch --config_file "
                   f"recipes/{ACCELERATE_DIR}/NAME.yaml):")
        for name, path in configs.items():
            typer.echo(f"{name:<28}{describe(path)}")


def main(argv: list[str] | None = None) -> None:
    """The console script: usage errors as one line, a closed pipe ends quietly."""
    from ftkit import startup, timing

    timing.command_line = True  # this process is the command: its time counts from the process's start
    try:
        code = app(args=argv, prog_name="ftkit", standalone_mode=False)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_PIPE)
    except Exception as e:
        # Typer vendors click: its usage errors (unknown option, bad value, missing argument) carry
        # format_message() and exit_code; print them as the rest of the CLI prints errors.
        if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":
            print(e.format_message(), file=sys.stderr)
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "ftkit"
        print(f"error: {' '.join(e.format_message().split())} (hint: see '{where} --help')", file=sys.stderr)
        sys.exit(e.exit_code)
    finally:
        startup.finish()  # the interpreter's exit need not walk the libraries' objects again (~1 s)
    if isinstance(code, int) and code:
        sys.exit(code)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    main()
