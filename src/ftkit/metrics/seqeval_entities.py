"""Entity-level precision, recall and F1 on words (conlleval rules, via seqeval), as an ``evaluate`` metric.

Load it offline from the installed package (no hub download)::

    import evaluate, ftkit.metrics
    ner = evaluate.load(ftkit.metrics.path("seqeval_entities"))
    ner.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])
    # {'precision': 1.0, 'recall': 1.0, 'f1': 1.0, 'accuracy': 1.0, 'macro_f1': 1.0, ...}

``predictions`` and ``references``: one IOB2 tag per *word* for each sentence (score words, never
sub-tokens). ``precision``/``recall``/``f1`` are micro averages over entities, as conlleval reports them;
``macro_f1`` averages the entity types; ``accuracy`` is per word; ``per_label`` has one report per type.
Unlike the hub's ``seqeval`` metric script this needs no download and returns fractions per type under
``per_label`` with integer supports.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score


def entity_scores(references: list[list[str]], predictions: list[list[str]]) -> dict[str, Any]:
    y_true, y_pred = [list(t) for t in references], [list(p) for p in predictions]
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    per_label = {
        k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "support": int(v["support"])}
        for k, v in report.items()
        if k not in ("micro avg", "macro avg", "weighted avg")
    }
    return {
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(report.get("macro avg", {}).get("f1-score", 0.0)),
        "examples": len(y_true),
        "per_label": per_label,
    }


class SeqevalEntities(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="seqeval (Nakayama 2018); CoNLL-2000/2003 conlleval",
            inputs_description="predictions, references: lists of per-word IOB2 tag sequences",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references):
        return entity_scores(references, predictions)
