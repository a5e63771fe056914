"""SQuAD v1.1 / v2.0 exact match and F1 as the official scripts compute them, as an ``evaluate`` metric.

Load it offline from the installed package (no hub download)::

    import evaluate, ftkit.metrics
    squad = evaluate.load(ftkit.metrics.path("squad"))
    squad.compute(predictions=["Denver Broncos"], references=[["Denver Broncos", "The Broncos"]])
    # {'exact_match': 1.0, 'f1': 1.0, 'examples': 1}

``predictions``: one answer string per question ("" for no answer); ``references``: the gold answers of
each question (an empty list for an unanswerable SQuAD 2.0 question); ``version_2_with_negative``
switches to the v2.0 rules and adds ``has_ans_*`` / ``no_ans_*``. Scores are fractions (0-1), not
percentages. Follows ``evaluate-v1.1.py`` and ``evaluate-v2.0.py``: answers are normalised (lower case,
no punctuation, no articles a/an/the, single spaces) and the max over the gold answers counts.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

import datasets
import evaluate


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (SQuAD's own rules)."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s, flags=re.UNICODE)
    return " ".join(s.split())


def _token_f1(pred: list[str], gold: list[str]) -> float:
    """Bag-of-tokens F1, the core shared by the v1.1 and v2.0 official scripts."""
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1_v1(prediction: str, ground_truth: str) -> float:
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def exact_v1(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def _tokens_v2(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def f1_v2(gold: str, pred: str) -> float:
    # v2.0: an empty answer on either side scores 1 only when both are empty
    g, p = _tokens_v2(gold), _tokens_v2(pred)
    if not g or not p:
        return float(g == p)
    return _token_f1(p, g)


def exact_v2(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def squad_scores(golds: list[list[str]], preds: list[str], version_2: bool) -> dict[str, Any]:
    """EM and F1 (max over the gold answers), as the official v1.1 / v2.0 scripts compute them."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} questions but {len(preds)} predictions")
    em, f1, has_ans = [], [], []
    for gold, pred in zip(golds, preds):
        if not version_2:
            em.append(max(exact_v1(pred, g) for g in gold))
            f1.append(max(f1_v1(pred, g) for g in gold))
            has_ans.append(True)
        else:
            answers = [g for g in gold if normalize_answer(g)] or [""]
            em.append(max(exact_v2(g, pred) for g in answers))
            f1.append(max(f1_v2(g, pred) for g in answers))
            has_ans.append(bool(gold))
    n = len(preds)
    out: dict[str, Any] = {"exact_match": sum(em) / n if n else 0.0, "f1": sum(f1) / n if n else 0.0, "examples": n}
    if version_2:
        for name, want in (("has_ans", True), ("no_ans", False)):
            idx = [i for i, h in enumerate(has_ans) if h == want]
            if idx:  # like the official script: a part with no questions is left out
                out[f"{name}_exact_match"] = sum(em[i] for i in idx) / len(idx)
                out[f"{name}_f1"] = sum(f1[i] for i in idx) / len(idx)
                out[f"{name}_total"] = len(idx)
    return out


class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Rajpurkar et al. 2016 (v1.1), 2018 (v2.0)",
            inputs_description="predictions: list of answer strings; references: list of lists of gold answers",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references, version_2_with_negative: bool = False):
        return squad_scores([list(r) for r in references], list(predictions), version_2_with_negative)
