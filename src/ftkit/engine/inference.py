"""Outputs, predictions and scores of one split: the single path finetune, eval and predict share.

``model_outputs`` runs the model over features in order (reduced logits through the Trainer's
prediction loop, or ``task.generate`` for generative tasks); ``predict_split`` decodes them into one
prediction per example; ``score_split`` adds the task's scores.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError
from ftkit.tasks.base import Facts


def model_outputs(task, facts: Facts, model, tokenizer, features, batch_size: int = 32, device: str = "auto"):
    """Model outputs for ``features``, in feature order. One process runs length-sorted batches of its own
    (``batched``); under N processes the Trainer's loop shards the features and gathers the outputs."""
    from transformers import TrainingArguments

    from ftkit.engine import distributed
    from ftkit.engine.trainer import FtkitTrainer, device_args, torch_device

    if getattr(model, "is_onnx", False):  # an ONNX export: onnxruntime, the same batches and reduction
        return model.outputs(task, facts, tokenizer, features, batch_size)
    if task.generates:
        model.to(torch_device(device))
        return generate_outputs(task, facts, model, tokenizer, features, batch_size)
    if distributed.world_size() <= 1:
        from ftkit.engine.batched import forward_outputs

        return forward_outputs(task, facts, model, tokenizer, features, batch_size, torch_device(device))
    with tempfile.TemporaryDirectory(prefix="ftkit-predict-") as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_eval_batch_size=batch_size, report_to="none",
                                 disable_tqdm=True, **device_args(device))
        trainer = FtkitTrainer(
            model=model, args=args, data_collator=task.collator(tokenizer, facts), processing_class=tokenizer,
            preprocess_logits_for_metrics=lambda logits, _: task.reduce_logits(logits, facts),
        )
        with contextlib.redirect_stdout(sys.stderr):
            return trainer.predict(features).predictions


def generate_outputs(task, facts: Facts, model, tokenizer, features, batch_size: int = 32) -> list[Any]:
    """``task.generate`` over ``features``, in feature order. Under N processes each rank generates a
    contiguous share (padded so that every rank runs as many batches: sharded models generate in step)
    and every rank gets all outputs, each feature's exactly once."""
    from ftkit.engine import distributed

    if distributed.world_size() <= 1:
        return task.generate(model, tokenizer, features, facts, batch_size)
    n = len(features)
    mine, size = distributed.shard(n)
    indices = list(mine) + [n - 1] * (size - len(mine)) if n else []
    part = task.generate(model, tokenizer, features.select(indices, keep_in_memory=True), facts,
                         batch_size) if indices else []
    return distributed.unshard(distributed.gather(list(part)), n)


def predict_split(task, facts: Facts, model, tokenizer, examples, features=None, *, batch_size: int = 32,
                  device: str = "auto") -> list[Any]:
    """One prediction per example (features are encoded here unless given; those of a split read from
    files go through the feature cache)."""
    if features is None:
        if getattr(examples, "cache_files", None):
            from ftkit.engine.feature_cache import encode_cached

            features = encode_cached(task, facts, examples, tokenizer, train=False)
        else:
            features = task.encode(examples, tokenizer, facts, train=False)
    outputs = model_outputs(task, facts, model, tokenizer, features, batch_size, device)
    return task.decode(examples, features, outputs, facts)


def score_split(task, facts: Facts, model, tokenizer, examples, features=None, *, batch_size: int = 32,
                device: str = "auto") -> tuple[list[Any], dict[str, Any]]:
    """``(predictions, metrics)`` of one split."""
    predictions = predict_split(task, facts, model, tokenizer, examples, features, batch_size=batch_size,
                                device=device)
    return predictions, task.score(examples, predictions, facts)


def evaluate_run(run_dir: str | Path, split: str, data: str | None = None, batch_size: int = 32,
                 device: str = "auto", allow_pickle: bool = False) -> dict[str, Any]:
    """Score a run's (or a model folder's) model on a split; in a run folder the task's output files
    (e.g. ``predictions_<split>.txt``) are (re)written too."""
    from ftkit.engine.models import load_trained
    from ftkit.engine.run_folder import RECIPE_FILE, RUN_FILE, write_predictions

    task, facts, model, tokenizer, meta = load_trained(run_dir, allow_pickle=allow_pickle)
    recipe = Path(run_dir) / RECIPE_FILE
    fmt, encoding = "auto", "utf-8"
    if recipe.exists():
        from ftkit.config import validate
        from ftkit.recipes import load_yaml

        cfg = validate(load_yaml(recipe), str(recipe))
        fmt, encoding = cfg.data.format, cfg.data.encoding
        data = data or getattr(cfg.data, split, None)
    if not data:
        raise FtkitError(f"the run has no {split} data", hint="pass --data FILE")
    examples = task.read(data, split, fmt, encoding)
    task.check_labels(examples, list(facts.labels), data)
    predictions, scores = score_split(task, facts, model, tokenizer, examples, batch_size=batch_size, device=device)
    if (Path(run_dir) / RUN_FILE).exists():
        task.write_outputs(Path(run_dir), split, examples, predictions)
        write_predictions(Path(run_dir), split, task, facts, examples, predictions)
    return {"split": split, "data": data, **scores}


class Predictor:
    """A trained model (run folder or export, ONNX exports included) loaded once, predicting many times:
    ``ftkit predict`` reads a file through it, a server would answer each batch of requests through it."""

    def __init__(self, task, facts: Facts, model, tokenizer, meta: dict[str, Any], device: str = "auto"):
        self.task, self.facts, self.model, self.tokenizer, self.meta, self.device = (
            task, facts, model, tokenizer, meta, device)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", allow_pickle: bool = False,
             task_options: dict[str, Any] | None = None) -> "Predictor":
        from ftkit.engine.models import load_trained

        task, facts, model, tokenizer, meta = load_trained(path, allow_pickle=allow_pickle, task_options=task_options)
        model.eval()
        return cls(task, facts, model, tokenizer, meta, device)

    def predict(self, records: list[dict[str, Any]], batch_size: int = 32) -> list[dict[str, Any]]:
        """One output record per input record, in order (the task's ``format_prediction``)."""
        examples = self.task.predict_examples(records)
        if len(examples) == 0:
            return []
        from ftkit.data.unhashed import unhashed

        # (a server predicts once per batch: a map here must not hash the tokenizer, see ftkit.data.unhashed)
        predictions = predict_split(self.task, self.facts, self.model, self.tokenizer, unhashed(examples),
                                    batch_size=batch_size, device=self.device)
        columns = examples[:]  # every column converted at once (iterating a Dataset formats row by row)
        rows = (dict(zip(columns, values)) for values in zip(*columns.values()))
        return [self.task.format_prediction(ex, p) for ex, p in zip(rows, predictions)]


def predict_records(model_path: str | Path, records: list[dict[str, Any]], batch_size: int = 32,
                    device: str = "auto", allow_pickle: bool = False,
                    task_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``ftkit predict``: one output record per input record, in order."""
    return Predictor.load(model_path, device=device, allow_pickle=allow_pickle,
                          task_options=task_options).predict(records, batch_size)
