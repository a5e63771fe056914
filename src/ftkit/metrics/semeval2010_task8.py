"""The official SemEval-2010 Task 8 score (``semeval2010_task8_scorer-v1.2.pl``), as an ``evaluate`` metric.

Load it offline from the installed package (no hub download)::

    import evaluate, ftkit.metrics
    semeval = evaluate.load(ftkit.metrics.path("semeval2010_task8"))
    semeval.compute(predictions=["Cause-Effect(e1,e2)", "Other"], references=["Cause-Effect(e2,e1)", "Other"])

"(9+1)-way evaluation with directionality taken into account": ``f1``/``precision``/``recall`` are the
macro average over the relation types of the gold data, the negative label (``negative_label``, default
``Other``) excluded; a prediction is correct only with the right direction. Also ``micro_f1`` (exact
directed labels, negative excluded: the TACRED metric), ``accuracy``, ``per_type``, ``per_label`` and a
``confusion_matrix`` over ``labels`` (the model's label order; unseen labels are appended).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import datasets
import evaluate
import numpy as np

DIRECTION_RE = re.compile(r"^(?P<type>.+)\((?P<dir>e1,e2|e2,e1)\)$")


def split_direction(label: str) -> tuple[str, str | None]:
    """``'Cause-Effect(e2,e1)'`` -> ``('Cause-Effect', 'e2,e1')``; ``'Other'`` -> ``('Other', None)``."""
    m = DIRECTION_RE.match(label)
    return (m.group("type"), m.group("dir")) if m else (label, None)


def official_scores(gold: list[str], pred: list[str], negative: str = "Other") -> dict[str, Any]:
    """The SemEval-2010 Task 8 official score, following ``semeval2010_task8_scorer-v1.2.pl``.

    "(9+1)-way evaluation with directionality taken into account": per relation *type* (the
    label without its ``(e1,e2)``/``(e2,e1)`` suffix), a prediction is correct only if type and
    direction both match; precision divides by every prediction of that type (either direction,
    so a wrong direction costs precision), recall by every gold example of that type. Types are
    those of the gold labels (as in the scorer, predictions of a type absent from the gold data
    are ignored, like Other). The official score is the macro-average of the per-type F1 over
    those types, excluding ``negative``. Also returns the scorer's micro average (same types).
    """
    gold_types = Counter(split_direction(g)[0] for g in gold)
    proposed, correct, wrong_dir = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred):
        tg, tp = split_direction(g)[0], split_direction(p)[0]
        proposed[tp] += 1
        if g == p:
            correct[tg] += 1
        elif tg == tp:
            wrong_dir[tg] += 1
    per_type: dict[str, dict[str, Any]] = {}
    for t in sorted(gold_types):
        prec = correct[t] / proposed[t] if proposed[t] else 0.0
        rec = correct[t] / gold_types[t] if gold_types[t] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_type[t] = {"precision": prec, "recall": rec, "f1": f1, "correct": correct[t],
                       "wrong_direction": wrong_dir[t], "proposed": proposed[t], "support": gold_types[t]}
    rel = [t for t in per_type if t != negative]
    macro = {k: float(np.mean([per_type[t][k] for t in rel])) if rel else 0.0 for k in ("precision", "recall", "f1")}
    c = sum(correct[t] for t in rel)
    p_n = sum(proposed[t] for t in rel)
    g_n = sum(gold_types[t] for t in rel)
    mp, mr = (c / p_n if p_n else 0.0), (c / g_n if g_n else 0.0)
    micro = {"precision": mp, "recall": mr, "f1": 2 * mp * mr / (mp + mr) if mp + mr else 0.0}
    return {"macro": macro, "micro": micro, "per_type": per_type}


def micro_scores(gold: list[str], pred: list[str], negative: str) -> dict[str, float]:
    """Micro P/R/F1 over exact (directed) labels, leaving out the negative label (TACRED style)."""
    correct = sum(1 for g, p in zip(gold, pred) if g == p and g != negative)
    proposed = sum(1 for p in pred if p != negative)
    actual = sum(1 for g in gold if g != negative)
    prec = correct / proposed if proposed else 0.0
    rec = correct / actual if actual else 0.0
    return {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}


def relation_scores(gold: list[str], pred: list[str], negative: str = "Other",
                    labels: list[str] | None = None) -> dict[str, Any]:
    """Everything ftkit reports for relation extraction: the official score, micro-F1, accuracy,
    per-type and per-label reports and the confusion matrix (rows true, columns predicted)."""
    official = official_scores(gold, pred, negative)
    micro = micro_scores(gold, pred, negative)
    names = list(labels or []) + sorted((set(gold) | set(pred)) - set(labels or []))
    index = {lab: i for i, lab in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=int)
    for g, p in zip(gold, pred):
        matrix[index[g], index[p]] += 1
    per_label = {}
    for i, lab in enumerate(names):
        tp, proposed, support = int(matrix[i, i]), int(matrix[:, i].sum()), int(matrix[i].sum())
        prec = tp / proposed if proposed else 0.0
        rec = tp / support if support else 0.0
        per_label[lab] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec
                          else 0.0, "support": support}
    return {
        "f1": official["macro"]["f1"],
        "precision": official["macro"]["precision"],
        "recall": official["macro"]["recall"],
        "micro_f1": micro["f1"],
        "micro_precision": micro["precision"],
        "micro_recall": micro["recall"],
        "accuracy": float(np.trace(matrix) / len(gold)) if gold else 0.0,
        "examples": len(gold),
        "negative_label": negative,
        "per_type": official["per_type"],
        "per_label": per_label,
        "confusion_matrix": {"labels": names, "rows": "true", "columns": "predicted", "matrix": matrix.tolist()},
    }


class Semeval2010Task8(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Hendrickx et al. 2010, SemEval-2010 Task 8",
            inputs_description="predictions, references: lists of directed relation labels",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, negative_label: str = "Other", labels=None):
        return relation_scores(list(references), list(predictions), negative_label, labels)
