"""Each model family goes through the real code path: finetune -> eval -> export -> predict.

Tiny random checkpoints (built and saved like real ones) prove the plumbing; quality is
checked on MiniLM in test_minilm.py.
"""

import json

import pytest
from conftest import SAMPLES

from ftkit.config import resolve
from ftkit.engine.finetune import finetune
from ftkit.engine.inference import evaluate_run, predict_records
from ftkit.export import export_run


def _cfg(model_dir, tmp_path, **training):
    # a small, repetitive training set: enough for a tiny model to visibly learn
    train = tmp_path / "train.txt"
    lines = (SAMPLES / "train.txt").read_text().split("\n\n")[:60]
    train.write_text("\n\n".join(lines) + "\n")
    flags = {"model": str(model_dir), "data.train": str(train), "data.validation": str(train),
             "data.test": str(train), "training.batch_size": 8, "training.learning_rate": 3e-3,
             "training.logging_steps": 2, "training.save_total_limit": 1}
    flags.update({f"training.{k}": v for k, v in training.items()})
    cfg, _ = resolve("ner", None, flags, [])
    return cfg


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "t5"])
def test_family_trains_evaluates_exports_and_predicts(family, tiny_models, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    cfg = _cfg(tiny_models(family), tmp_path, epochs=6)
    run = tmp_path / "run"
    meta = finetune(cfg, run)
    assert meta["family"] == {"bert": "encoder", "roberta": "encoder", "gpt2": "gpt", "t5": "t5"}[family]

    # loss falls
    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) >= 4
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses
    assert (run / "training.png").stat().st_size > 1000
    assert (run / "model" / "model.safetensors").exists()

    # eval reproduces the numbers finetune wrote for the same split
    again = evaluate_run(run, "test")
    assert again["f1"] == pytest.approx(meta["metrics"]["test"]["f1"])
    assert again["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])

    out = tmp_path / "export"
    export_run(run, out)
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.id2label[0] == "O" and set(model.config.label2id) == set(meta["labels"])
    tok = AutoTokenizer.from_pretrained(out)
    text = "EU rejects German call to boycott British lamb ."  # a training sentence: entities are likely
    nlp = pipeline("token-classification", model=model, tokenizer=tok, aggregation_strategy="none")
    tokens = nlp(text)  # every sub-token not tagged O
    assert all(t["entity"] in meta["labels"] for t in tokens)

    preds = predict_records(out, [{"text": text}])
    assert preds[0]["text"] == text
    for ent in preds[0]["entities"]:
        assert text[ent["start"]:ent["end"]] == ent["text"]
        assert ent["label"] in {"PER", "ORG", "LOC", "MISC"} and 0 <= ent["score"] <= 1
    # ftkit reads each word's tag from its first sub-token: the plain pipeline on the export gives the
    # same entity type (or O) at the first sub-token of every word -- an independent path to the same logits
    from ftkit.tasks.ner import split_words

    first = {t["start"] + (text[t["start"]] == " "): t["entity"][2:] for t in tokens}
    in_entity = {}
    for ent in preds[0]["entities"]:
        for _, s, _ in split_words(text[ent["start"]:ent["end"]]):
            in_entity[ent["start"] + s] = ent["label"]
    words = [s for _, s, _ in split_words(text)]
    assert [first.get(s, "O") for s in words] == [in_entity.get(s, "O") for s in words], (tokens, preds)


def test_gpt2_without_pad_token_gets_one(tiny_models):
    from ftkit.families import load_config, load_tokenizer

    info = load_config(str(tiny_models("gpt2")))
    assert info.family == "gpt"
    tok = load_tokenizer(info)
    assert tok.pad_token == tok.eos_token
    # byte-level BPE with pre-split words needs the prefix space: both words align
    enc = tok(["Hello", "world"], is_split_into_words=True)
    assert set(w for w in enc.word_ids() if w is not None) == {0, 1}
