"""Sentence-pair regression (STS-B style) as an ftkit task plugin.

Data: JSONL/CSV/TSV records ``{"sentence1": ..., "sentence2": ..., "score": 3.8}``. The model is a
sequence classifier with one output and a mean-squared-error loss (``problem_type="regression"``);
scores are Pearson and Spearman correlation and MSE. Everything ftkit needs is this module and the
entry point in pyproject.toml: no file of ftkit itself is touched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from ftkit.data.records import detect_format, iter_records
from ftkit.errors import FtkitError
from ftkit.tasks.base import Facts, Task, TaskOptions


class PairRegressionOptions(TaskOptions):
    text_column: str = Field("sentence1", description="first sentence")
    text_pair_column: str = Field("sentence2", description="second sentence")
    score_column: str = Field("score", description="gold similarity (any real number)")


class PairRegressionTask(Task):
    name = "pair_regression"
    pipeline_task = "text-classification"
    auto_class = "AutoModelForSequenceClassification"
    best_metric = "pearson"
    Options = PairRegressionOptions
    description = "sentence-pair regression (Pearson/Spearman, MSE) -- a plugin"

    @property
    def float_labels(self) -> bool:
        return True

    # ---- data -------------------------------------------------------------
    def read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
        from datasets import Dataset

        o = self.options
        rows = []
        for rec in iter_records(path, detect_format(path, fmt, default_text="jsonl"), split, encoding):
            d = rec.data
            for key in (o.text_column, o.text_pair_column, o.score_column):
                if key not in d:
                    raise rec.error(f"missing field '{key}' (record has: {', '.join(map(str, d)) or 'nothing'})")
            texts = [d[o.text_column], d[o.text_pair_column]]
            if not all(isinstance(t, str) and t.strip() for t in texts):
                raise rec.error("both sentences must be non-empty strings")
            try:
                score = float(d[o.score_column])
            except (TypeError, ValueError):
                raise rec.error(f"'{o.score_column}' must be a number, got {d[o.score_column]!r}") from None
            if not math.isfinite(score):
                raise rec.error(f"'{o.score_column}' must be finite, got {score}")
            rows.append({"text": texts[0], "text_pair": texts[1], "score": score, "source": rec.where})
        if not rows:
            raise FtkitError("no sentence pairs found", file=path)
        return Dataset.from_list(rows)

    def labels(self, train) -> list[str]:
        return ["score"]  # one regression output

    def example_text(self, example: dict[str, Any]) -> str:
        return f"{example['text']}\t{example['text_pair']}"

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        scores = np.asarray(examples["score"], dtype=float)
        return {"pairs": len(examples), "score_mean": round(float(scores.mean()), 4),
                "score_min": float(scores.min()), "score_max": float(scores.max())}

    # ---- model and features -----------------------------------------------
    def build_model(self, info, facts: Facts, tokenizer):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(
            info.path, num_labels=1, problem_type="regression", id2label={0: "score"}, label2id={"score": 0},
            **({"pad_token_id": tokenizer.pad_token_id} if tokenizer.pad_token_id is not None else {}),
            **info.load_kwargs)

    def encode(self, examples, tokenizer, facts: Facts, train: bool):
        has_score = "score" in examples.column_names

        def encode_batch(batch, indices):
            enc = tokenizer(batch["text"], batch["text_pair"], truncation=True, max_length=facts.max_length)
            out = {k: list(v) for k, v in enc.items() if k in self.model_columns}
            out["example_id"] = list(indices)
            out["length"] = [len(ids) for ids in out["input_ids"]]
            if has_score:
                out["labels"] = [float(s) for s in batch["score"]]
            return out

        return examples.map(encode_batch, batched=True, with_indices=True, remove_columns=examples.column_names)

    # ---- outputs ----------------------------------------------------------
    def decode(self, examples, features, outputs, facts: Facts) -> list[float]:
        values = np.asarray(outputs, dtype=np.float64).reshape(len(features), -1)[:, 0]
        preds = [0.0] * len(examples)
        for value, ex_id in zip(values, features["example_id"]):
            preds[ex_id] = float(value)
        return preds

    def score(self, examples, predictions: list[float], facts: Facts) -> dict[str, Any]:
        from scipy.stats import pearsonr, spearmanr

        gold, pred = np.asarray(examples["score"], dtype=float), np.asarray(predictions, dtype=float)
        constant = np.ptp(gold) == 0 or np.ptp(pred) == 0  # correlation is undefined: report 0
        return {
            "pearson": 0.0 if constant else float(pearsonr(gold, pred)[0]),
            "spearman": 0.0 if constant else float(spearmanr(gold, pred)[0]),
            "mse": float(np.mean((gold - pred) ** 2)),
            "examples": len(gold),
        }

    # ---- predict ----------------------------------------------------------
    def predict_examples(self, records: list[dict[str, Any]]):
        from datasets import Dataset

        rows = []
        for i, r in enumerate(records, 1):
            a, b = r.get("text", r.get(self.options.text_column)), r.get("text_pair", r.get(self.options.text_pair_column))
            if not (isinstance(a, str) and isinstance(b, str)):
                raise FtkitError(f"input record {i}: needs 'text' and 'text_pair' strings")
            rows.append({"text": a, "text_pair": b})
        return Dataset.from_list(rows) if rows else Dataset.from_dict({"text": [], "text_pair": []})

    def format_prediction(self, example: dict[str, Any], prediction: float) -> dict[str, Any]:
        return {"text": example["text"], "text_pair": example["text_pair"], "score": round(prediction, 6)}
