"""The one training engine: every task trains, evaluates and predicts through here.

Run folder layout (``RUN_DIR``)::

    recipe.yaml        the resolved recipe (re-runnable with --recipe)
    run.json           task, labels, base model, data summary, final metrics
    checkpoints/       Trainer checkpoints (resume with --resume)
    model/             the best model, tokenizer and ftkit.json (what export ships)
    train_log.jsonl    one JSON object per Trainer log event
    training.png       loss and dev metric over steps
    eval_<split>.json  metrics written by finetune (test) and by `ftkit eval`
    (task files)       whatever ``task.write_outputs`` writes, e.g. predictions_<split>.txt

Generative tasks (``task.generates``) get their outputs from ``task.generate`` (batched
``model.generate``) instead of Trainer logits: in the per-epoch validation (FtkitTrainer's
evaluation loop computes the loss, then generates and scores) and in eval/predict.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ftkit import __version__
from ftkit.config import RunConfig, dump_yaml, validate, validate_options
from ftkit.errors import FtkitError
from ftkit.tasks import get_task_class

MODEL_SUBDIR = "model"
META_FILE = "ftkit.json"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("FTKIT_CACHE_DIR") or Path.home() / ".cache" / "ftkit")


# ---------------------------------------------------------------------------
# task and data


def make_task(task_name: str, options: dict[str, Any], source: str = "recipe"):
    cls = get_task_class(task_name)
    return cls(validate_options(cls.Options, options, source))


def read_splits(task, cfg: RunConfig) -> dict[str, Any]:
    """Read, validate and label-check every split the recipe names."""
    d = cfg.data
    if not d.train:
        raise FtkitError("no training data", hint="pass --train FILE or set data.train in the recipe")
    splits = {"train": task.read(d.train, "train", d.format, d.encoding)}
    if d.max_train_examples:
        splits["train"] = splits["train"].select(range(min(d.max_train_examples, len(splits["train"]))))
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
    labels = task.labels(splits["train"])
    for name in ("validation", "test"):
        if name in splits:
            task.check_labels(splits[name], labels, getattr(d, name) or name)
    return splits


def _tokenizer_fingerprint(tokenizer) -> str:
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    # truncation/padding are call-time settings the backend remembers, not part of the tokenizer
    state.pop("truncation", None)
    state.pop("padding", None)
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    h.update(json.dumps(state, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _code_fingerprint(cls) -> str:
    """The task module's source: an edited encoder (a development install) never reuses stale features."""
    import inspect

    try:
        return hashlib.sha256(Path(inspect.getfile(cls)).read_bytes()).hexdigest()[:16]
    except (OSError, TypeError):
        return ""


def encode_cached(task, examples, tokenizer, labels, max_length: int, train: bool):
    """``task.encode`` with an on-disk cache keyed by data, tokenizer and options."""
    from datasets import load_from_disk

    key = json.dumps(
        [__version__, _code_fingerprint(type(task)), task.name, task.options.model_dump(mode="json"), task.family,
         examples._fingerprint,
         _tokenizer_fingerprint(tokenizer), labels, max_length, train],
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    path = cache_dir() / "features" / digest
    if os.environ.get("FTKIT_NO_CACHE") != "1" and (path / "dataset_info.json").exists():
        try:
            return load_from_disk(str(path))
        except Exception:
            shutil.rmtree(path, ignore_errors=True)
    features = task.encode(examples, tokenizer, labels, max_length, train)
    if os.environ.get("FTKIT_NO_CACHE") != "1":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
            features.save_to_disk(str(tmp))
            os.replace(tmp, path)
        except OSError:
            pass  # a cache is an optimisation, never a failure
    return features


# ---------------------------------------------------------------------------
# Trainer plumbing


def _precision(requested: str, family: str, device: str) -> dict[str, bool]:
    import torch

    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if requested == "auto":
        if not on_cuda:
            return {}
        if torch.cuda.is_bf16_supported():
            return {"bf16": True}
        return {} if family == "t5" else {"fp16": True}  # T5 overflows in fp16
    if requested == "fp16" and not on_cuda:
        raise FtkitError("--precision fp16 needs a CUDA device", hint="use bf16 or fp32 on CPU")
    return {"bf16": True} if requested == "bf16" else {"fp16": True} if requested == "fp16" else {}


def _device_args(device: str) -> dict[str, Any]:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise FtkitError("--device cuda was asked for, but no CUDA device is available")
    use_cpu = device == "cpu" or not torch.cuda.is_available()
    return {"use_cpu": device == "cpu", "dataloader_pin_memory": not use_cpu}


COMPLETE_MARKER = "ftkit-complete"


def _trainer_class():
    import torch
    from torch.utils.data import SequentialSampler
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededSampler(torch.utils.data.Sampler):
        """Shuffled (optionally length-grouped) order drawn from ``seed + epoch`` alone.

        The order of an epoch does not depend on the global RNG, so a run resumed in the
        middle of an epoch replays exactly the batches the interrupted run would have seen.
        """

        def __init__(self, n: int, batch_size: int, seed: int, lengths=None):
            self.n, self.batch_size, self.seed, self.lengths, self.epoch = n, batch_size, seed, lengths, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __len__(self) -> int:
            return self.n

        def __iter__(self):
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            if self.lengths is None:
                return iter(torch.randperm(self.n, generator=g).tolist())
            # transformers groups by length within random mega-batches of 50 batches, each sorted longest
            # first, so every 50 steps the batches run from long to short. Keep its batches (little padding)
            # and the longest one first (memory errors show at once), but visit the rest in random order.
            order = list(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=g))
            batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            if not batches:
                return iter([])
            rest = [batches[i + 1] for i in torch.randperm(len(batches) - 1, generator=g).tolist()]
            return iter([i for b in batches[:1] + rest for i in b])

    from transformers.trainer_utils import EvalPrediction

    class FtkitTrainer(Trainer):
        """The Trainer with exact resume, ordered evaluation and generative evaluation.

        ``generate_fn(model) -> outputs`` (generative tasks): evaluation computes the loss on the
        eval set as usual, then scores ``generate_fn``'s outputs with ``compute_metrics`` instead of
        gathering logits. Metric names, logging, best-checkpoint selection and early stopping are
        the Trainer's own.
        """

        def __init__(self, *args, generate_fn=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.generate_fn = generate_fn
            ds = self.train_dataset
            # the length column is dropped with the other non-model columns before the sampler is built
            self._lengths = list(ds["length"]) if ds is not None and "length" in getattr(ds, "column_names", []) else None

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset if train_dataset is not None else self.train_dataset
            grouped = self.args.train_sampling_strategy == "group_by_length"
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededSampler(len(ds), self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                      seed, self._lengths if grouped else None)

        # transformers 5.x also length-groups *evaluation* batches when
        # train_sampling_strategy="group_by_length", which reorders predictions
        # relative to the features. Decoding needs them in order.
        def _get_eval_sampler(self, eval_dataset):
            return SequentialSampler(eval_dataset)

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            # A checkpoint counts only once everything in it is written: resume skips unmarked ones.
            path = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            if path.is_dir():
                (path / "training_args.bin").unlink(missing_ok=True)
                (path / COMPLETE_MARKER).write_text("ok\n")

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix="eval"):
            if self.generate_fn is None:
                return super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                               metric_key_prefix)
            out = super().evaluation_loop(dataloader, description, True, ignore_keys, metric_key_prefix)
            if prediction_loss_only is None:
                prediction_loss_only = self.args.prediction_loss_only
            if self.compute_metrics is not None and not prediction_loss_only:
                outputs = self.generate_fn(self.model)
                metrics = self.compute_metrics(EvalPrediction(predictions=outputs, label_ids=None))
                out.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in metrics.items()})
            return out

    FtkitTrainer.Sampler = EpochSeededSampler
    return FtkitTrainer


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint that was completely written; incomplete ones are removed with a warning."""
    if not ckpt_dir.is_dir():
        return None
    ckpts = sorted(
        (p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for p in reversed(ckpts):
        if (p / COMPLETE_MARKER).exists():
            return str(p)
        log(f"warning: skipping incomplete checkpoint {p} (interrupted while it was written)")
        shutil.rmtree(p, ignore_errors=True)
    return None


def _make_compute_metrics(task, examples, features, labels):
    def compute(eval_pred):
        preds = task.decode(examples, features, eval_pred.predictions, labels)
        metrics = task.score(examples, preds, labels)
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}

    return compute


def _callbacks(run_dir: Path):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            with open(run_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **(logs or {})}) + "\n")

    class GracefulInterrupt(TrainerCallback):
        """First Ctrl-C: save a checkpoint at the end of the step and stop. Second: abort."""

        interrupted = False

        def on_train_begin(self, args, state, control, **kw):
            def handler(signum, frame):
                if self.interrupted:
                    raise KeyboardInterrupt
                self.interrupted = True
                log("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to abort)")

            self._old = signal.signal(signal.SIGINT, handler) if _main_thread() else None

        def on_step_end(self, args, state, control, **kw):
            if self.interrupted:
                control.should_save = True
                control.should_training_stop = True

        def on_train_end(self, args, state, control, **kw):
            if self._old is not None:
                signal.signal(signal.SIGINT, self._old)

    return JsonlLog(), GracefulInterrupt()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _training_args(cfg: RunConfig, out: Path, family: str, has_eval: bool, best_metric: str):
    from transformers import TrainingArguments

    t = cfg.training
    eval_strategy = t.eval_strategy if has_eval else "no"
    if eval_strategy == "steps" and not t.eval_steps:
        raise FtkitError("training.eval_strategy=steps needs training.eval_steps")
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size * 2,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        seed=t.seed,
        data_seed=t.seed,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=eval_strategy if eval_strategy != "no" else "epoch",
        save_steps=t.eval_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=eval_strategy != "no",
        metric_for_best_model=best_metric if eval_strategy != "no" else None,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to="none",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        dataloader_num_workers=t.dataloader_workers,
        disable_tqdm=False,
        save_only_model=False,
        auto_find_batch_size=t.auto_batch_size,
        **_precision(t.precision, family, t.device),
        **_device_args(t.device),
    )


# ---------------------------------------------------------------------------
# model loading


def load_base(cfg: RunConfig, task, labels, *, allow_pickle: bool = False, trust_remote_code: bool = False):
    from transformers import set_seed

    from ftkit.families import load_config, load_tokenizer, max_length_for, prepare_model

    info = load_config(cfg.model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    task.family = info.family
    tokenizer = load_tokenizer(info)
    set_seed(cfg.training.seed)  # the new head's initialisation is part of the run's seed
    try:
        model = task.build_model(info, labels, tokenizer)
    except (OSError, ValueError) as e:
        raise FtkitError(f"cannot build a {task.name} model from '{cfg.model}': {str(e).splitlines()[0][:200]}") from None
    prepare_model(model, tokenizer)
    return info, tokenizer, model, max_length_for(info, tokenizer, cfg.training.max_length)


def find_model_dir(path: str | Path) -> Path:
    """A run folder's ``model/``, or a model folder itself."""
    p = Path(path)
    if (p / MODEL_SUBDIR / META_FILE).exists():
        return p / MODEL_SUBDIR
    if (p / META_FILE).exists():
        return p
    if (p / "run.json").exists():
        raise FtkitError("this run has no finished model yet", file=p, hint="finish it with `ftkit finetune --resume`")
    if not p.exists():
        raise FtkitError("no such run or model folder", file=p)
    raise FtkitError("not an ftkit run or export folder (no ftkit.json)", file=p)


def task_of(path: str | Path):
    """(task, meta) of a run or export folder, without loading the model."""
    mdir = find_model_dir(path)
    meta = json.loads((mdir / META_FILE).read_text(encoding="utf-8"))
    task = make_task(meta["task"], meta.get("task_options", {}), source=str(mdir / META_FILE))
    task.family = meta.get("family")
    return task, meta


def load_trained(path: str | Path, *, allow_pickle: bool = False):
    """(task, model, tokenizer, meta) from a run folder or an exported folder."""
    from transformers import AutoTokenizer

    from ftkit.families import check_weights

    mdir = find_model_dir(path)
    check_weights(str(mdir), allow_pickle)
    task, meta = task_of(mdir)
    kwargs = {"add_prefix_space": True} if meta.get("add_prefix_space") else {}
    tokenizer = AutoTokenizer.from_pretrained(str(mdir), **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model = task.load_model(str(mdir), meta, use_safetensors=not allow_pickle or None)
    return task, model, tokenizer, meta


def _torch_device(device: str):
    import torch

    _device_args(device)  # "cuda" without CUDA is an error
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def run_outputs(task, model, tokenizer, features, labels, batch_size: int = 32, device: str = "auto"):
    """Model outputs for ``features`` in order: reduced logits through the Trainer, or
    ``task.generate`` for generative tasks."""
    from transformers import TrainingArguments

    if task.generates:
        model.to(_torch_device(device))
        return task.generate(model, tokenizer, features, batch_size)

    with tempfile.TemporaryDirectory(prefix="ftkit-predict-") as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_eval_batch_size=batch_size, report_to="none",
            disable_tqdm=True, **_device_args(device),
        )
        trainer = _trainer_class()(
            model=model, args=args, data_collator=task.collator(tokenizer), processing_class=tokenizer,
            preprocess_logits_for_metrics=lambda logits, _: task.reduce_logits(logits, labels),
        )
        with contextlib.redirect_stdout(sys.stderr):
            return trainer.predict(features).predictions


# ---------------------------------------------------------------------------
# finetune


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            return
        if not overwrite:
            raise FtkitError(
                "output folder exists and is not empty", file=run_dir,
                hint="pass --overwrite to replace it, --resume to continue it, or choose another --output",
            )


def finetune(cfg: RunConfig, run_dir: Path, *, overwrite: bool = False, resume: bool = False,
             recipe_source: str = "recipe", allow_pickle: bool = False,
             trust_remote_code: bool = False) -> dict[str, Any]:
    started = time.time()
    task = make_task(cfg.task, cfg.task_options, recipe_source)
    prepare_run_dir(run_dir, overwrite, resume)

    log(f"ftkit {__version__}: task {task.name}, model {cfg.model}")
    splits = read_splits(task, cfg)
    labels = task.labels(splits["train"])
    summary = {name: task.data_summary(ds, name) for name, ds in splits.items()}
    for name, s in summary.items():
        log(f"  {name}: {json.dumps(s)}")
    warnings = [w for name, ds in splits.items() for w in task.lint(ds, name)]
    for where, msg in warnings[:10]:
        log(f"  warning: {where}: {msg}")
    if len(warnings) > 10:
        log(f"  ... and {len(warnings) - 10} more warnings (see `ftkit validate`)")

    info, tokenizer, model, max_length = load_base(cfg, task, labels, allow_pickle=allow_pickle,
                                                   trust_remote_code=trust_remote_code)
    log(f"  model: {info.path} (family {info.family}, {info.model_type}); window {max_length} sub-tokens")
    features = {
        name: encode_cached(task, ds, tokenizer, labels, max_length, train=(name == "train"))
        for name, ds in splits.items()
    }
    for name in ("validation", "test"):
        if name in features and len(features[name]) > len(splits[name]):
            log(f"  {name}: {len(features[name]) - len(splits[name])} extra windows for long inputs")

    # Everything the user could have got wrong has been checked: now the run folder is created.
    created = not run_dir.exists()
    if run_dir.exists() and overwrite and not resume:
        shutil.rmtree(run_dir)
        created = True
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    try:
        (run_dir / "recipe.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
        result = _train(cfg, task, info, tokenizer, model, max_length, labels, splits, features, run_dir,
                        resume, summary, started)
    except BaseException:
        # A run that never reached a checkpoint is not worth keeping.
        if created and not any(ckpt_dir.glob("checkpoint-*")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return result


def _train(cfg, task, info, tokenizer, model, max_length, labels, splits, features, run_dir: Path, resume,
           summary, started) -> dict[str, Any]:
    from transformers import EarlyStoppingCallback

    has_eval = "validation" in splits
    args = _training_args(cfg, run_dir / "checkpoints", info.family, has_eval, task.best_metric)
    jsonl, interrupt = _callbacks(run_dir)
    callbacks = [jsonl, interrupt]
    if cfg.training.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.training.early_stopping_patience))
    generate_fn = None
    if task.generates and has_eval:
        eval_bs = args.per_device_eval_batch_size

        def generate_fn(m):
            return task.generate(m, tokenizer, features["validation"], eval_bs)

    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=features["train"],
        eval_dataset=features.get("validation"),
        data_collator=task.collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=_make_compute_metrics(task, splits["validation"], features["validation"], labels)
        if has_eval else None,
        preprocess_logits_for_metrics=lambda logits, _: task.reduce_logits(logits, labels),
        callbacks=callbacks,
        generate_fn=generate_fn,
    )
    checkpoint = None
    if resume:
        checkpoint = last_complete_checkpoint(run_dir / "checkpoints")
        log(f"  resuming from {checkpoint}" if checkpoint else "  --resume: no checkpoint yet, starting fresh")
    import torch

    try:
        with contextlib.redirect_stdout(sys.stderr):
            train_out = trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError:
        b, g = cfg.training.batch_size, cfg.training.gradient_accumulation
        raise FtkitError(
            f"the device ran out of memory at batch size {b}",
            hint=f"try --batch-size {max(1, b // 2)} --gradient-accumulation {g * 2} (same effective batch), "
                 "or --auto-batch-size to halve it until it fits",
        ) from None
    if interrupt.interrupted:
        log(f"stopped; a checkpoint is in {run_dir / 'checkpoints'}. Continue with:\n"
            f"  ftkit finetune --recipe {run_dir / 'recipe.yaml'} --output {run_dir} --resume")
        raise SystemExit(130)

    save_model(trainer, tokenizer, task, info, labels, max_length, cfg, run_dir / MODEL_SUBDIR)
    metrics: dict[str, Any] = {"train_loss": train_out.training_loss, "train_steps": train_out.global_step}
    if trainer.state.best_model_checkpoint:
        metrics["best_checkpoint"] = Path(trainer.state.best_model_checkpoint).name
    for name in ("validation", "test"):
        if name in splits:
            outputs = run_outputs(task, trainer.model, tokenizer, features[name], labels,
                                  cfg.training.eval_batch_size or cfg.training.batch_size * 2, cfg.training.device)
            preds = task.decode(splits[name], features[name], outputs, labels)
            scores = task.score(splits[name], preds, labels)
            task.write_outputs(run_dir, name, splits[name], preds)
            write_eval(run_dir, {"split": name, "data": getattr(cfg.data, name), **scores})
            metrics[name] = scores
    meta = {
        "ftkit_version": __version__, "task": task.name, "base_model": cfg.model, "base_model_path": info.path,
        "family": info.family, "labels": labels, "max_length": max_length, "data": summary,
        "wall_time_s": round(time.time() - started, 1), "metrics": metrics,
    }
    write_json(run_dir / "run.json", meta)
    from ftkit.plot import plot_training

    plot_training(run_dir / "train_log.jsonl", run_dir / "training.png", task.best_metric)
    return meta


def save_model(trainer, tokenizer, task, info, labels, max_length, cfg, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    # Trainer also pickles its TrainingArguments: not part of a model, and not safe to load.
    (tmp / "training_args.bin").unlink(missing_ok=True)
    tokenizer.save_pretrained(str(tmp))
    write_json(tmp / META_FILE, {
        "ftkit_version": __version__, "task": task.name, "task_options": task.options.model_dump(mode="json"),
        "labels": labels, "max_length": max_length, "family": info.family, "model_type": info.model_type,
        "base_model": cfg.model, "add_prefix_space": bool(getattr(tokenizer, "add_prefix_space", False)),
        **task.export_info(trainer.model, tokenizer),
    })
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def write_eval(run_dir: Path, metrics: dict[str, Any]) -> None:
    """eval_<split>.json, plus confusion_<split>.png when the task reports a single-label confusion matrix."""
    from ftkit.plot import plot_confusion

    split = metrics["split"]
    write_json(run_dir / f"eval_{split}.json", metrics)
    plot_confusion(metrics, run_dir / f"confusion_{split}.png", f"confusion matrix, {split} split")


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# eval and predict


def evaluate_run(run_dir: Path, split: str, data: str | None = None, batch_size: int = 32,
                 device: str = "auto", allow_pickle: bool = False) -> dict[str, Any]:
    """Score the model on a split; in a run folder the task's output files are (re)written too."""
    task, model, tokenizer, meta = load_trained(run_dir, allow_pickle=allow_pickle)
    labels = meta["labels"]
    recipe = Path(run_dir) / "recipe.yaml"
    fmt, encoding = "auto", "utf-8"
    if recipe.exists():
        from ftkit.config import load_yaml

        cfg = validate(load_yaml(recipe), str(recipe))
        fmt, encoding = cfg.data.format, cfg.data.encoding
        data = data or getattr(cfg.data, split, None)
    if not data:
        raise FtkitError(f"the run has no {split} data", hint="pass --data FILE")
    examples = task.read(data, split, fmt, encoding)
    task.check_labels(examples, labels, data)
    features = task.encode(examples, tokenizer, labels, meta["max_length"], train=False)
    outputs = run_outputs(task, model, tokenizer, features, labels, batch_size, device)
    preds = task.decode(examples, features, outputs, labels)
    scores = task.score(examples, preds, labels)
    if (Path(run_dir) / "run.json").exists():
        task.write_outputs(Path(run_dir), split, examples, preds)
    return {"split": split, "data": data, **scores}


def predict_records(model_path: str | Path, records: list[dict[str, Any]], batch_size: int = 32,
                    device: str = "auto", allow_pickle: bool = False) -> list[dict[str, Any]]:
    task, model, tokenizer, meta = load_trained(model_path, allow_pickle=allow_pickle)
    labels = meta["labels"]
    examples = task.predict_examples(records)
    if len(examples) == 0:
        return []
    features = task.encode(examples, tokenizer, labels, meta["max_length"], train=False)
    outputs = run_outputs(task, model, tokenizer, features, labels, batch_size, device)
    preds = task.decode(examples, features, outputs, labels)
    return [task.format_prediction(ex, p) for ex, p in zip(examples, preds)]
