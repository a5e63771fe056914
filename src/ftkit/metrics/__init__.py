"""ftkit's scorers as ``evaluate`` metric modules that load offline, from the installed package.

=====================  ==============================================================================
name                   what it scores
=====================  ==============================================================================
``seqeval_entities``   NER: entity-level P/R/F1 on words (conlleval rules, seqeval), token accuracy
``semeval2010_task8``  relation extraction: the official SemEval-2010 Task 8 macro-F1 (+ micro, accuracy)
``squad``              extractive QA: official SQuAD v1.1 / v2.0 exact match and F1 (fractions)
``sacrebleu_chrf``     translation: corpus sacreBLEU BLEU and chrF with signatures
=====================  ==============================================================================

ftkit computes its own metrics through these modules, and they work in any training loop::

    import evaluate
    import ftkit.metrics

    squad = evaluate.load(ftkit.metrics.path("squad"))   # a local file: nothing is downloaded
    squad.add_batch(predictions=["Denver Broncos"], references=[["Denver Broncos"]])
    squad.compute()

(``evaluate.load("seqeval")`` by name fetches the metric's code from the Hugging Face hub, which fails
offline; a local module path does not.) Text classification is scored with scikit-learn directly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

NAMES = ("seqeval_entities", "semeval2010_task8", "squad", "sacrebleu_chrf")


def path(name: str) -> str:
    """The metric module's file, for ``evaluate.load``."""
    if name not in NAMES:
        raise ValueError(f"unknown ftkit metric {name!r}; one of {', '.join(NAMES)}")
    return str(Path(__file__).with_name(f"{name}.py"))


@lru_cache(maxsize=None)
def load(name: str):
    """``evaluate.load`` of an ftkit metric module (in memory: no cache files), once per process."""
    import evaluate

    return evaluate.load(path(name), keep_in_memory=True)


def compute(name: str, **kwargs):
    """``load(name).compute(**kwargs)``: the scores of one metric."""
    return load(name).compute(**kwargs)
