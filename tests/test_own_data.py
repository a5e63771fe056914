"""`ftkit finetune --task T --train MY_FILE`, as a new user types it, for every task and every format the
README lists: the task's general defaults apply (never the demo's label names, line formats, language
pair or article splits), and the run reports the label set and the task's metric keys.

Each run is a tiny random checkpoint trained for one step, through the real CLI (typer's runner).
"""

import csv
import json

from conftest import write
from typer.testing import CliRunner

from ftkit.cli import app

METRIC_KEYS = {
    "ner": {"precision", "recall", "f1", "accuracy", "per_label"},
    "classification": {"accuracy", "precision", "recall", "f1", "micro_f1", "per_label", "confusion_matrix"},
    "multi_label": {"subset_accuracy", "f1", "micro_f1", "hamming_loss", "per_label"},
    "relation": {"f1", "precision", "recall", "micro_f1", "accuracy", "per_type", "confusion_matrix"},
    "qa": {"exact_match", "f1", "examples"},
    "translation": {"bleu", "chrf", "bleu_signature", "chrf_signature"},
}


def _table(path, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()} for r in rows)
    return path


def _formats(tmp_path, rows, stem, table=True):
    """The same records as JSONL, CSV, TSV, Parquet and a datasets folder."""
    from datasets import Dataset

    out = {"jsonl": write(tmp_path / f"{stem}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))}
    if table:
        out["csv"] = _table(tmp_path / f"{stem}.csv", rows)
        out["tsv"] = _table(tmp_path / f"{stem}.tsv", rows, "\t")
    Dataset.from_list(rows).to_parquet(str(tmp_path / f"{stem}.parquet"))
    out["parquet"] = tmp_path / f"{stem}.parquet"
    Dataset.from_list(rows).save_to_disk(str(tmp_path / f"{stem}_ds"))
    out["datasets"] = tmp_path / f"{stem}_ds"
    return out


def _finetune(task, model, train, tmp_path, *extra):
    run = tmp_path / f"run-{train.name}"
    r = CliRunner().invoke(app, ["finetune", "--task", task, "--model", str(model), "--train", str(train),
                                 "--test", str(train), "--output", str(run), "--max-steps", "1", "--batch-size", "4",
                                 *map(str, extra)])
    assert r.exit_code == 0, r.output
    assert "command line (the task's general defaults)" in r.stderr  # not the demo recipe
    meta = json.loads((run / "run.json").read_text())
    return meta, meta["metrics"]["test"]


def _samples(tmp_path, rows, stem):
    return _formats(tmp_path, rows, stem)


# ---------------------------------------------------------------------------


def test_classification_own_data_every_format(tiny_models, tmp_path):
    words = {"pos": "great", "neg": "awful"}
    rows = [{"text": f"the film was {words[lab]} {i}", "label": lab} for i, lab in enumerate(["pos", "neg"] * 4)]
    for fmt, path in _formats(tmp_path, rows, "str").items():
        meta, m = _finetune("classification", tiny_models("bert"), path, tmp_path)
        assert meta["labels"] == ["neg", "pos"], fmt  # the file's own labels, not negative/positive
        assert METRIC_KEYS["classification"] <= set(m) and m["examples"] == 8, fmt
    ints = [{"text": r["text"], "label": int(r["label"] == "pos")} for r in rows]
    for fmt in ("jsonl", "csv", "parquet"):
        meta, _ = _finetune("classification", tiny_models("bert"), _formats(tmp_path, ints, "int")[fmt], tmp_path)
        assert meta["labels"] == ["0", "1"], fmt
    pairs = [{"premise": r["text"], "hypothesis": "so it was", "gold": r["label"]} for r in rows]
    meta, m = _finetune("classification", tiny_models("bert"), _formats(tmp_path, pairs, "pair")["tsv"], tmp_path,
                        "--set", "task_options.text_column=premise", "--set", "task_options.text_pair_column=hypothesis",
                        "--set", "task_options.label_column=gold")
    assert meta["labels"] == ["neg", "pos"] and METRIC_KEYS["classification"] <= set(m)
    multi = [{"text": f"news {i}", "label": [["sport"], ["politics"], ["sport", "politics"], []][i % 4]}
             for i in range(8)]
    meta, m = _finetune("classification", tiny_models("bert"), _formats(tmp_path, multi, "multi")["jsonl"], tmp_path,
                        "--set", "task_options.multi_label=true")
    assert meta["labels"] == ["politics", "sport"] and METRIC_KEYS["multi_label"] <= set(m)
    # plain '<label> <text>' lines need their line format named: the demo's is never assumed
    lines = write(tmp_path / "train.txt", "".join(f"{int(r['label'] == 'pos')} {r['text']}\n" for r in rows))
    r = CliRunner().invoke(app, ["finetune", "--task", "classification", "--train", str(lines), "--output",
                                 str(tmp_path / "no")])
    assert r.exit_code == 2 and "set task_options.line_format=label_text" in r.stderr
    meta, _ = _finetune("classification", tiny_models("bert"), lines, tmp_path, "--set",
                        "task_options.line_format=label_text")
    assert meta["labels"] == ["0", "1"]


def test_ner_own_data_every_format(tiny_models, tmp_path):
    sents = [(["Paris", "is", "big"], ["B-LOC", "O", "O"]), (["Bob", "Smith", "runs"], ["B-PER", "I-PER", "O"])] * 3
    conll = write(tmp_path / "train.conll", "\n\n".join("\n".join(f"{w} {t}" for w, t in zip(*s)) for s in sents) + "\n")
    files = {"conll": conll, **_formats(tmp_path, [{"tokens": w, "tags": t} for w, t in sents], "ner", table=False)}
    files["csv"] = _table(tmp_path / "ner.csv", [{"tokens": " ".join(w), "tags": " ".join(t)} for w, t in sents])
    for fmt, path in files.items():
        meta, m = _finetune("ner", tiny_models("bert"), path, tmp_path)
        assert meta["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], fmt
        assert METRIC_KEYS["ner"] <= set(m) and m["examples"] == 6, fmt


def test_relation_own_data_every_format(tiny_models, tmp_path):
    semeval = "".join(f'{i}\t"The <e1>cat</e1> sat on the <e2>mat</e2> {i}."\r\n{lab}\r\nComment:\r\n\r\n'
                      for i, lab in enumerate(["Other", "Entity-Destination(e1,e2)"] * 3, 1))
    spans = [{"text": f"Bill founded Acme {i}", "head": {"start": 13, "end": 17, "type": "ORG"},
              "tail": {"start": 0, "end": 4, "type": "PER"}, "label": lab}
             for i, lab in enumerate(["org:founded_by", "no_relation"] * 3)]
    files = {"semeval": write(tmp_path / "train.txt", semeval), **_formats(tmp_path, spans, "rel", table=False)}
    files["csv"] = _table(tmp_path / "rel.csv", [{"text": f"The <e1>cat</e1> saw a <e2>dog</e2> {i}.",
                                                  "label": ["Other", "Cause-Effect(e2,e1)"][i % 2]} for i in range(6)])
    for fmt, path in files.items():
        extra = [] if fmt in ("semeval", "csv") else ["--set", "task_options.negative_label=no_relation"]
        meta, m = _finetune("relation", tiny_models("bert"), path, tmp_path, *extra)
        expected = {"semeval": ["Other", "Entity-Destination(e1,e2)", "Entity-Destination(e2,e1)"],
                    "csv": ["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"]}.get(
            fmt, ["no_relation", "org:founded_by"])
        assert meta["labels"] == expected, fmt
        assert METRIC_KEYS["relation"] <= set(m), fmt


def test_qa_own_data_every_format(tiny_models, tmp_path):
    ctx = "Paris is the capital of France. The Eiffel Tower was built in 1889."
    flat = [{"id": f"q{i}", "title": "France", "question": q, "context": ctx,
             "answers": {"text": [a], "answer_start": [ctx.index(a)]}}
            for i, (q, a) in enumerate([("What is the capital?", "Paris"), ("When was it built?", "1889")] * 2)]
    squad = {"version": "1.1", "data": [{"title": "France", "paragraphs": [{"context": ctx, "qas": [
        {"id": r["id"], "question": r["question"],
         "answers": [{"text": r["answers"]["text"][0], "answer_start": r["answers"]["answer_start"][0]}]}
        for r in flat]}]}]}
    files = {"squad": write(tmp_path / "train.json", json.dumps(squad)), **_formats(tmp_path, flat, "qa", table=False)}
    for fmt, path in files.items():
        meta, m = _finetune("qa", tiny_models("bert"), path, tmp_path, "--set", "training.max_length=64")
        assert meta["labels"] == ["start", "end"] and METRIC_KEYS["qa"] <= set(m) and m["examples"] == 4, fmt


def test_translation_own_data_and_language_flags(tiny_models, tmp_path):
    pairs = [("a dog", "un chien"), ("a cat", "un chat"), ("the sun", "le soleil"), ("a house", "une maison")]
    write(tmp_path / "train.en", "".join(a + "\n" for a, _ in pairs))
    write(tmp_path / "train.fr", "".join(b + "\n" for _, b in pairs))
    fast = ["--set", "task_options.num_beams=1", "--set", "task_options.max_new_tokens=4"]
    meta, m = _finetune("translation", tiny_models("t5"), tmp_path / "train", tmp_path, "--source-lang", "en",
                        "--target-lang", "fr", *fast)
    assert METRIC_KEYS["translation"] <= set(m) and m["examples"] == 4
    assert json.loads((tmp_path / "run-train" / "model" / "ftkit.json").read_text())["prompt"]["prefix"] == \
        "translate English to French: "
    # without the flags the general default pair en->de is looked for, and the error says how to choose
    r = CliRunner().invoke(app, ["finetune", "--task", "translation", "--train", str(tmp_path / "train"),
                                 "--output", str(tmp_path / "no")])
    assert r.exit_code == 2 and "train.de" in r.stderr
    rows = [{"source": a, "target": b} for a, b in pairs]
    for fmt, path in _formats(tmp_path, rows, "tr").items():
        _, m = _finetune("translation", tiny_models("t5"), path, tmp_path, *fast)
        assert METRIC_KEYS["translation"] <= set(m), fmt
    nested = write(tmp_path / "nested.jsonl", "".join(json.dumps({"translation": {"en": a, "fr": b}}) + "\n"
                                                       for a, b in pairs))
    _, m = _finetune("translation", tiny_models("t5"), nested, tmp_path, "--source-lang", "en", "--target-lang", "fr",
                     *fast)
    assert m["examples"] == 4
