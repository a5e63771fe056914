"""The task protocol: everything the engine needs to know about one task.

The engine (``ftkit.engine``) is the only code that touches the Trainer; a task
only says how to read its data, turn it into model features, pick a model head,
turn model outputs back into user-facing predictions, and score them.

Data flow::

    read(path)                 -> examples  (datasets.Dataset of raw, validated records)
    encode(examples, ...)      -> features  (model inputs + an ``example_id`` column)
    Trainer / predict loop     -> outputs   (per-feature arrays, see ``reduce_logits``)
    decode(examples, features, outputs) -> predictions (one per example, word/char level)
    score(examples, predictions)        -> metrics dict (fractions 0-1, ``per_label``)

Generative tasks (``generates = True``) make their outputs with ``model.generate``
instead of from logits: ``generate(model, tokenizer, features, batch_size)`` returns
one output per feature, in feature order, and the engine uses it both for the
per-epoch validation during training and for eval/predict (see ``ftkit.generation``
for the shared batched, length-sorted loop).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class TaskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task(ABC):
    name: ClassVar[str]
    #: the ``transformers.pipeline`` task an exported model serves
    pipeline_task: ClassVar[str]
    #: the Auto class that loads an exported model with plain transformers
    auto_class: ClassVar[str]
    #: metric (key of ``score``) that selects the best checkpoint; higher is better
    best_metric: ClassVar[str] = "f1"
    #: outputs come from ``model.generate`` (see ``generate``), not from logits
    generates: ClassVar[bool] = False
    Options: ClassVar[type[TaskOptions]] = TaskOptions

    def __init__(self, options: TaskOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()
        #: the model family this task instance serves (encoder | t5 | gpt | seq2seq); set by the
        #: engine from the checkpoint before ``build_model``/``encode``, and from ftkit.json on reload
        self.family: str | None = None

    # ---- data -------------------------------------------------------------
    @abstractmethod
    def read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
        """Read and validate one split; return a ``datasets.Dataset`` of examples.

        Raise :class:`~ftkit.errors.FtkitError` naming file and line for bad input.
        """

    @abstractmethod
    def labels(self, train) -> list[str]:
        """The label set, taken from the training split."""

    def check_labels(self, examples, labels: list[str], source: str) -> None:
        """Raise if an evaluation split uses a label never seen in training."""

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        """Counts and label distribution of one split (shown before training and by `ftkit validate`)."""
        return {"examples": len(examples)}

    def lint(self, examples, split: str) -> list[tuple[str, str]]:
        """Warnings about data that can be trained on but probably should not be: ``(where, message)``.

        The default flags empty and duplicate examples, using ``example_text``.
        """
        seen: dict[str, str] = {}
        problems, duplicates = [], []
        for i, ex in enumerate(examples):
            where = ex.get("where") or ex.get("source") or f"record {i}"
            text = self.example_text(ex)
            if not text.strip():
                problems.append((where, "empty example"))
            elif text in seen:
                duplicates.append((where, seen[text]))
            else:
                seen[text] = where
        if duplicates:
            first, orig = duplicates[0]
            problems.append((first, f"{len(duplicates)} duplicate examples in the {split} split "
                                    f"(this one repeats {orig})"))
        return problems

    def example_text(self, example: dict[str, Any]) -> str:
        """The input of one example as text (for duplicate detection)."""
        return " ".join(str(v) for k, v in example.items() if k not in ("source",))

    # ---- model ------------------------------------------------------------
    @abstractmethod
    def build_model(self, info, labels: list[str], tokenizer):
        """A model with this task's head for the checkpoint's family."""

    def load_model(self, path: str, meta: dict[str, Any] | None = None, **kwargs):
        """The trained model saved in ``path`` (a run's ``model/`` or an export), for eval and predict.

        ``meta`` is the folder's ftkit.json (its ``auto_class`` wins over the task's);
        ``kwargs`` carry the engine's safe-loading settings (``use_safetensors``).
        """
        import transformers

        auto = (meta or {}).get("auto_class") or self.auto_class
        return getattr(transformers, auto).from_pretrained(path, **kwargs)

    # ---- features ---------------------------------------------------------
    @abstractmethod
    def encode(self, examples, tokenizer, labels: list[str], max_length: int, train: bool):
        """Model features with an ``example_id`` column pointing back to ``examples``."""

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits, labels):
        """Shrink raw logits before they are gathered for ``decode`` (runs per batch)."""
        return logits

    def generate(self, model, tokenizer, features, batch_size: int) -> list[Any]:
        """Generative tasks: one output per feature (in feature order), made with ``model.generate``.

        Called for the per-epoch validation and by eval/predict; ``decode`` turns the outputs into
        predictions. ``ftkit.generation.generate_ids`` is the shared batched loop.
        """
        raise NotImplementedError(f"task {self.name} does not generate")

    # ---- saved model ------------------------------------------------------
    def export_info(self, model, tokenizer) -> dict[str, Any]:
        """Keys recorded in the model folder's ftkit.json: the class that loads *this* model
        (it may depend on the family) and anything a user needs to call it (e.g. a prompt format)."""
        return {"auto_class": self.auto_class, "pipeline_task": self.pipeline_task}

    def card_usage(self, model_meta: dict[str, Any]) -> list[str]:
        """Model-card lines showing how to use the exported folder with plain transformers."""
        pipe = model_meta.get("pipeline_task", self.pipeline_task)
        extra = ", aggregation_strategy=\"simple\")" if pipe == "token-classification" else ")"
        return ["```python", "from transformers import pipeline",
                f"nlp = pipeline(\"{pipe}\", model=\"PATH/TO/THIS/FOLDER\"" + extra, "```"]

    def write_outputs(self, run_dir, split: str, examples, predictions: list[Any]) -> None:
        """Write a split's predictions into the run folder (for outside scorers). Default: nothing."""

    # ---- outputs ----------------------------------------------------------
    @abstractmethod
    def decode(self, examples, features, outputs, labels: list[str]) -> list[Any]:
        """One user-level prediction per example."""

    @abstractmethod
    def score(self, examples, predictions: list[Any], labels: list[str]) -> dict[str, Any]:
        """Metrics (fractions 0-1 unless the metric's own convention differs, e.g. BLEU 0-100)."""

    def format_table(self, metrics: dict[str, Any]) -> str:
        return "\n".join(f"{k}: {v}" for k, v in metrics.items() if not isinstance(v, dict))

    # ---- predict ----------------------------------------------------------
    @abstractmethod
    def predict_examples(self, records: list[dict[str, Any]]):
        """Examples (as from ``read``) built from raw predict inputs."""

    @abstractmethod
    def format_prediction(self, example: dict[str, Any], prediction: Any) -> dict[str, Any]:
        """One JSON-serialisable output record for ``ftkit predict``."""
