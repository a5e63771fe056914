"""The Trainer as ftkit uses it: exact resume, ordered and generative evaluation, callbacks, arguments.

- :class:`EpochSeededSampler`: the epoch's (length-grouped) order comes from ``seed + epoch``
  alone, so a run resumed mid-epoch replays exactly the batches the interrupted run would have seen
  (stock transformers draws the order from the global RNG before the checkpoint's RNG is restored).
- :class:`FtkitTrainer`: that sampler; evaluation batches in feature order (transformers 5 also
  length-groups *evaluation* batches, which misaligns predictions with features); a completeness
  marker in every checkpoint; generative evaluation (loss as usual, then ``generate_fn`` outputs
  scored by ``compute_metrics``).
- Under N processes the order is drawn for the *global* batch (per-device batch x accumulation x
  processes) and accelerate shards it across ranks, so every optimizer step sees the same examples
  whatever N is; only the main process writes checkpoint files (the ranks' RNG states are gathered
  to it) and the log; a signal on any rank stops every rank after the same step.
- :func:`training_arguments`: the recipe's ``training`` section as ``TrainingArguments``.
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import threading
import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import EvalPrediction, rotate_checkpoints

from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.engine import distributed
from ftkit.engine.run_folder import COMPLETE_MARKER, no_space_error, write_json

#: per checkpoint: how many processes wrote it and its global batch (resuming with another N checks it)
DISTRIBUTED_FILE = "ftkit-distributed.json"


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
        # The grouping is transformers' get_length_grouped_indices (same draws, same order) in numpy:
        # a million lengths cost arrays, not lists of Python ints.
        order = _length_grouped(np.asarray(self.lengths), self.batch_size, g)
        n_batches = -(-len(order) // self.batch_size)
        if not n_batches:
            return iter([])
        visit = [0] + [i + 1 for i in torch.randperm(n_batches - 1, generator=g).tolist()]
        bs = self.batch_size
        return (int(i) for b in visit for i in order[b * bs:(b + 1) * bs])


def _length_grouped(lengths, batch_size: int, generator):
    """``transformers.trainer_pt_utils.get_length_grouped_indices`` as a numpy array."""
    n = len(lengths)
    mult = min(n // (batch_size * 4), 50) or 1
    perm = torch.randperm(n, generator=generator).numpy()
    size = mult * batch_size
    mega = [perm[i:i + size] for i in range(0, n, size)]
    mega = [m[np.argsort(-lengths[m], kind="stable")] for m in mega]  # Python's sorted(reverse=True) is stable too
    if not mega:
        return perm
    k = int(np.argmax([lengths[m[0]] for m in mega]))
    mega[0][0], mega[k][0] = mega[k][0], mega[0][0]
    return np.concatenate(mega)


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
        # transformers assumes a model whose forward takes **kwargs divides its loss by the batch's label count
        # (num_items_in_batch): it then skips the division by the accumulation steps and multiplies the loss by
        # the number of processes. Most heads (BERT classification, token classification, QA...) take **kwargs
        # but average their loss themselves, which would make the loss (and gradient) N times too large.
        self.model_accepts_loss_kwargs = self.model_accepts_loss_kwargs and uses_num_items(self.model)
        ds = self.train_dataset
        # the length column is dropped with the other non-model columns before the sampler is built;
        # a stream (datasets.IterableDataset) has neither lengths nor a sampler
        self._lengths = None
        if ds is not None and hasattr(ds, "__len__") and "length" in (getattr(ds, "column_names", None) or []):
            self._lengths = ds.with_format("arrow")["length"].to_numpy()

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        grouped = self.args.train_sampling_strategy == "group_by_length"
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # the global batch of one optimizer step: accelerate hands its consecutive slices to the ranks
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        self._epoch_sampler = EpochSeededSampler(len(ds), global_batch, seed, self._lengths if grouped else None)
        return self._epoch_sampler

    def _run_epoch(self, model, epoch, *args, **kwargs):
        # The sampler learns its epoch here: a run resumed mid-epoch under N processes iterates accelerate's
        # skipping loader around the sharded batch sampler, and set_epoch does not reach this deep.
        if getattr(self, "_epoch_sampler", None) is not None:
            self._epoch_sampler.set_epoch(epoch)
        return super()._run_epoch(model, epoch, *args, **kwargs)

    # transformers 5.x also length-groups *evaluation* batches when
    # train_sampling_strategy="group_by_length", which reorders predictions
    # relative to the features. Decoding needs them in order: one process evaluates
    # longest first (batches padded to their own longest feature) and puts the outputs back
    # in feature order before compute_metrics sees them; N processes go in order.
    def _get_eval_sampler(self, eval_dataset):
        self._eval_order = None
        columns = getattr(eval_dataset, "column_names", None) or []
        if self.args.world_size <= 1 and hasattr(eval_dataset, "__len__") and "input_ids" in columns:
            from ftkit.engine.batched import feature_lengths

            self._eval_order = np.argsort(-feature_lengths(eval_dataset), kind="stable")
            return self._eval_order.tolist()
        return SequentialSampler(eval_dataset)

    def _save_checkpoint(self, model, trial):
        path = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        limit = self.args.save_total_limit
        # Older checkpoints are rotated away only once the new one is complete (transformers rotates before
        # ftkit's marker is written, which could leave no complete checkpoint after a crash at that moment).
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
            distributed.barrier()  # sharded (FSDP, DeepSpeed) states are written by every rank
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            shutil.rmtree(path, ignore_errors=True)  # never leave a partial checkpoint behind
            raise no_space_error(path, checkpoint_size(path.parent, model)) from None
        finally:
            self.args.save_total_limit = limit
        # A checkpoint counts only once everything in it is written: resume skips unmarked ones.
        if self.args.should_save and path.is_dir():
            (path / "training_args.bin").unlink(missing_ok=True)
            a = self.args
            write_json(path / DISTRIBUTED_FILE, {
                "world_size": a.world_size, "per_device_batch": a.per_device_train_batch_size,
                "gradient_accumulation": a.gradient_accumulation_steps,
                "global_batch": a.per_device_train_batch_size * a.gradient_accumulation_steps * a.world_size})
            (path / COMPLETE_MARKER).write_text("ok\n")
        if self.args.should_save and limit:
            rotate_checkpoints(output_dir=str(path.parent), save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def _save_rng_state(self, output_dir: str) -> None:
        """One writer: the ranks' RNG states (``rng_state_<rank>.pth``, as transformers names and reads them)
        are gathered to the main process, which writes them all."""
        if self.args.world_size <= 1:
            return super()._save_rng_state(output_dir)
        import random

        import numpy as np

        state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.random.get_rng_state_all()
        states = distributed.gather(state)
        if self.args.should_save:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            for r, s in enumerate(states):
                torch.save(s, Path(output_dir) / f"rng_state_{r}.pth")

    def end_callbacks(self) -> None:
        """After training stopped on an exception (a pruned sweep trial, Ctrl-C, out of memory): every
        callback's ``on_train_end``, as transformers does for its own pruned trials, so the Ctrl-C handler is
        put back and trackers close their writers. A callback failing here must not hide that exception."""
        for cb in self.callback_handler.callbacks:
            try:
                cb.on_train_end(self.args, self.state, self.control, model=self.model)
            except Exception:  # noqa: BLE001 - e.g. a progress bar that never started
                pass

    def evaluate(self, *args, **kwargs):
        from ftkit import timing

        with timing.phase("eval_during_training"):
            return super().evaluate(*args, **kwargs)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        if self.generate_fn is None:
            order, self._eval_order = getattr(self, "_eval_order", None), None
            if order is None:
                return super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                               metric_key_prefix)
            metrics_fn = self.compute_metrics
            if metrics_fn is not None:
                self.compute_metrics = lambda p: metrics_fn(EvalPrediction(
                    predictions=in_feature_order(p.predictions, order), label_ids=in_feature_order(p.label_ids, order)))
            try:
                out = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                              metric_key_prefix)
            finally:
                self.compute_metrics = metrics_fn
            return out._replace(predictions=in_feature_order(out.predictions, order),
                                label_ids=in_feature_order(out.label_ids, order))
        out = super().evaluation_loop(dataloader, description, True, ignore_keys, metric_key_prefix)
        if prediction_loss_only is None:
            prediction_loss_only = self.args.prediction_loss_only
        if self.compute_metrics is not None and not prediction_loss_only:
            outputs = self.generate_fn(self.model)
            metrics = self.compute_metrics(EvalPrediction(predictions=outputs, label_ids=None))
            out.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in metrics.items()})
        return out


def in_feature_order(outputs, order: np.ndarray):
    """Rows gathered in ``order`` (row i belongs to feature ``order[i]``) back in feature order."""
    if outputs is None:
        return None
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(in_feature_order(o, order) for o in outputs)
    result = np.empty_like(outputs)
    result[order] = outputs
    return result


class JsonlLog(TrainerCallback):
    """Every Trainer log event as one JSON line in ``train_log.jsonl``."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **(logs or {})}) + "\n")


class GracefulInterrupt(TrainerCallback):
    """Ctrl-C (SIGINT) or a scheduler's SIGTERM (preemption): save a complete checkpoint at the end of the
    step and stop; ``signum`` says which came. A second signal aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        #: the signal the run stops for (under N processes: the one every rank agreed on)
        self.signum: int | None = None
        self._received: int | None = None  # what this process's handler caught
        self._old: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    def on_train_begin(self, args, state, control, **kw):
        def handler(signum, frame):
            if self._received is not None:
                raise KeyboardInterrupt
            self._received = signum
            log(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step (again to abort)")

        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, handler) for s in self.SIGNALS}

    def on_step_end(self, args, state, control, **kw):
        # Under N processes the ranks agree after every step (a signal may reach one rank, or reach them during
        # different steps): all save the same checkpoint and stop together. A signal caught while the ranks
        # compare notes counts at the next step, on every rank alike.
        agreed = distributed.any_rank(self._received or 0, args.device)
        if agreed:
            self.signum = agreed
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kw):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


@contextlib.contextmanager
def sigterm_exits():
    """Outside the training loop, SIGTERM ends the run like an exception (status 143, 128 + SIGTERM), so the
    usual clean-up runs (a run that never reached a checkpoint leaves no folder)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def checkpoint_size(ckpt_dir: Path, model) -> int:
    """Bytes a checkpoint takes: the newest complete one's size, else model + Adam states (3 x fp32 weights)."""
    done = sorted((p for p in ckpt_dir.glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()),
                  key=lambda p: p.stat().st_mtime)
    if done:
        return sum(f.stat().st_size for f in done[-1].rglob("*") if f.is_file())
    return 3 * 4 * sum(p.numel() for p in model.parameters())


def precision_args(requested: str, family: str, device: str) -> dict[str, bool]:
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


def device_args(device: str) -> dict[str, Any]:
    if device == "cuda" and not torch.cuda.is_available():
        raise FtkitError("--device cuda was asked for, but no CUDA device is available")
    # use_cpu whenever the run is on CPU, not only when asked: accelerate forms a (gloo) process group for
    # CPU workers only when told so; otherwise N processes started by torchrun each train alone.
    use_cpu = distributed.use_cpu(device)
    return {"use_cpu": use_cpu, "dataloader_pin_memory": not use_cpu}


def token_mean_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy over labelled tokens, divided by the labelled tokens of the whole optimizer step (every
    process, every accumulation step: the Trainer counts them): the one-process loss of the same global
    batch, whatever the number of processes. (A head's own loss averages over its micro-batch, which DDP
    and accumulation then average again.)"""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:
        return loss / (labels != -100).sum().clamp(min=1)
    return loss / num_items_in_batch


def uses_num_items(model) -> bool:
    """Whether the model's loss divides by the ``num_items_in_batch`` the Trainer passes (transformers'
    shared ``loss_function``, e.g. causal LMs) rather than averaging over its own batch."""
    import inspect

    model = getattr(model, "module", model)
    try:
        source = inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return False
    return "loss_function" in source or "num_items_in_batch" in source


def torch_device(device: str):
    device_args(device)  # "cuda" without CUDA is an error
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def training_arguments(cfg, out: Path, family: str, has_eval: bool, best_metric: str) -> TrainingArguments:
    """The recipe's ``training`` section as ``TrainingArguments`` (``out``: the checkpoints folder)."""
    t = cfg.training
    eval_strategy = t.eval_strategy if has_eval else "no"
    if eval_strategy == "steps" and not t.eval_steps:
        raise FtkitError("training.eval_strategy=steps needs training.eval_steps")
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=eval_batch_size(cfg),
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
        report_to=list(t.report_to) or "none",
        run_name=Path(out).parent.name,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        dataloader_num_workers=t.dataloader_workers,
        disable_tqdm=False,
        save_only_model=False,
        auto_find_batch_size=t.auto_batch_size,
        # ftkit's heads use every parameter; DDP's search for unused ones costs a graph traversal per step
        ddp_find_unused_parameters=False,
        **precision_args(t.precision, family, t.device),
        **device_args(t.device),
    )


def eval_batch_size(cfg) -> int:
    return cfg.training.eval_batch_size or cfg.training.batch_size * 2
