"""The task protocol: everything the engine needs to know about one task.

A task is *stateless*. An instance holds only its options (a frozen pydantic model); every
fact that depends on the data or the checkpoint is resolved once by the engine and passed
to the methods explicitly as :class:`Facts` (labels, model family, window, resolved options),
which is also what a model folder's ``ftkit.json`` records and what reloading reads back.
No method changes the task, so one task object can serve N processes or N models at once.

Data flow::

    iter_examples(path, split, part) -> example rows, validated, one at a time; the engine
                                        (``ftkit.data.stream``) writes them to memory-mapped Arrow
                                        -- in parallel ``parts`` of a large file -- while ``observe``
                                        adds each to the split's Profile (counts, labels, digests)
    read(path, split)               -> examples  (that datasets.Dataset, the Profile attached)
    labels(train), resolve_options(train, family)       -> Facts (engine, once per run)
    prepare_tokenizer(tokenizer, facts)                 (markers, language codes; idempotent)
    encode(examples, tokenizer, facts, train)           -> features (model inputs + ``example_id``)
    Trainer / predict loop           -> outputs   (per-feature arrays, see ``reduce_logits``)
    decode(examples, features, outputs, facts)          -> predictions (one per example)
    score(examples, predictions, facts)                 -> metrics dict (fractions 0-1, ``per_label``)

Generative tasks (``generates = True``) make their outputs with ``model.generate``
instead of from logits: ``generate(model, tokenizer, features, facts, batch_size)`` returns
one output per feature, in feature order (see ``ftkit.generation`` and ``ftkit.text2text``).

A new task -- built in or a plugin (entry point group ``ftkit.tasks``) -- is one module with
a subclass of :class:`Task`; the engine, the CLI and the Python API need no change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal

from pydantic import BaseModel, ConfigDict

from ftkit.data.lines import WHOLE, Part
from ftkit.data.profile import PROFILE_ATTR, Profile
from ftkit.errors import FtkitError


class TaskOptions(BaseModel):
    """A task's ``task_options``: typed, unknown keys rejected, frozen once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Facts:
    """What the engine resolves once per run and every later step reads.

    ``labels`` come from the training data, ``family`` and ``max_length`` (the sub-token window)
    from the checkpoint, ``options`` are the task options with every data- or family-dependent
    choice made (``pooling: auto`` -> ``entity_start``, SQuAD version detected, ...).
    Written to ``ftkit.json`` (:meth:`to_meta`), read back on reload.
    """

    task: str
    labels: tuple[str, ...]
    family: str
    max_length: int
    options: TaskOptions = field(compare=True)

    @property
    def label2id(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    def to_meta(self) -> dict[str, Any]:
        return {"task": self.task, "task_options": self.options.model_dump(mode="json"), "labels": list(self.labels),
                "family": self.family, "max_length": self.max_length}

    def with_options(self, options: TaskOptions) -> Facts:
        return replace(self, options=options)


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
    #: the recipe `ftkit finetune --task NAME` runs when no data is given (a built-in name or a YAML path)
    demo_recipe: ClassVar[str | None] = None
    #: feature columns the model receives; everything else (example_id, length, offsets...) stays behind
    model_columns: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "token_type_ids", "labels")
    #: how labels are padded in a batch: one per example, one per token (-100), or target sequences (-100)
    label_padding: ClassVar[Literal["none", "tokens", "seq2seq"]] = "none"
    #: ``reduce_logits`` maps each position's logits on their own (no pooling across positions), so the engine may
    #: lay several sequences end to end in one row of a forward pass (see ``engine/batched.py``)
    outputs_per_token: ClassVar[bool] = False
    #: one line for `ftkit recipes` / `--task` help
    description: ClassVar[str] = ""

    def __init__(self, options: TaskOptions | None = None) -> None:
        self._options = options if options is not None else self.Options()

    @property
    def options(self):
        return self._options

    def with_options(self, options: TaskOptions) -> Task:
        """The same task with other options (a new object; this one is unchanged)."""
        return type(self)(options)

    def bind(self, facts: Facts) -> Task:
        """The same task with the resolved options of ``facts``."""
        return self.with_options(facts.options)

    # ---- data -------------------------------------------------------------
    def iter_examples(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8",
                      part: Part = WHOLE) -> Iterator[dict[str, Any]]:
        """Read and validate one split (or one ``part`` of it, see :meth:`parts`): example rows, one at a time.

        Raise :class:`~ftkit.errors.FtkitError` naming file and line for bad input. Rows must not
        depend on anything read before them in another part (each part is read by its own process).
        """
        raise NotImplementedError(f"task {self.name} does not stream its data (it implements read only)")

    def read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8", workers: int = 1):
        """One split as a ``datasets.Dataset`` (Arrow on disk, memory-mapped; cached), read with
        :meth:`iter_examples`; its :class:`Profile` is attached (see :meth:`profile`)."""
        from ftkit.data.stream import build_split

        return build_split(self, path, split, fmt, encoding, workers)

    def example_features(self):
        """The ``datasets.Features`` of the rows ``iter_examples`` yields (None: inferred from the first rows)."""
        return None

    def parts(self, path: str, split: str, fmt: str, encoding: str, n: int) -> list[Part]:
        """At most ``n`` parts of one input that can be read at once by separate processes, in order
        (``ftkit.data.lines.plan_parts`` cuts text files at record boundaries). Default: one part."""
        return [WHOLE]

    def data_files(self, path: str, split: str, fmt: str) -> list[Path] | None:
        """The local files a split is read from (their size and time key the cache of its examples);
        None for a source that is not local files (a hub dataset), which is not cached."""
        from ftkit.recipes import resolve_packaged

        p = Path(resolve_packaged(path))
        if p.is_file():
            return [p]
        if p.is_dir():
            return sorted(f for f in p.rglob("*") if f.is_file())
        return None

    def observe(self, profile: Profile, example: dict[str, Any]) -> None:
        """Add one example to its split's profile. The default counts it, with ``example_text`` for
        empty and duplicate detection; tasks add their labels and counters."""
        profile.add(self.example_text(example), profile.where(example))

    def check_split(self, profile: Profile, path: str, split: str) -> None:
        """Raise for a split that is wrong as a whole (checked once all of it is read). Default: empty."""
        if profile.count == 0:
            raise FtkitError("no examples found", file=path)

    def profile(self, examples, split: str = "") -> Profile:
        """The profile of ``examples``: the one its reader made (attached to the dataset), or one more
        pass over them (a ``datasets.Dataset`` read in batches, or a list of rows)."""
        found = getattr(examples, PROFILE_ATTR, None)
        if isinstance(found, Profile) and found.finished and found.task == self.name:
            return found
        profile = Profile(self.name)
        for row in _rows(examples):
            self.observe(profile, row)
        profile.finish(lambda i: examples[i])
        try:
            setattr(examples, PROFILE_ATTR, profile)
        except AttributeError:  # a plain list
            pass
        return profile

    @abstractmethod
    def labels(self, train) -> list[str]:
        """The label set, taken from the (whole) training split (a Dataset; see :meth:`profile`)."""

    def resolve_options(self, train, family: str | None) -> TaskOptions:
        """The options with every choice that depends on the training data or the model family made.

        ``family`` is None while only the data is known (the engine resolves the data's choices before
        it reads the evaluation splits, then everything once the checkpoint is loaded): leave
        family-dependent choices as they are then. Resolving resolved options changes nothing.
        """
        return self.options

    def check_labels(self, examples, labels: list[str], source: str) -> None:
        """Raise if an evaluation split uses a label never seen in training."""

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        """Counts and label distribution of one split (shown before training and by `ftkit validate`)."""
        return {"examples": self.profile(examples, split).count}

    def lint(self, examples, split: str) -> list[tuple[str, str]]:
        """Warnings about data that can be trained on but probably should not be: ``(where, message)``.

        The default flags empty and duplicate examples (from the profile's digests of ``example_text``).
        """
        p = self.profile(examples, split)
        problems = [(where, "empty example") for where in p.empty_where]
        if p.empty > len(p.empty_where):
            problems.append((f"{split} data", f"{p.empty - len(p.empty_where)} more empty examples"))
        if p.duplicates and p.first_duplicate:
            first, orig = p.first_duplicate
            problems.append((first, f"{p.duplicates} duplicate examples in the {split} split "
                                    f"(this one repeats {orig})"))
        return problems

    def example_text(self, example: dict[str, Any]) -> str:
        """The input of one example as text (for duplicate detection)."""
        return " ".join(str(v) for k, v in example.items() if k not in ("source",))

    # ---- model ------------------------------------------------------------
    @abstractmethod
    def build_model(self, info, facts: Facts, tokenizer):
        """A model with this task's head for the checkpoint (``info``: ``ftkit.families.ModelInfo``)."""

    def prepare_tokenizer(self, tokenizer, facts: Facts) -> None:
        """Make a tokenizer ready for this task (special tokens, language codes); must be idempotent.

        Called on the base checkpoint's tokenizer before encoding and on a trained model's tokenizer
        when it is loaded again.
        """

    def load_model(self, path: str, facts: Facts, meta: dict[str, Any] | None = None, **kwargs):
        """The trained model saved in ``path`` (a run's ``model/`` or an export), for eval and predict.

        ``meta`` is the folder's ftkit.json (its ``auto_class`` wins over the task's);
        ``kwargs`` carry the engine's safe-loading settings (``use_safetensors``).
        """
        import transformers

        auto = (meta or {}).get("auto_class") or self.auto_class
        return getattr(transformers, auto).from_pretrained(path, **kwargs)

    # ---- features ---------------------------------------------------------
    @abstractmethod
    def encode(self, examples, tokenizer, facts: Facts, train: bool):
        """Model features with an ``example_id`` column pointing back to ``examples`` and a ``length``
        column (sub-tokens, for length-grouped batches)."""

    @property
    def float_labels(self) -> bool:
        """Labels go to the model as floats (multi-label BCE, regression)."""
        return False

    def collator(self, tokenizer, facts: Facts):
        from ftkit.data.collate import ColumnCollator

        return ColumnCollator(tokenizer, self.model_columns, self.label_padding, self.float_labels)

    def reduce_logits(self, logits, facts: Facts):
        """Shrink raw logits before they are gathered for ``decode`` (runs per batch)."""
        return logits[0] if isinstance(logits, tuple) else logits

    def generate(self, model, tokenizer, features, facts: Facts, batch_size: int) -> list[Any]:
        """Generative tasks: one output per feature (in feature order), made with ``model.generate``.

        Called for the per-epoch validation and by eval/predict; ``decode`` turns the outputs into
        predictions. ``ftkit.generation.generate_ids`` is the shared batched loop.
        """
        raise NotImplementedError(f"task {self.name} does not generate")

    # ---- saved model ------------------------------------------------------
    def export_info(self, model, tokenizer, facts: Facts) -> dict[str, Any]:
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

    #: what the report's error analysis lists for this task (a heading)
    error_analysis: ClassVar[str] = "mistakes, worst first"

    def prediction_rows(self, examples, predictions: list[Any], facts: Facts) -> list[dict[str, Any]]:
        """One JSON row per example, written as ``predictions_<split>.jsonl``; ``ftkit report`` lists the
        rows with ``correct: false`` by ``severity``, highest first. Build rows with :func:`example_row`,
        :func:`text_field` and :func:`span`. Default: no rows (the report then has no error analysis)."""
        return []

    # ---- outputs ----------------------------------------------------------
    @abstractmethod
    def decode(self, examples, features, outputs, facts: Facts) -> list[Any]:
        """One user-level prediction per example."""

    @abstractmethod
    def score(self, examples, predictions: list[Any], facts: Facts) -> dict[str, Any]:
        """Metrics (fractions 0-1 unless the metric's own convention differs, e.g. BLEU 0-100)."""

    def format_table(self, metrics: dict[str, Any]) -> str:
        return "\n".join(f"{k}: {v}" for k, v in metrics.items() if not isinstance(v, dict))

    # ---- predict ----------------------------------------------------------
    def predict_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Raw predict inputs checked and turned into example rows (an ``FtkitError`` naming the record it
        rejects). A task implements this -- ``predict_examples`` then makes the rows a dataset -- or
        ``predict_examples`` itself."""
        raise NotImplementedError(f"task {self.name} implements neither predict_rows nor predict_examples")

    def predict_columns(self) -> list[str]:
        """The columns of ``predict_rows``' rows (the examples of an empty input have them)."""
        return []

    def predict_examples(self, records: list[dict[str, Any]]):
        """Examples (as from ``read``) built from raw predict inputs: ``predict_rows`` as a dataset."""
        from ftkit.data.parallel import rows_in_memory

        return rows_in_memory(self.predict_rows(records), self.predict_columns())

    def check_predict_records(self, records: list[dict[str, Any]]) -> None:
        """Raise what ``predict_examples`` would raise for these records, without building the dataset when
        the task has ``predict_rows`` (``ftkit serve`` checks every request this way before queueing it)."""
        if type(self).predict_rows is not Task.predict_rows:
            self.predict_rows(records)
        else:
            self.predict_examples(records)

    @abstractmethod
    def format_prediction(self, example: dict[str, Any], prediction: Any) -> dict[str, Any]:
        """One JSON-serialisable output record for ``ftkit predict``."""


def span(start: int, end: int, label: str, source: str) -> dict[str, Any]:
    """A highlighted character span of a field: ``source`` is ``gold``, ``predicted`` or ``input``
    (part of the input itself, e.g. a relation's marked entities)."""
    return {"start": int(start), "end": int(end), "label": str(label), "source": source}


def text_field(name: str, text: str, spans: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """A piece of text the report shows for an example (the sentence, the context, the reference...)."""
    return {"name": name, "text": str(text), "spans": list(spans)}


def example_row(index: int, *, correct: bool, severity: float, note: str, fields: list[dict[str, Any]],
                gold: Any = None, predicted: Any = None, **extra: Any) -> dict[str, Any]:
    """A ``prediction_rows`` row: ``severity`` ranks the mistakes (higher is worse), ``note`` says why in a
    few words (``confidence 0.97``, ``chrF 12.3``); ``gold``/``predicted`` are short labels or answers."""
    return {"index": int(index), "correct": bool(correct), "severity": float(severity), "note": note,
            "gold": gold, "predicted": predicted, "fields": fields, **extra}


def _rows(examples) -> Iterator[dict[str, Any]]:
    """The rows of a ``datasets.Dataset`` (read in batches) or of any iterable of rows."""
    if hasattr(examples, "iter") and hasattr(examples, "column_names") and hasattr(examples, "__len__"):
        for batch in examples.iter(batch_size=1000):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys)):
                yield dict(zip(keys, values))
    else:
        yield from examples
