"""Corpus BLEU and chrF from sacreBLEU, with their signatures, as an ``evaluate`` metric.

Load it offline from the installed package (no hub download)::

    import evaluate, ftkit.metrics
    mt = evaluate.load(ftkit.metrics.path("sacrebleu_chrf"))
    mt.compute(predictions=["Ein Hund rennt."], references=["Ein Hund rennt."])
    # {'bleu': 100.0, 'chrf': 100.0, 'bleu_signature': 'nrefs:1|case:mixed|eff:no|tok:13a|...', ...}

One reference per hypothesis. Scores are 0-100, as sacreBLEU reports them; ``tokenize`` picks BLEU's
tokenizer (``13a`` by default; ``intl``, ``zh``, ``char``, ``flores200``...).
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
from sacrebleu.metrics import BLEU, CHRF


def bleu_chrf(predictions: list[str], references: list[str], tokenize: str = "13a") -> dict[str, Any]:
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    b = bleu.corpus_score(list(predictions), [list(references)])
    c = chrf.corpus_score(list(predictions), [list(references)])
    return {
        "bleu": float(b.score),
        "chrf": float(c.score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "brevity_penalty": float(b.bp),
        "hyp_length": int(b.sys_len),
        "ref_length": int(b.ref_len),
        "examples": len(references),
    }


class SacrebleuChrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Post 2018 (sacreBLEU); Popovic 2015 (chrF)",
            inputs_description="predictions: hypotheses; references: one reference per hypothesis",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, tokenize: str = "13a"):
        return bleu_chrf(predictions, references, tokenize)
