"""The run folder: its layout, its metadata, and writes that are never seen half-done.

Layout of ``RUN_DIR``::

    recipe.yaml        the resolved recipe (re-runnable with --recipe)
    run.json           task, labels, base model, data summary, final metrics, wall time
    checkpoints/       Trainer checkpoints (resume with --resume); complete ones hold a marker file
    model/             the best model, tokenizer and ftkit.json (what export ships)
    train_log.jsonl    one JSON object per Trainer log event
    training.png       loss and dev metric over steps
    eval_<split>.json  metrics written by finetune (test) and by `ftkit eval`
    predictions_<split>.jsonl  one row per example for error analysis (``task.prediction_rows``)
    tensorboard/, mlflow/, mlflow_run.json   experiment tracking, when ``training.report_to`` asks for it
    (task files)       whatever ``task.write_outputs`` writes, e.g. predictions_<split>.txt

A model folder (``RUN_DIR/model`` or an export) holds ``ftkit.json``: the task's :class:`Facts`
(task, options, labels, family, window) plus how to load the model (``auto_class``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.tasks.base import Facts
from ftkit.version import __version__

MODEL_SUBDIR = "model"
META_FILE = "ftkit.json"
RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train_log.jsonl"
#: written into a checkpoint folder once everything in it is on disk; resume skips unmarked ones
COMPLETE_MARKER = "ftkit-complete"


def no_space_error(folder: Path, needed_bytes: int) -> FtkitError:
    """The one line for a full disk: which folder, how much it needs, how much is free."""
    try:
        free = shutil.disk_usage(next(p for p in [Path(folder), *Path(folder).parents] if p.exists())).free
    except (OSError, StopIteration):
        free = 0
    return FtkitError(f"no space left on the device while writing {folder}: it needs about "
                      f"{needed_bytes / 2**20:.0f} MB, {free / 2**20:.0f} MB are free",
                      hint="free some space (or use --save-total-limit 1 or another --output) and run again; "
                           "earlier complete checkpoints are intact")


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: a temporary file, then a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise FtkitError(f"cannot read {Path(path).name}: {e}", file=path) from None


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to write into a non-empty folder unless asked to replace (or continue) it."""
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            return
        if not overwrite:
            raise FtkitError(
                "output folder exists and is not empty", file=run_dir,
                hint="pass --overwrite to replace it, --resume to continue it, or choose another --output",
            )


def find_model_dir(path: str | Path) -> Path:
    """A run folder's ``model/``, or a model folder itself."""
    p = Path(path)
    if (p / MODEL_SUBDIR / META_FILE).exists():
        return p / MODEL_SUBDIR
    if (p / META_FILE).exists():
        return p
    if (p / RUN_FILE).exists():
        raise FtkitError("this run has no finished model yet", file=p, hint="finish it with `ftkit finetune --resume`")
    if not p.exists():
        raise FtkitError("no such run or model folder", file=p)
    raise FtkitError("not an ftkit run or export folder (no ftkit.json)", file=p)


def read_model_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(model folder, its ftkit.json) of a run folder or a model folder."""
    mdir = find_model_dir(path)
    return mdir, read_json(mdir / META_FILE)


def facts_of(meta: dict[str, Any], source: str, task_options: dict[str, Any] | None = None):
    """(task, Facts) recorded in an ftkit.json mapping, without loading the model. ``task_options``: options
    changed for prediction (``ftkit predict --set task_options.KEY=VALUE``), validated by the task."""
    from ftkit.tasks import make_task

    for key in ("task", "labels", "family", "max_length"):
        if key not in meta:
            raise FtkitError(f"ftkit.json has no '{key}'", file=source, hint="re-export the run with this ftkit")
    options = meta.get("task_options", {})
    if task_options:  # changed for prediction: an error names the flag that changed them
        task = make_task(meta["task"], {**options, **task_options}, source="--set")
    else:
        task = make_task(meta["task"], options, source=source)
    facts = Facts(task=task.name, labels=tuple(meta["labels"]), family=meta["family"],
                  max_length=int(meta["max_length"]), options=task.options)
    return task, facts


def task_of(path: str | Path, task_options: dict[str, Any] | None = None):
    """(task, facts, meta) of a run or export folder, without loading the model."""
    mdir, meta = read_model_meta(path)
    task, facts = facts_of(meta, str(mdir / META_FILE), task_options)
    return task, facts, meta


def save_model(trainer, tokenizer, task, facts: Facts, info, base_model: str, out: Path) -> None:
    """The trained model, its tokenizer and ftkit.json, written to a temporary folder and renamed.

    Every process calls it (a sharded model -- FSDP, DeepSpeed ZeRO-3 -- is gathered into full weights
    collectively; a LoRA model is merged on every process, as the run goes on with the merged model);
    the main process alone writes.
    """
    from ftkit.engine import distributed
    from ftkit.engine.adapters import is_peft_model, merge_adapter

    main = trainer.args.should_save
    tmp = out.with_name(out.name + ".tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    adapter: dict[str, Any] = {}
    try:
        if is_peft_model(trainer.model):
            # LoRA: the adapter as peft saves it in adapter/, and the merged model beside it, so the folder
            # loads with plain transformers as a fully fine-tuned one does; the run goes on with the merged model
            trainer.model, adapter = merge_adapter(trainer.model, tmp, save=main)
            trainer.model_wrapped = trainer.model
            if main:
                trainer.model.save_pretrained(str(tmp))
        elif getattr(trainer, "is_fsdp_enabled", False):
            # consolidated full weights whatever the FSDP state-dict type of the checkpoints
            state_dict = trainer.accelerator.get_state_dict(trainer.model)
            if main:
                trainer._save(str(tmp), state_dict=state_dict)
        else:
            trainer.save_model(str(tmp))
        if main:
            # Trainer also pickles its TrainingArguments: not part of a model, and not safe to load.
            (tmp / "training_args.bin").unlink(missing_ok=True)
            tokenizer.save_pretrained(str(tmp))
            write_json(tmp / META_FILE, {
                "ftkit_version": __version__, **facts.to_meta(), "model_type": info.model_type,
                "base_model": base_model, "add_prefix_space": bool(getattr(tokenizer, "add_prefix_space", False)),
                **task.export_info(trainer.model, tokenizer, facts), **({"peft": adapter} if adapter else {}),
            })
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno != errno.ENOSPC:
            raise
        raise no_space_error(out, 4 * sum(p.numel() for p in trainer.model.parameters())) from None
    if main:
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    distributed.barrier()


def write_eval(run_dir: Path, metrics: dict[str, Any]) -> None:
    """eval_<split>.json, plus confusion_<split>.png when the task reports a single-label confusion matrix."""
    from ftkit.plot import plot_confusion

    split = metrics["split"]
    write_json(Path(run_dir) / f"eval_{split}.json", metrics)
    plot_confusion(metrics, Path(run_dir) / f"confusion_{split}.png", f"confusion matrix, {split} split")


def write_predictions(run_dir: Path, split: str, task, facts: Facts, examples, predictions: list[Any]) -> None:
    """``predictions_<split>.jsonl``: the task's per-example rows (what ``ftkit report`` analyses), atomically."""
    rows = task.prediction_rows(examples, predictions, facts)
    if not rows:
        return
    path = Path(run_dir) / f"predictions_{split}.jsonl"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint that was completely written; incomplete ones are removed with a warning."""
    if not ckpt_dir.is_dir():
        return None
    ckpts = sorted(
        (p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for p in reversed(ckpts):
        if not (p / COMPLETE_MARKER).exists():
            log(f"warning: skipping incomplete checkpoint {p} (interrupted while it was written)")
        elif (problem := damaged_file(p)) is not None:
            log(f"warning: skipping damaged checkpoint {p}: {problem}")
        else:
            return str(p)
        shutil.rmtree(p, ignore_errors=True)
    return None


def damaged_file(folder: Path) -> str | None:
    """Why a checkpoint's files cannot be loaded (cut short by a crash or a full disk), or None.

    Cheap: safetensors files must be exactly as long as their header says; torch.save files (optimizer,
    scheduler, RNG states) are zip archives whose directory sits at the end, so a cut file has none.
    """
    import zipfile

    for f in sorted(folder.glob("*.safetensors")):
        size = f.stat().st_size
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if not 0 < n < 100 * 2**20 or n > size - 8:
                    return f"{f.name} is truncated ({size} bytes, no complete header)"
                header = json.loads(fh.read(n))
        except (OSError, ValueError):
            return f"{f.name} has no readable header"
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if size != 8 + n + end:
            return f"{f.name} is truncated ({size} of {8 + n + end} bytes)"
    for f in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):
        if not zipfile.is_zipfile(f):
            return f"{f.name} is truncated or damaged"
    return None
