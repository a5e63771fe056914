"""Text classification: one label per text (or per text pair), or a set of labels (multi-label).

- Data: CSV/TSV/JSONL/Parquet/``datasets`` folders (columns chosen by ``text_column``,
  ``text_pair_column``, ``label_column``), and plain-text line files selected by
  ``line_format``: ``label_text`` (``<label> <text>``, SST-2 ``stsa.binary.*``),
  ``trec_coarse`` / ``trec_fine`` (``COARSE:fine question``, TREC ``*.label``).
  Structured files are recognised by their suffix; any other file is a line file.
- Labels may be strings or integers (kept as their text, ``1`` -> ``"1"``); ``label_names``
  renames them (``{0: negative, 1: positive}``). The label set comes from the training
  *file*, so a ``validation_fraction`` split cannot make a rare label "unknown".
  A label with fewer than ``min_examples_per_label`` training examples is an error.
- Long texts are truncated to the model's window (and counted on stderr), or with
  ``long_text: window`` split into overlapping windows whose logits are mean-pooled
  per example -- nothing is dropped. Training uses every window with its example's label.
- Heads: ``AutoModelForSequenceClassification`` for every family (BERT-like encoders,
  GPT-2 -- last non-pad token, pad = EOS -- and T5 -- ``T5ForSequenceClassification``).
  Multi-label models have ``problem_type="multi_label_classification"`` (BCE on float
  targets, sigmoid scores, ``threshold``).
- Scores (scikit-learn): accuracy, macro precision/recall/F1 (``f1``, selects the best
  checkpoint), micro and weighted F1, a per-label report and the confusion matrix;
  multi-label: macro/micro/weighted F1, subset accuracy, Hamming loss, per-label
  2x2 confusion matrices.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field, field_validator

from ftkit.data.lines import WHOLE, Part, iter_lines, plan_parts
from ftkit.data.parallel import column_sum, map_examples
from ftkit.data.profile import Profile
from ftkit.data.records import detect_format, iter_records
from ftkit.errors import FtkitError
from ftkit.recipes import resolve_packaged
from ftkit.tasks.base import Facts, Task, TaskOptions, example_row, text_field

LINE_FORMATS = ("label_text", "trec_coarse", "trec_fine")
STRUCTURED = ("jsonl", "csv", "tsv", "parquet", "disk", "hub")
LABEL_TEXT_RE = re.compile(r"^(\S+)\s+(\S.*)$")
TREC_LABEL_RE = re.compile(r"^([^:\s]+):(\S+)$")


class ClassificationOptions(TaskOptions):
    text_column: str = Field("text", description="column / JSON field holding the text")
    text_pair_column: str | None = Field(None, description="optional second text (sentence-pair tasks)")
    label_column: str = Field("label", description="column / JSON field holding the label(s)")
    multi_label: bool = Field(False, description="each text has a set of labels (sigmoid + BCE)")
    label_separator: str = Field(",", min_length=1, description="splits a multi-label string such as 'a,b'")
    label_names: dict[str, str] | None = Field(
        None, description="rename raw labels, e.g. {0: negative, 1: positive}; fixes the label order")
    line_format: Literal["label_text", "trec_coarse", "trec_fine"] | None = Field(
        None, description="how to read plain-text line files (files without a .csv/.tsv/.jsonl/.parquet suffix)")
    long_text: Literal["truncate", "window"] = Field(
        "truncate", description="truncate to the model's window, or pool logits over overlapping windows")
    window_stride: int = Field(32, ge=0, description="sub-tokens of overlap between windows (long_text=window)")
    min_examples_per_label: int = Field(2, ge=1, description="fewer training examples of a label is an error")
    threshold: float = Field(0.5, gt=0, lt=1, description="multi-label: a label is predicted when its sigmoid >= this")

    @field_validator("label_names", mode="before")
    @classmethod
    def _keys_as_text(cls, v):
        # YAML reads `{0: negative}` with integer keys: labels are compared as text
        if isinstance(v, dict):
            return {str(k): str(val) for k, val in v.items()}
        return v


def _sort_labels(labels) -> list[str]:
    labels = list(labels)
    if labels and all(re.fullmatch(r"-?\d+", x) for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _error_at(where: str, message: str, hint: str | None = None) -> FtkitError:
    """An error for a location already formatted as ``file:line`` or ``file: record N``."""
    return FtkitError(f"{where}: {message}", hint=hint)


# ---------------------------------------------------------------------------


class ClassificationTask(Task):
    name = "classification"
    pipeline_task = "text-classification"
    auto_class = "AutoModelForSequenceClassification"
    best_metric = "f1"
    Options = ClassificationOptions
    demo_recipe = "classification-demo"
    description = "text classification, single- or multi-label, text or text pair (scikit-learn metrics)"

    @property
    def float_labels(self) -> bool:
        return self.options.multi_label  # BCE on multi-hot targets

    # ---- data -------------------------------------------------------------
    def _label(self, value: Any, where: str) -> str | list[str]:
        o = self.options
        col = o.label_column

        def one(v: Any) -> str:
            if v is None:
                raise _error_at(where, f"missing label (null '{col}')")
            if isinstance(v, bool):
                raise _error_at(where, f"label must be a string or an integer, got {v!r}")
            if isinstance(v, float):
                if not v.is_integer():
                    raise _error_at(where, f"label must be a string or an integer, got {v!r}")
                v = int(v)
            if isinstance(v, (int, np.integer)):
                v = str(int(v))
            if not isinstance(v, str):
                raise _error_at(where, f"label must be a string or an integer, got {type(v).__name__}")
            v = v.strip()
            if not v:
                raise _error_at(where, f"empty label in '{col}'")
            if o.label_names is not None:
                if v not in o.label_names:
                    raise _error_at(where, f"label '{v}' is not in task_options.label_names",
                                    hint=f"known: {', '.join(o.label_names)}; or --set task_options.label_names=null "
                                         "to use the labels as they are")
                v = o.label_names[v]
            return v

        if not o.multi_label:
            if isinstance(value, (list, tuple)):
                raise _error_at(where, f"'{col}' holds a list of labels",
                                hint="set task_options.multi_label=true for multi-label data")
            if isinstance(value, str) and not value.strip():
                raise _error_at(where, f"empty label in '{col}'")
            return one(value)
        if value is None:
            raise _error_at(where, f"missing labels (null '{col}')", hint="use [] or '' for a text with no label")
        if isinstance(value, str):
            parts = [p for p in (x.strip() for x in value.split(o.label_separator)) if p]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        return list(dict.fromkeys(one(p) for p in parts))  # unique, in order

    def _text(self, value: Any, column: str, where: str) -> str:
        if value is None:
            raise _error_at(where, f"null text in '{column}'")
        if not isinstance(value, str):
            raise _error_at(where, f"text in '{column}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise _error_at(where, f"empty text in '{column}'")
        return value

    def _from_records(self, path: str, fmt: str, split: str, encoding: str, part: Part) -> Iterator[dict[str, Any]]:
        o = self.options
        needed = [c for c in (o.text_column, o.text_pair_column, o.label_column) if c is not None]
        for rec in iter_records(path, fmt, split, encoding, part):
            d, where = rec.data, rec.where
            for key in needed:
                if key not in d:
                    have = ", ".join(map(str, d)) or "nothing"
                    raise rec.error(
                        f"missing column '{key}' (columns: {have})",
                        hint="set task_options.text_column / text_pair_column / label_column to the names used",
                    )
            row = {"text": self._text(d[o.text_column], o.text_column, where)}
            if o.text_pair_column:
                row["text_pair"] = self._text(d[o.text_pair_column], o.text_pair_column, where)
            row["label"] = self._label(d[o.label_column], where)
            row["source"] = where
            yield row

    def _from_lines(self, path: str, encoding: str, part: Part) -> Iterator[dict[str, Any]]:
        o = self.options
        if o.text_pair_column:
            raise FtkitError("line files hold one text per line; text_pair_column needs CSV/TSV/JSONL/Parquet",
                             file=path)
        # lines end at "\n" only: str.splitlines() would also split on characters such as U+0085,
        # which a Latin-1 file can contain, and shift every line number after it
        for lineno, line in iter_lines(path, encoding, part, breaks="newline"):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            m = LABEL_TEXT_RE.match(line.strip())
            if not m:
                raise _error_at(where, "expected '<label> <text>' (a label, a space, then the text)")
            raw, body = m.groups()
            if o.line_format != "label_text":
                t = TREC_LABEL_RE.match(raw)
                if not t:
                    raise _error_at(where, f"expected a TREC 'COARSE:fine' label, got {raw!r}",
                                    hint="use task_options.line_format=label_text for '<label> <text>' lines")
                raw = t.group(1) if o.line_format == "trec_coarse" else raw
            yield {"text": body, "label": self._label(raw, where), "source": where}

    def _format(self, path: str, fmt: str) -> str:
        fmt = detect_format(path, fmt, default_text="lines")
        if fmt == "lines" and self.options.line_format is None:
            raise FtkitError(
                "cannot tell how to read this file (not .csv/.tsv/.jsonl/.parquet)", file=path,
                hint="for '<label> <text>' lines (SST-2 stsa.binary) set task_options.line_format=label_text; "
                     "for TREC files trec_coarse or trec_fine",
            )
        if fmt != "lines" and fmt not in STRUCTURED:
            raise FtkitError(f"data format '{fmt}' does not hold classification data", file=path,
                             hint="use csv, tsv, jsonl, parquet, a datasets folder, or a line file with "
                                  "task_options.line_format")
        return fmt

    def iter_examples(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8",
                      part: Part = WHOLE) -> Iterator[dict[str, Any]]:
        path = resolve_packaged(path)
        fmt = self._format(path, fmt)
        if fmt == "lines":
            yield from self._from_lines(path, encoding, part)
        else:
            yield from self._from_records(path, fmt, split, encoding, part)

    def example_features(self):
        from datasets import Features, List, Value

        o = self.options
        columns = {"text": Value("string")}
        if o.text_pair_column:
            columns["text_pair"] = Value("string")
        columns["label"] = List(Value("string")) if o.multi_label else Value("string")
        columns["source"] = Value("string")
        return Features(columns)

    def parts(self, path: str, split: str, fmt: str, encoding: str, n: int) -> list[Part]:
        path = resolve_packaged(path)
        fmt = self._format(path, fmt)
        if fmt in ("lines", "jsonl"):
            return plan_parts(path, n, encoding, boundary="line", breaks="newline" if fmt == "lines" else "unicode")
        return [WHOLE]

    def observe(self, profile: Profile, example: dict[str, Any]) -> None:
        super().observe(profile, example)
        where = profile.where(example)
        for lab in (example["label"] if self.options.multi_label else [example["label"]]):
            profile.label(lab, where)

    def check_split(self, profile: Profile, path: str, split: str) -> None:
        if profile.count == 0:
            raise FtkitError("no examples found", file=path)
        if split == "train":
            self._check_train_labels(profile, path)

    def _check_train_labels(self, profile: Profile, path: str) -> None:
        o = self.options
        counts, first = profile.labels, profile.first
        if not counts:
            raise FtkitError("the training data has no labels at all (every label list is empty)", file=path)
        if len(counts) == 1 and not o.multi_label:
            (only,) = counts
            raise _error_at(first[only], f"the training data has a single label '{only}'; a classifier needs two or more")
        rare = sorted((lab for lab, n in counts.items() if n < o.min_examples_per_label), key=lambda x: counts[x])
        if rare:
            shown = ", ".join(f"'{lab}' ({counts[lab]})" for lab in rare[:5]) + (", ..." if len(rare) > 5 else "")
            raise _error_at(
                first[rare[0]],
                f"{len(rare)} label(s) with fewer than {o.min_examples_per_label} training examples: {shown}",
                hint="a class needs examples to be learnt and scored; fix the labels, or allow it with "
                     "--set task_options.min_examples_per_label=1",
            )

    def labels(self, train) -> list[str]:
        seen = set(self.profile(train, "train").labels)
        names = self.options.label_names
        if names is not None:
            ordered = list(dict.fromkeys(names.values()))
            return ordered + _sort_labels(seen - set(ordered))
        return _sort_labels(seen)

    def check_labels(self, examples, labels: list[str], source: str) -> None:
        known = set(labels)
        p = self.profile(examples)
        # profile.first keeps the order in which labels first occur: the first unseen one in reading order
        lab = next((lab for lab in p.first if lab not in known), None)
        if lab is not None:
            shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
            raise _error_at(p.first[lab], f"label '{lab}' never occurs in the training data",
                            hint=f"known labels: {shown}")

    def example_text(self, example: dict[str, Any]) -> str:
        return example["text"] + ("\t" + example["text_pair"] if example.get("text_pair") else "")

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        p = self.profile(examples, split)
        counts = p.labels
        summary: dict[str, Any] = {"examples": p.count, "labels": dict(sorted(counts.items()))}
        if len(counts) > 1:
            # largest class over smallest (of the labels present): 1.0 is balanced; macro F1 weighs classes equally
            ranked = counts.most_common()
            (big, n_big), (small, n_small) = ranked[0], ranked[-1]
            summary["imbalance"] = {"ratio": round(n_big / n_small, 2), "largest": big, "smallest": small}
        return summary

    # ---- model ------------------------------------------------------------
    def build_model(self, info, facts: Facts, tokenizer):
        from transformers import AutoModelForSequenceClassification

        kwargs: dict[str, Any] = {}
        if self.options.multi_label:
            kwargs["problem_type"] = "multi_label_classification"
        if tokenizer.pad_token_id is not None:
            kwargs["pad_token_id"] = tokenizer.pad_token_id  # GPT-2 finds the last non-pad token
        return AutoModelForSequenceClassification.from_pretrained(
            info.path, num_labels=len(facts.labels), id2label=dict(enumerate(facts.labels)),
            label2id=facts.label2id, **kwargs, **info.load_kwargs,
        )

    # ---- features ---------------------------------------------------------
    def encode(self, examples, tokenizer, facts: Facts, train: bool):
        o = self.options
        labels, max_length, label2id = facts.labels, facts.max_length, facts.label2id
        has_labels = "label" in examples.column_names
        pair = "text_pair" in examples.column_names
        window = o.long_text == "window"
        budget = max_length - tokenizer.num_special_tokens_to_add(pair=pair)
        stride = min(o.window_stride, max(budget // 2 - 1, 0))

        def target(label):
            if o.multi_label:
                hot = [0.0] * len(labels)
                for lab in label:
                    hot[label2id[lab]] = 1.0
                return hot
            return label2id[label]

        def encode_batch(batch, indices):
            texts = batch["text"]
            pairs = batch["text_pair"] if pair else None
            if window:
                try:
                    enc = tokenizer(texts, pairs, truncation="only_second" if pair else True,
                                    max_length=max_length, stride=stride, return_overflowing_tokens=True)
                except Exception as e:  # the first text of a pair alone does not fit the window
                    raise FtkitError(f"cannot split a long text into windows: {str(e).splitlines()[0][:200]}",
                                     hint="windows slide over the second text of a pair; the first must fit") from None
                mapping = enc.pop("overflow_to_sample_mapping")
                cut = [0] * len(mapping)
            else:
                enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
                mapping = list(range(len(texts)))
                cut = [int(bool(e.overflowing)) for e in enc.encodings]
            out = {k: list(v) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            out["truncated"] = cut  # counted after the map (worker processes keep no shared counter)
            out["example_id"] = [indices[i] for i in mapping]
            out["length"] = [len(ids) for ids in out["input_ids"]]
            if has_labels:
                out["labels"] = [target(batch["label"][i]) for i in mapping]
            return out

        features = map_examples(examples, encode_batch, remove_columns=examples.column_names)
        truncated = column_sum(features, "truncated")
        if truncated:
            print(f"  note: {truncated} of {len(examples)} texts are longer than the {max_length}-sub-token window "
                  f"and were truncated (task_options.long_text=window keeps all of the text)",
                  file=sys.stderr, flush=True)
        return features

    def reduce_logits(self, logits, facts: Facts):
        if isinstance(logits, tuple):  # T5: (logits, encoder states, ...)
            logits = logits[0]
        return logits.float()

    # ---- outputs ----------------------------------------------------------
    def pooled_logits(self, n_examples: int, features, outputs) -> tuple[np.ndarray, np.ndarray]:
        """Mean logits per example over its windows, and the number of windows of each."""
        outputs = np.asarray(outputs, dtype=np.float64)
        ids = np.asarray(features["example_id"][:], dtype=np.int64)
        sums = np.zeros((n_examples, outputs.shape[-1]))
        counts = np.zeros(n_examples)
        np.add.at(sums, ids, outputs)
        np.add.at(counts, ids, 1)
        return sums / np.maximum(counts, 1)[:, None], counts.astype(int)

    def decode(self, examples, features, outputs, facts: Facts) -> list[dict[str, Any]]:
        """Per example: ``label`` (a list of labels for multi-label), ``probabilities`` per label, ``windows``."""
        labels = facts.labels
        logits, windows = self.pooled_logits(len(examples), features, outputs)
        if self.options.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
        else:
            z = logits - logits.max(axis=-1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        result = []
        for p, w in zip(probs, windows):
            if self.options.multi_label:
                label: Any = [lab for lab, x in zip(labels, p) if x >= self.options.threshold]
            else:
                label = labels[int(np.argmax(p))]
            result.append({"label": label, "probabilities": {lab: float(x) for lab, x in zip(labels, p)},
                           "windows": int(w)})
        return result

    def score(self, examples, predictions: list[dict[str, Any]], facts: Facts) -> dict[str, Any]:
        labels = list(facts.labels)
        if self.options.multi_label:
            return self._score_multi(examples, predictions, labels)
        from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, f1_score,
                                     precision_recall_fscore_support)

        y_true = list(examples["label"])
        y_pred = [p["label"] for p in predictions]
        # macro averages over the labels that occur in the gold or predicted labels (scikit-learn's default)
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
        report = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
            "examples": len(y_true),
            "per_label": self._per_label(report, labels),
            "confusion_matrix": {
                "labels": labels, "rows": "true", "columns": "predicted",
                "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
            },
        }

    def _score_multi(self, examples, predictions, labels):
        from sklearn.metrics import (accuracy_score, classification_report, f1_score, hamming_loss,
                                     multilabel_confusion_matrix, precision_score, recall_score)
        from sklearn.preprocessing import MultiLabelBinarizer

        mlb = MultiLabelBinarizer(classes=labels)
        y_true = mlb.fit_transform([list(x) for x in examples["label"]])
        y_pred = mlb.transform([p["label"] for p in predictions])
        report = classification_report(y_true, y_pred, target_names=labels, output_dict=True, zero_division=0)
        cms = multilabel_confusion_matrix(y_true, y_pred)
        return {
            "subset_accuracy": float(accuracy_score(y_true, y_pred)),
            "precision": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
            "hamming_loss": float(hamming_loss(y_true, y_pred)),
            "examples": len(y_true),
            "per_label": self._per_label(report, labels),
            "confusion_matrix": {
                "labels": labels, "per_label": "[[true negatives, false positives], [false negatives, true positives]]",
                "matrices": {lab: cm.tolist() for lab, cm in zip(labels, cms)},
            },
        }

    @staticmethod
    def _per_label(report: dict[str, Any], labels: list[str]) -> dict[str, Any]:
        return {
            lab: {"precision": report[lab]["precision"], "recall": report[lab]["recall"],
                  "f1": report[lab]["f1-score"], "support": int(report[lab]["support"])}
            for lab in labels if lab in report
        }

    error_analysis = "the most confident mistakes"

    def prediction_rows(self, examples, predictions: list[dict[str, Any]], facts: Facts) -> list[dict[str, Any]]:
        """Per text: gold and predicted label(s) with the model's probabilities; a mistake's severity is the
        confidence of the wrong call (single-label: the predicted label's probability; multi-label: the
        largest distance of a wrong label's score from 0 or 1)."""
        o = self.options
        rows = []
        for i, (ex, pred) in enumerate(zip(examples, predictions)):
            probs = pred["probabilities"]
            fields = [text_field(o.text_column, ex["text"])]
            if "text_pair" in ex and ex["text_pair"] is not None:
                fields.append(text_field(o.text_pair_column or "text_pair", ex["text_pair"]))
            if o.multi_label:
                gold = set(ex["label"])
                wrong = [lab for lab in facts.labels if (lab in gold) != (lab in pred["label"])]
                severity = max((abs(probs[lab] - (lab in gold)) for lab in wrong), default=0.0)
                note = f"wrong: {', '.join(wrong)}" if wrong else "all labels right"
                gold_out: Any = sorted(gold)
            else:
                wrong = [] if pred["label"] == ex["label"] else [pred["label"]]
                severity = probs[pred["label"]] if wrong else 0.0
                note = f"confidence {probs[pred['label']]:.2f}"
                gold_out = ex["label"]
            rows.append(example_row(i, correct=not wrong, severity=severity, note=note, fields=fields,
                                    gold=gold_out, predicted=pred["label"],
                                    probabilities={k: round(v, 4) for k, v in probs.items()}))
        return rows

    def format_table(self, m: dict[str, Any]) -> str:
        width = max([12] + [len(k) + 2 for k in m["per_label"]])
        lines = [f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for k, v in m["per_label"].items():
            lines.append(f"{k:<{width}}{v['precision']:>10.4f}{v['recall']:>10.4f}{v['f1']:>10.4f}{v['support']:>10}")
        lines.append(f"{'macro':<{width}}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}")
        if "accuracy" in m:
            lines.append(f"accuracy {m['accuracy']:.4f}  micro f1 {m['micro_f1']:.4f}  "
                         f"weighted f1 {m['weighted_f1']:.4f}  over {m['examples']} examples")
            cm = m.get("confusion_matrix")
            if cm and len(cm["labels"]) <= 12:
                labs = cm["labels"]
                cw = max([6] + [len(x) + 1 for x in labs])
                lines.append("confusion matrix (rows: true, columns: predicted)")
                lines.append(" " * width + "".join(f"{x:>{cw}}" for x in labs))
                for lab, row in zip(labs, cm["matrix"]):
                    lines.append(f"{lab:<{width}}" + "".join(f"{x:>{cw}}" for x in row))
        else:
            lines.append(f"subset accuracy {m['subset_accuracy']:.4f}  micro f1 {m['micro_f1']:.4f}  "
                         f"hamming loss {m['hamming_loss']:.4f}  over {m['examples']} examples")
        return "\n".join(lines)

    # ---- predict ----------------------------------------------------------
    def predict_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records are ``{"text": ...}`` (or the recipe's text column), plus ``text_pair`` for pair models."""
        o = self.options
        pair = o.text_pair_column is not None
        rows = []
        for i, r in enumerate(records, 1):
            where = f"input record {i}"
            key = "text" if "text" in r else o.text_column
            if key not in r:
                raise _error_at(where, f"no 'text' field (record has: {', '.join(map(str, r)) or 'nothing'})")
            row = {"text": self._text(r[key], key, where)}
            if pair:
                pkey = "text_pair" if "text_pair" in r else o.text_pair_column
                if pkey not in r:
                    raise _error_at(where, "this model classifies text pairs: the record needs a 'text_pair' field")
                row["text_pair"] = self._text(r[pkey], pkey, where)
            rows.append(row)
        return rows

    def predict_columns(self) -> list[str]:
        return ["text"] + (["text_pair"] if self.options.text_pair_column is not None else [])

    def format_prediction(self, example: dict[str, Any], prediction: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"text": example["text"]}
        if "text_pair" in example:
            out["text_pair"] = example["text_pair"]
        out["label"] = prediction["label"]
        out["probabilities"] = {k: round(v, 4) for k, v in prediction["probabilities"].items()}
        return out
