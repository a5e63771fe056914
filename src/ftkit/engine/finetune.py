"""A training run from a resolved recipe: read -> resolve facts -> encode -> train -> save -> score.

Everything a user can get wrong (data, labels, model, options) is checked before the run folder
is created; a run that fails before its first checkpoint leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ftkit.config import RunConfig, dump_yaml, flat_keys
from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.tasks import make_task
from ftkit.version import __version__


def finetune(cfg: RunConfig, run_dir: Path, *, overwrite: bool = False, resume: bool = False,
             recipe_source: str = "recipe", allow_pickle: bool = False, trust_remote_code: bool = False,
             callbacks: Sequence[Any] = (), score_test: bool = True) -> dict[str, Any]:
    """Train, save the best model to ``run_dir/model`` and score validation and test; returns run.json.

    SIGTERM (a scheduler preempting the job) and Ctrl-C save a complete checkpoint and exit with
    128 + the signal's number; with ``training.auto_resume`` the same call again continues from it.
    ``callbacks``: extra ``TrainerCallback`` objects (a sweep's pruning callback). ``score_test=False``
    leaves the test split unscored (a sweep scores it once, for its best trial, at the end).
    """
    from ftkit.engine.run_folder import RUN_FILE, prepare_run_dir, read_json
    from ftkit.engine.tracking import check_trackers
    from ftkit.engine.trainer import sigterm_exits

    started = time.time()
    run_dir = Path(run_dir)
    task = make_task(cfg.task, cfg.task_options, recipe_source)
    if cfg.data.streaming and cfg.training.max_steps <= 0:
        raise FtkitError("data.streaming: a stream has no length, so epochs are undefined: pass --max-steps N "
                         "(training.max_steps) instead of --epochs")
    if cfg.training.auto_resume and not (resume or overwrite):
        plan = auto_resume_plan(cfg, run_dir)
        if plan == "done":
            log(f"--auto-resume: {run_dir} is already complete")
            return read_json(run_dir / RUN_FILE)
        resume, overwrite = plan == "resume", plan == "fresh"
    check_trackers(cfg.training.report_to)
    prepare_run_dir(run_dir, overwrite, resume)
    with sigterm_exits():
        return _finetune(cfg, task, run_dir, overwrite, resume, allow_pickle, trust_remote_code, started,
                         list(callbacks), score_test)


def auto_resume_plan(cfg: RunConfig, run_dir: Path) -> str:
    """What re-running the same command does to ``run_dir``: ``new`` (nothing there), ``resume`` (from its
    last complete checkpoint), ``fresh`` (a run of this recipe that never reached a checkpoint: start over)
    or ``done`` (it finished). A folder of another recipe is refused."""
    from ftkit.config import validate
    from ftkit.engine.run_folder import CHECKPOINTS, RECIPE_FILE, RUN_FILE, last_complete_checkpoint
    from ftkit.recipes import load_yaml

    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    saved = run_dir / RECIPE_FILE
    if not saved.exists():
        raise FtkitError("--auto-resume: the output folder is not an ftkit run (no recipe.yaml)", file=run_dir,
                         hint="choose another --output, or --overwrite to replace it")
    before = validate(load_yaml(saved), str(saved)).model_dump(mode="json")
    now = cfg.model_dump(mode="json")
    if before != now:
        flat_before, flat_now = flat_keys(before), flat_keys(now)
        diff = [k for k in flat_now if flat_before.get(k) != flat_now[k]] + [k for k in flat_before if k not in flat_now]
        raise FtkitError(f"--auto-resume: {run_dir} was started with another recipe (differs in {', '.join(diff[:5])})",
                         hint="run the same command as before, or choose another --output (or --overwrite)")
    if (run_dir / RUN_FILE).exists():
        return "done"
    return "resume" if last_complete_checkpoint(run_dir / CHECKPOINTS) else "fresh"


def _finetune(cfg, task, run_dir: Path, overwrite: bool, resume: bool, allow_pickle: bool, trust_remote_code: bool,
              started: float, callbacks: list[Any], score_test: bool) -> dict[str, Any]:
    from ftkit.engine.feature_cache import encode_cached
    from ftkit.engine.models import load_base
    from ftkit.engine.run_folder import CHECKPOINTS, RECIPE_FILE
    from ftkit.engine.splits import describe, read_splits, workers_of

    log(f"ftkit {__version__}: task {task.name}, model {cfg.model}")
    read_started = time.time()
    task, splits, labels = read_splits(task, cfg)
    summary, _ = describe(task, splits)
    log(f"  data read and checked in {time.time() - read_started:.1f}s")

    info, task, facts, tokenizer, model = load_base(cfg, task, splits["train"], labels, allow_pickle=allow_pickle,
                                                    trust_remote_code=trust_remote_code)
    log(f"  model: {info.path} (family {info.family}, {info.model_type}); window {facts.max_length} sub-tokens")
    workers = workers_of(cfg)
    encode_started = time.time()
    features = {name: encode_cached(task, facts, ds, tokenizer, train=(name == "train"), workers=workers)
                for name, ds in splits.items()}
    log(f"  features ready in {time.time() - encode_started:.1f}s (--workers {workers}"
        f"{'; streamed: tokenized while training' if cfg.data.streaming else ''})")
    for name in ("validation", "test"):
        if name in features and len(features[name]) > len(splits[name]):
            log(f"  {name}: {len(features[name]) - len(splits[name])} extra windows for long inputs")

    # Everything the user could have got wrong has been checked: now the run folder is created.
    created = not run_dir.exists()
    if run_dir.exists() and overwrite and not resume:
        shutil.rmtree(run_dir)
        created = True
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        (run_dir / RECIPE_FILE).write_text(dump_yaml(cfg), encoding="utf-8")
        return _train(cfg, task, facts, info, tokenizer, model, splits, features, run_dir, resume, summary, started,
                      callbacks, score_test)
    except BaseException:
        # A run that never reached a checkpoint is not worth keeping.
        if created and not any((run_dir / CHECKPOINTS).glob("checkpoint-*")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(cfg, task, facts, info, tokenizer, model, splits, features, run_dir: Path, resume: bool, summary,
           started: float, extra_callbacks: list[Any], score_test: bool) -> dict[str, Any]:
    import torch
    from transformers import EarlyStoppingCallback

    from ftkit.engine.inference import score_split
    from ftkit.engine.run_folder import (CHECKPOINTS, MODEL_SUBDIR, RUN_FILE, TRAIN_LOG, last_complete_checkpoint,
                                         save_model, write_eval, write_json, write_predictions)
    from ftkit.engine.tracking import point_trackers, tracking_run
    from ftkit.engine.trainer import FtkitTrainer, GracefulInterrupt, JsonlLog, eval_batch_size, training_arguments

    has_eval = "validation" in splits
    args = training_arguments(cfg, run_dir / CHECKPOINTS, facts.family, has_eval, task.best_metric)
    interrupt = GracefulInterrupt()
    callbacks = [JsonlLog(run_dir / TRAIN_LOG), interrupt, *extra_callbacks]
    if cfg.training.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.training.early_stopping_patience))
    compute_metrics = generate_fn = None
    if has_eval:
        examples, feats = splits["validation"], features["validation"]

        def compute_metrics(eval_pred):
            preds = task.decode(examples, feats, eval_pred.predictions, facts)
            return {k: v for k, v in task.score(examples, preds, facts).items() if isinstance(v, (int, float))}

        if task.generates:
            def generate_fn(m):
                return task.generate(m, tokenizer, feats, facts, args.per_device_eval_batch_size)

    trainer = FtkitTrainer(
        model=model, args=args, train_dataset=features["train"], eval_dataset=features.get("validation"),
        data_collator=task.collator(tokenizer, facts), processing_class=tokenizer, compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=lambda logits, _: task.reduce_logits(logits, facts),
        callbacks=callbacks, generate_fn=generate_fn,
    )
    point_trackers(trainer, run_dir)
    checkpoint = None
    if resume:
        checkpoint = last_complete_checkpoint(run_dir / CHECKPOINTS)
        log(f"  resuming from {checkpoint}" if checkpoint else "  --resume: no checkpoint yet, starting fresh")
    with tracking_run(cfg, run_dir, resume) as tracking:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                train_out = trainer.train(resume_from_checkpoint=checkpoint)
        except BaseException as e:
            trainer.end_callbacks()
            if not isinstance(e, torch.OutOfMemoryError):
                raise
            b, g = cfg.training.batch_size, cfg.training.gradient_accumulation
            raise FtkitError(
                f"the device ran out of memory at batch size {b}",
                hint=f"try --batch-size {max(1, b // 2)} --gradient-accumulation {g * 2} (same effective batch), "
                     "or --auto-batch-size to halve it until it fits",
            ) from None
        if interrupt.interrupted:
            import signal

            how = ("run the same command again (it has --auto-resume)" if cfg.training.auto_resume else
                   "add --auto-resume to the same command")
            log(f"stopped by {signal.Signals(interrupt.signum).name} after step {trainer.state.global_step}; a "
                f"complete checkpoint is in {run_dir / CHECKPOINTS}. To continue, {how}, or:\n"
                f"  ftkit finetune --output {run_dir} --resume")
            raise SystemExit(128 + interrupt.signum)  # 130 for Ctrl-C, 143 for SIGTERM: schedulers requeue on it

        save_model(trainer, tokenizer, task, facts, info, cfg.model, run_dir / MODEL_SUBDIR)
        metrics: dict[str, Any] = {"train_loss": train_out.training_loss, "train_steps": train_out.global_step,
                                   "train_time_s": round(float(train_out.metrics.get("train_runtime", 0.0)), 1)}
        if trainer.state.best_model_checkpoint:
            metrics["best_checkpoint"] = Path(trainer.state.best_model_checkpoint).name
        for name in ("validation", "test"):
            if name in splits and (score_test or name != "test"):
                preds, scores = score_split(task, facts, trainer.model, tokenizer, splits[name], features[name],
                                            batch_size=eval_batch_size(cfg), device=cfg.training.device)
                task.write_outputs(run_dir, name, splits[name], preds)
                write_predictions(run_dir, name, task, facts, splits[name], preds)
                write_eval(run_dir, {"split": name, "data": getattr(cfg.data, name), **scores})
                metrics[name] = scores
        tracking.log_final({k: v for k, v in metrics.items() if k in ("validation", "test")}, train_out.global_step)
    meta = {
        "ftkit_version": __version__, "task": task.name, "base_model": cfg.model, "base_model_path": info.path,
        "family": facts.family, "labels": list(facts.labels), "max_length": facts.max_length, "data": summary,
        "parameters": {"trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
                       "total": sum(p.numel() for p in trainer.model.parameters())},
        "wall_time_s": round(time.time() - started, 1), "metrics": metrics,
    }
    write_json(run_dir / RUN_FILE, meta)
    from ftkit.plot import plot_training

    plot_training(run_dir / TRAIN_LOG, run_dir / "training.png", task.best_metric)
    return meta
