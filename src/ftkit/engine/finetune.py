"""A training run from a resolved recipe: read -> resolve facts -> encode -> train -> save -> score.

Everything a user can get wrong (data, labels, model, options) is checked before the run folder
is created; a run that fails before its first checkpoint leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from ftkit import startup, timing
from ftkit.config import RunConfig, dump_yaml, flat_keys
from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.tasks import make_task
from ftkit.version import __version__


def finetune(cfg: RunConfig, run_dir: Path, *, overwrite: bool = False, resume: bool = False,
             recipe_source: str = "recipe", allow_pickle: bool = False, trust_remote_code: bool = False,
             callbacks: Sequence[Any] = (), score_test: bool = True, clock: Any = None) -> dict[str, Any]:
    """Train, save the best model to ``run_dir/model`` and score validation and test; returns run.json.

    SIGTERM (a scheduler preempting the job) and Ctrl-C save a complete checkpoint and exit with
    128 + the signal's number; with ``training.auto_resume`` the same call again continues from it.
    Started as N processes (torchrun, accelerate launch, ``--processes N``), the processes form one
    group and train one model; the main process decides, prints and writes (see ``distributed``).
    ``callbacks``: extra ``TrainerCallback`` objects (a sweep's pruning callback). ``score_test=False``
    leaves the test split unscored (a sweep scores it once, for its best trial, at the end).
    ``clock``: the ``ftkit.timing`` clock the caller began (the CLI's counts from the process start); without it
    the run's clock starts here. Its phases are run.json's ``timings``.
    """
    if clock is None:
        timing.begin()
    # the libraries a run needs (torch, transformers, datasets) load here, the garbage collector paused
    with timing.phase("startup"), startup.loading():
        import datasets  # noqa: F401

        from ftkit.engine import distributed
        from ftkit.engine.tracking import check_trackers
        from ftkit.engine.trainer import sigterm_exits
    run_dir = Path(run_dir)
    group = distributed.setup(cfg.training.device)
    task = make_task(cfg.task, cfg.task_options, recipe_source)
    if cfg.data.streaming and cfg.training.max_steps <= 0:
        raise FtkitError("data.streaming: a stream has no length, so epochs are undefined: pass --max-steps N "
                         "(training.max_steps) instead of --epochs")
    if cfg.data.streaming and distributed.world_size() > 1:
        raise FtkitError(distributed.STREAMING_ONE_PROCESS, hint="start one process, or leave data.streaming off to train on N")
    check_trackers(cfg.training.report_to)
    done, resume, overwrite = distributed.decide(lambda: plan_run_dir(cfg, run_dir, overwrite, resume))
    if done is not None:
        return done
    with sigterm_exits():
        return _finetune(cfg, task, run_dir, overwrite, resume, allow_pickle, trust_remote_code, group,
                         list(callbacks), score_test)


def plan_run_dir(cfg: RunConfig, run_dir: Path, overwrite: bool, resume: bool):
    """``(run.json of a finished run or None, resume, overwrite)``: what this run does with ``run_dir``
    (``--auto-resume`` decides both); a non-empty folder without --overwrite/--resume is refused."""
    from ftkit.engine.run_folder import RUN_FILE, prepare_run_dir, read_json

    if cfg.training.auto_resume and not (resume or overwrite):
        plan = auto_resume_plan(cfg, run_dir)
        if plan == "done":
            log(f"--auto-resume: {run_dir} is already complete")
            return read_json(run_dir / RUN_FILE), False, False
        resume, overwrite = plan == "resume", plan == "fresh"
    prepare_run_dir(run_dir, overwrite, resume)
    return None, resume, overwrite


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
              group: dict[str, Any], callbacks: list[Any], score_test: bool) -> dict[str, Any]:
    from ftkit.engine import distributed
    from ftkit.engine.adapters import count_parameters, describe_parameters
    from ftkit.engine.models import build_model
    from ftkit.engine.run_folder import CHECKPOINTS, RECIPE_FILE

    from ftkit.engine.prepare import EXCHANGE_ENV

    if not os.environ.get(EXCHANGE_ENV):  # else the launcher said it
        log(f"ftkit {__version__}: task {task.name}, model {cfg.model}")
    p, shared = _prepared(cfg, task, allow_pickle, trust_remote_code)
    try:
        with timing.phase("model_load"):
            model = distributed.everyone(lambda: build_model(cfg, p.task, p.info, p.facts, p.tokenizer))
        parameters = count_parameters(model)
        how = "" if cfg.peft.method == "none" else (
            f"; LoRA r={cfg.peft.r} alpha={cfg.peft.alpha:g} on "
            f"{', '.join(sorted(model.peft_config['default'].target_modules))}, learning rate "
            f"{cfg.training.learning_rate:g}")
        log(f"  parameters: {describe_parameters(parameters)}{how}")

        # Everything the user could have got wrong has been checked: now the run folder is created (once).
        def create() -> bool:
            created = not run_dir.exists()
            if run_dir.exists() and overwrite and not resume:
                shutil.rmtree(run_dir)
                created = True
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / RECIPE_FILE).write_text(dump_yaml(cfg), encoding="utf-8")
            return created

        with timing.phase("save"):
            created = distributed.decide(create)
        try:
            return _train(cfg, p, model, run_dir, resume, group, callbacks, score_test, parameters)
        except BaseException:
            # A run that never reached a checkpoint is not worth keeping.
            if distributed.is_main() and created and not any((run_dir / CHECKPOINTS).glob("checkpoint-*")):
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


def _prepared(cfg, task, allow_pickle: bool, trust_remote_code: bool):
    """``(Prepared, folder to remove or None)``: the data read and encoded once. ``--processes N`` prepared it
    before starting the workers; under torchrun the main process prepares it and the others map its copy
    (a process on another machine, which cannot see that folder, prepares its own, silently)."""
    import tempfile

    from ftkit.engine import distributed
    from ftkit.engine.feature_cache import cache_dir
    from ftkit.engine.prepare import EXCHANGE_ENV, load, prepare, save

    kw = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
    if os.environ.get(EXCHANGE_ENV):
        return distributed.everyone(lambda: load(cfg, os.environ[EXCHANGE_ENV], **kw)), None
    if distributed.world_size() <= 1:
        return prepare(cfg, task, **kw), None
    mine = {}

    def main_prepares() -> str:
        mine["p"] = prepare(cfg, task, **kw)
        (cache_dir() / "prepared").mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(dir=cache_dir() / "prepared", prefix="run-")
        try:
            save(mine["p"], Path(folder))  # charged to the "launch" phase
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    folder = distributed.decide(main_prepares)
    try:
        p = distributed.everyone(lambda: mine["p"] if distributed.is_main() else (
            load(cfg, folder, **kw) if Path(folder).is_dir() else prepare(cfg, task, show=False, **kw)))
    except BaseException:
        if distributed.is_main():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return p, folder if distributed.is_main() else None


def resume_accumulation(checkpoint: str, world: int, per_device: int, accumulation: int,
                        announce: bool = True) -> int:
    """The gradient accumulation that resumes ``checkpoint`` with ``world`` processes at its global batch.

    A checkpoint written by another number of processes continues with the same global batch (so the same data
    order and optimizer steps) when whole accumulation steps make it up; otherwise it is refused."""
    from ftkit.engine.trainer import DISTRIBUTED_FILE

    f = Path(checkpoint) / DISTRIBUTED_FILE
    if not f.exists():  # written before ftkit knew about processes: one process
        return accumulation
    saved = json.loads(f.read_text(encoding="utf-8"))
    g, w0 = saved["global_batch"], saved["world_size"]
    if world * per_device * accumulation == g:
        return accumulation
    if g % (world * per_device) == 0:
        a = g // (world * per_device)
        if announce:
            log(f"  {Path(checkpoint).name} was written by {w0} process{'es' * (w0 != 1)}: with {world}, "
                f"gradient accumulation {a} keeps its global batch of {g}")
        return a
    raise FtkitError(
        f"cannot resume {Path(checkpoint).name} with {world} process{'es' * (world != 1)}: it was trained with a global "
        f"batch of {g} ({w0} x batch {saved['per_device_batch']} x accumulation {saved['gradient_accumulation']}), "
        f"and {world} x batch {per_device} cannot make {g} with whole accumulation steps (another global batch "
        "would replay other data and other optimizer steps)",
        hint=f"resume with {w0} processes (--processes {w0}, or torchrun --nproc_per_node {w0})")


def _train(cfg, p, model, run_dir: Path, resume: bool, group: dict[str, Any],
           extra_callbacks: list[Any], score_test: bool, parameters: dict[str, int]) -> dict[str, Any]:
    import torch
    from transformers import EarlyStoppingCallback

    from ftkit.engine import distributed
    from ftkit.engine.inference import generate_outputs, model_outputs
    from ftkit.engine.run_folder import (CHECKPOINTS, MODEL_SUBDIR, RUN_FILE, TRAIN_LOG, last_complete_checkpoint,
                                         save_model, write_eval, write_json, write_predictions)
    from ftkit.engine.tracking import point_trackers, tracking_run
    from ftkit.engine.trainer import (FtkitTrainer, GracefulInterrupt, JsonlLog, eval_batch_size, token_mean_loss,
                                      training_arguments, uses_num_items)

    task, facts, tokenizer, splits, features = p.task, p.facts, p.tokenizer, p.splits, p.features
    has_eval = "validation" in splits
    args = training_arguments(cfg, run_dir / CHECKPOINTS, facts.family, has_eval, task.best_metric)
    checkpoint = None
    if resume:
        def find() -> tuple[str | None, int]:
            ckpt = last_complete_checkpoint(run_dir / CHECKPOINTS)
            log(f"  resuming from {ckpt}" if ckpt else "  --resume: no checkpoint yet, starting fresh")
            acc = args.gradient_accumulation_steps
            return ckpt, resume_accumulation(ckpt, args.world_size, args.per_device_train_batch_size, acc) if ckpt else acc

        checkpoint, args.gradient_accumulation_steps = distributed.decide(find)
    interrupt = GracefulInterrupt()
    callbacks = [JsonlLog(run_dir / TRAIN_LOG), interrupt, *extra_callbacks]
    if cfg.training.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.training.early_stopping_patience))
    compute_metrics = generate_fn = None
    # the main process's validation predictions and scores by step: the split is not scored again for the model
    # that training ends with (the best checkpoint, or the last step) when an evaluation already scored it
    scored: dict[int, tuple[list[Any], dict[str, Any]]] = {}
    if has_eval:
        examples, feats = splits["validation"], features["validation"]

        def scores(eval_pred):
            preds = task.decode(examples, feats, eval_pred.predictions, facts)
            full = task.score(examples, preds, facts)
            remember(scored, trainer.state.global_step, preds, full, task.best_metric)
            return {k: v for k, v in full.items() if isinstance(v, (int, float))}

        def compute_metrics(eval_pred):
            # every rank holds the gathered outputs; the main process decodes and scores, the others take its
            # scores (best-checkpoint choice and early stopping must agree)
            return distributed.decide(lambda: scores(eval_pred))

        if task.generates:
            def generate_fn(m):
                return generate_outputs(task, facts, m, tokenizer, feats, args.per_device_eval_batch_size)

    timing.clock().charge()  # the Trainer's set-up is training's
    trainer = FtkitTrainer(
        model=model, args=args, train_dataset=features["train"], eval_dataset=features.get("validation"),
        data_collator=task.collator(tokenizer, facts), processing_class=tokenizer, compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=lambda logits, _: task.reduce_logits(logits, facts),
        callbacks=callbacks, generate_fn=generate_fn,
        # token-level labels: the loss of the global batch's tokens, not an average of per-process averages
        compute_loss_func=token_mean_loss if task.label_padding == "tokens" and not uses_num_items(model) else None,
    )
    point_trackers(trainer, run_dir)
    timing.clock().charge("train")
    w, b, a = args.world_size, args.per_device_train_batch_size, args.gradient_accumulation_steps
    how = f" ({group['backend']}, launched by {group['launcher']})" if w > 1 else ""
    log(f"  training: {w} process{'es' * (w != 1)}{how} x batch {b} per device x accumulation {a} "
        f"= global batch {w * b * a}")
    # the trackers' own run (mlflow) belongs to the main process, like everything else written
    with tracking_run(cfg, run_dir, resume) if distributed.is_main() else _no_tracking() as tracking:
        try:
            with contextlib.redirect_stdout(sys.stderr), timing.phase("train"):
                train_out = trainer.train(resume_from_checkpoint=checkpoint)
        except BaseException as e:
            trainer.end_callbacks()
            if not isinstance(e, torch.OutOfMemoryError):
                raise
            g = cfg.training.gradient_accumulation
            raise FtkitError(
                f"the device ran out of memory at batch size {b}",
                hint=f"try --batch-size {max(1, b // 2)} --gradient-accumulation {g * 2} (same effective batch), "
                     "or --auto-batch-size to halve it until it fits",
            ) from None
        if interrupt.interrupted:
            import signal

            distributed.barrier()  # every rank has finished its part of the checkpoint
            how = ("run the same command again (it has --auto-resume)" if cfg.training.auto_resume else
                   "add --auto-resume to the same command")
            log(f"stopped by {signal.Signals(interrupt.signum).name} after step {trainer.state.global_step}; a "
                f"complete checkpoint is in {run_dir / CHECKPOINTS}. To continue, {how}, or:\n"
                f"  ftkit finetune --output {run_dir} --resume")
            raise SystemExit(128 + interrupt.signum)  # 130 for Ctrl-C, 143 for SIGTERM: schedulers requeue on it

        with timing.phase("save"):
            save_model(trainer, tokenizer, task, facts, p.info, cfg.model, run_dir / MODEL_SUBDIR)
        metrics: dict[str, Any] = {"train_loss": train_out.training_loss, "train_steps": train_out.global_step,
                                   "train_time_s": round(float(train_out.metrics.get("train_runtime", 0.0)), 1)}
        if trainer.state.best_model_checkpoint:
            metrics["best_checkpoint"] = Path(trainer.state.best_model_checkpoint).name
        best = trainer.state.best_model_checkpoint
        final_step = int(Path(best).name.rsplit("-", 1)[-1]) if best else trainer.state.global_step
        for name in ("validation", "test"):
            if name == "validation" and distributed.decide(lambda: final_step in scored):
                preds, scores_ = scored[final_step] if distributed.is_main() else (None, None)
                log(f"  validation: scored at step {final_step} during training (the model training ended with)")
            elif name in splits and (score_test or name != "test"):
                # every process runs the model over its share; the main process decodes, scores and writes
                with timing.phase(f"eval_{name}"):
                    outputs = model_outputs(task, facts, trainer.model, tokenizer, features[name],
                                            batch_size=eval_batch_size(cfg), device=cfg.training.device)
                    if distributed.is_main():
                        preds = task.decode(splits[name], features[name], outputs, facts)
                        scores_ = task.score(splits[name], preds, facts)
            else:
                continue
            if distributed.is_main():
                with timing.phase("save"):
                    task.write_outputs(run_dir, name, splits[name], preds)
                    write_predictions(run_dir, name, task, facts, splits[name], preds)
                    write_eval(run_dir, {"split": name, "data": getattr(cfg.data, name), **scores_})
                metrics[name] = scores_
        tracking.log_final({k: v for k, v in metrics.items() if k in ("validation", "test")}, train_out.global_step)

    def finish() -> dict[str, Any]:
        from ftkit.plot import plot_training

        with timing.phase("plot"):
            plot_training(run_dir / TRAIN_LOG, run_dir / "training.png", task.best_metric)
        timings = timing.end()
        meta = {
            "ftkit_version": __version__, "task": task.name, "base_model": cfg.model, "base_model_path": p.info.path,
            "family": facts.family, "labels": list(facts.labels), "max_length": facts.max_length, "data": p.summary,
            "parameters": parameters, "peft": cfg.peft.model_dump(mode="json"),
            "distributed": {**group, "per_device_batch": b, "gradient_accumulation": a, "global_batch": w * b * a},
            "wall_time_s": round(timings["total"], 1), "timings": timings, "metrics": metrics,
        }
        write_json(run_dir / RUN_FILE, meta)
        return meta

    return distributed.decide(finish)


def remember(scored: dict, step: int, preds: list[Any], scores: dict[str, Any], metric: str) -> None:
    """Keep an evaluation's validation predictions and scores by step, only while they can still be the best
    (the Trainer's best checkpoint is the one of the highest ``metric``): one or two splits' worth in memory."""
    scored[step] = (preds, scores)
    top = max((s.get(metric, float("-inf")) for _, s in scored.values()), default=None)
    for k in [k for k, (_, s) in scored.items() if k != step and s.get(metric, float("-inf")) < top]:
        del scored[k]


@contextlib.contextmanager
def _no_tracking():
    """The other processes of a distributed run report to no tracker (the main process does)."""

    class Quiet:
        def log_final(self, scores, step) -> None:
            pass

    yield Quiet()
