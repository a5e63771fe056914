"""ftkit's scorers as `evaluate` metric modules: they load offline from the installed package, compute
what the libraries they wrap compute, and are the path the tasks score through."""

import os

import pytest

import ftkit.metrics


def _load(name):
    import evaluate

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # a local module path needs no hub
    return evaluate.load(ftkit.metrics.path(name))


def test_seqeval_entities_equals_seqeval():
    from seqeval.metrics import f1_score, precision_score, recall_score

    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"], ["O", "B-MISC", "I-MISC"]]
    preds = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"], ["O", "B-MISC", "O"]]
    metric = _load("seqeval_entities")
    for p, r in zip(preds, refs):  # the usual evaluation-loop use: batches, then compute
        metric.add_batch(predictions=[p], references=[r])
    m = metric.compute()
    assert m["f1"] == pytest.approx(f1_score(refs, preds)) == pytest.approx(2 * (2 / 4) * (2 / 4) / 1.0)
    assert (m["precision"], m["recall"]) == (pytest.approx(precision_score(refs, preds)),
                                             pytest.approx(recall_score(refs, preds)))
    assert m["per_label"]["PER"]["f1"] == 1.0 and m["per_label"]["LOC"]["support"] == 1
    assert m["accuracy"] == pytest.approx(7 / 9)


def test_sacrebleu_chrf_equals_sacrebleu():
    import sacrebleu

    hyps, refs = ["Ein Hund rennt im Park.", "Zwei Katzen."], ["Ein Hund läuft im Park.", "Zwei Katzen schlafen."]
    m = _load("sacrebleu_chrf").compute(predictions=hyps, references=refs)
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert m["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert _load("sacrebleu_chrf").compute(predictions=hyps, references=refs, tokenize="char")["bleu_signature"] \
        .count("tok:char") == 1


def test_squad_v1_and_v2_by_hand():
    squad = _load("squad")
    m = squad.compute(predictions=["the denver broncos.", "in 1889"], references=[["Denver Broncos"], ["1889"]])
    assert m["exact_match"] == pytest.approx(0.5) and m["f1"] == pytest.approx((1 + 2 / 3) / 2)
    m = squad.compute(predictions=["", "Paris"], references=[[], ["Paris"]], version_2_with_negative=True)
    assert m["exact_match"] == 1.0 and m["no_ans_total"] == 1 and m["has_ans_total"] == 1


def test_semeval2010_official_score_by_hand():
    gold = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other", "Message-Topic(e1,e2)"]
    pred = ["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", "Message-Topic(e1,e2)", "Message-Topic(e1,e2)"]
    m = _load("semeval2010_task8").compute(predictions=pred, references=gold)
    # Cause-Effect: 1 correct of 2 proposed, 2 gold -> P=R=F1=1/2; Message-Topic: 1 of 2 proposed, 1 gold -> 2/3
    assert m["f1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["per_type"]["Cause-Effect"]["wrong_direction"] == 1 and m["accuracy"] == pytest.approx(0.5)


def test_tasks_score_through_the_metric_modules(monkeypatch):
    """The task's score is what the evaluate module computes: replace the module, and the task's score changes."""
    from datasets import Dataset
    from conftest import facts

    from ftkit.tasks.ner import NerTask

    calls = []
    real = ftkit.metrics.compute

    def spy(name, **kwargs):
        calls.append(name)
        return real(name, **kwargs)

    monkeypatch.setattr(ftkit.metrics, "compute", spy)
    task = NerTask()
    ex = Dataset.from_list([{"tokens": ["Bob", "runs"], "tags": ["B-PER", "O"], "source": "x"}])
    m = task.score(ex, [[("B-PER", 0.9), ("O", 0.9)]], facts(task, ["O", "B-PER", "I-PER"]))
    assert calls == ["seqeval_entities"] and m["f1"] == 1.0


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="unknown ftkit metric 'bleu'"):
        ftkit.metrics.path("bleu")
