"""Real pretrained weights on real data: MiniLM learns NER from the bundled CoNLL sample,
and `ftkit eval` agrees with seqeval recomputed on the exported folder by plain transformers."""

import json
import os
import subprocess
import sys

import pytest
from conftest import SAMPLES

pytestmark = pytest.mark.slow


def _ftkit(*args, stdin=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "ftkit", *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("minilm")
    run = root / "run"
    r = _ftkit("finetune", "--task", "ner", "--output", str(run), "--epochs", "2", "--seed", "7", "--batch-size", "8",
               "--set", "data.max_train_examples=500", "--set", "training.learning_rate=1e-4")
    assert r.returncode == 0, r.stderr[-3000:]
    export = root / "export"
    r = _ftkit("export", str(run), "--output", str(export))
    assert r.returncode == 0, r.stderr[-2000:]
    return run, export


def _read_conll(path):
    """A deliberately separate, minimal reader (IOB1 tags kept as they are)."""
    sents, cur = [], []
    for line in path.read_text().splitlines():
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if cur:
                sents.append(cur)
            cur = []
            continue
        cur.append((cols[0], cols[-1]))
    if cur:
        sents.append(cur)
    return sents


def test_eval_json_matches_seqeval_on_the_exported_model(trained):
    import torch
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    run, export = trained
    r = _ftkit("eval", str(run), "--split", "test", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads(r.stdout)  # stdout is exactly one JSON object
    assert {"precision", "recall", "f1", "accuracy", "per_label"} <= set(metrics)
    assert (run / "eval_test.json").exists()
    # real learning: an untrained head scores ~0 entity F1
    assert metrics["f1"] > 0.5, metrics

    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForTokenClassification.from_pretrained(export).eval()
    gold, pred = [], []
    for sent in _read_conll(SAMPLES / "test.txt"):
        words = [w for w, _ in sent]
        enc = tok(words, is_split_into_words=True, return_tensors="pt", truncation=True)
        with torch.no_grad():
            ids = model(**enc).logits[0].argmax(-1).tolist()
        tags, seen = ["O"] * len(words), set()
        for pos, w in enumerate(enc.word_ids()):
            if w is not None and w not in seen:
                seen.add(w)
                tags[w] = model.config.id2label[ids[pos]]
        gold.append([t for _, t in sent])  # IOB1: conlleval chunking gives the same entities
        pred.append(tags)
    assert metrics["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-9)
    assert metrics["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-9)
    assert metrics["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-9)
    n_tokens = sum(len(s) for s in gold)
    from seqeval.metrics.sequence_labeling import get_entities
    assert metrics["per_label"]["PER"]["support"] == sum(1 for s in gold for e in get_entities(s) if e[0] == "PER")
    assert 0.9 < metrics["accuracy"] <= 1.0 and n_tokens == 4390


def test_export_folder_contents_and_pipeline(trained):
    from transformers import pipeline

    run, export = trained
    names = {p.name for p in export.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "recipe.yaml", "ftkit.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    card = (export / "README.md").read_text()
    assert "minilm" in card and "learning_rate" in card and "f1" in card
    cfg = json.loads((export / "config.json").read_text())
    assert cfg["id2label"]["0"] == "O" and "B-PER" in cfg["label2id"]

    nlp = pipeline("token-classification", model=str(export), aggregation_strategy="simple")
    text = "Peter Blackburn met officials of the European Commission in Brussels on Monday ."
    ents = nlp(text)
    assert ents, "the fine-tuned model finds entities"
    for e in ents:
        assert text[e["start"]:e["end"]].strip() != ""
    assert any(e["entity_group"] == "PER" and "Blackburn" in text[e["start"]:e["end"]] for e in ents), ents


def test_predict_outputs_entities_with_character_offsets(trained, tmp_path):
    run, export = trained
    lines = ["Peter Blackburn reported from Brussels on Monday.",
             json.dumps({"text": "Germany 's representative to the European Union , Werner Zwingmann ."}),
             ""]
    r = _ftkit("predict", str(run), "--input", "-", stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr[-2000:]
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(out) == 2
    for rec in out:
        for e in rec["entities"]:
            assert rec["text"][e["start"]:e["end"]] == e["text"]
            assert e["label"] in {"PER", "ORG", "LOC", "MISC"} and 0 < e["score"] <= 1
    assert any(e["label"] == "PER" and e["text"] == "Peter Blackburn" for e in out[0]["entities"]), out[0]
    # the exported folder predicts exactly like the run
    r2 = _ftkit("predict", str(export), "--input", "-", "--output", str(tmp_path / "p.jsonl"),
                stdin="\n".join(lines) + "\n")
    assert r2.returncode == 0
    assert [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()] == out
