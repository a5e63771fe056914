"""Relation extraction: SemEval/JSONL readers, the official SemEval-2010 Task 8 score, every family
end to end (finetune -> eval -> export -> plain transformers -> predict) and bad input via the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, facts, write

from ftkit.errors import FtkitError
from ftkit.metrics.semeval2010_task8 import micro_scores, official_scores
from ftkit.tasks.relation import RelationTask, fit_window, parse_marked, render_marked

SEMEVAL = REPO / "src" / "ftkit" / "samples" / "semeval2010"




def semeval(*records: tuple[str, str, str | None]) -> str:
    """SemEval release text (CRLF) from (id, sentence, label) triples; label None omits the line."""
    out = []
    for rid, sentence, label in records:
        out.append(f'{rid}\t"{sentence}"')
        if label is not None:
            out.append(label)
        out.append("Comment:")
        out.append("")
    return "\r\n".join(out) + "\r\n"


# ---------------------------------------------------------------------------
# the SemEval reader


def test_semeval_crlf_records_become_clean_text_and_char_spans(tmp_path):
    text = (
        '1\t"The system has an arrayed <e1>configuration</e1> of antenna <e2>elements</e2>."\r\n'
        "Component-Whole(e2,e1)\r\n"
        "Comment: Not a collection: there is structure here, organisation.\r\n"
        "\r\n"
        '2\t"A misty <e2>ridge</e2> uprises from the <e1> surge </e1>."\r\n'  # e2 first, spaces inside e1
        "Other\r\n"
        "\r\n"  # no Comment line
        "\r\n"
        '3\t"The <e1>student</e1><e2>association</e2> says "no"."\r\n'  # adjacent entities, inner quotes
        "Member-Collection(e1,e2)\r\n"
        "Comment:\r\n"
    )
    ds = RelationTask().read(str(write(tmp_path / "train.txt", text)), "train")
    assert len(ds) == 3
    a, b, c = ds[0], ds[1], ds[2]
    assert a["text"] == "The system has an arrayed configuration of antenna elements."
    assert a["text"][slice(*a["head"])] == "configuration" and a["text"][slice(*a["tail"])] == "elements"
    assert a["label"] == "Component-Whole(e2,e1)" and a["id"] == "1"
    assert a["source"].endswith("train.txt:1") and b["source"].endswith("train.txt:5")
    assert c["source"].endswith("train.txt:9")
    assert "\r" not in a["text"] + a["label"]
    assert b["text"] == "A misty ridge uprises from the  surge ."
    assert b["text"][slice(*b["head"])] == "surge" and b["text"][slice(*b["tail"])] == "ridge"
    assert b["tail"][0] < b["head"][0]
    assert c["text"] == 'The studentassociation says "no".'
    assert (c["head"], c["tail"]) == ([4, 11], [11, 22])
    # rendering the spans gives back the release's notation
    assert render_marked(a["text"], a["head"], a["tail"]) == \
        "The system has an arrayed <e1>configuration</e1> of antenna <e2>elements</e2>."
    assert render_marked(c["text"], c["head"], c["tail"]) == 'The <e1>student</e1><e2>association</e2> says "no".'


def test_bundled_sample_is_the_release_format_unchanged():
    raw = (SEMEVAL / "train.txt").read_bytes()
    assert raw.count(b"\r\n") == 2400 and b"\n" not in raw.replace(b"\r\n", b"")
    full = Path("/work/shared/data/semeval2010_task8/TRAIN_FILE.TXT")
    if full.exists():
        assert full.read_bytes().startswith(raw)
    task = RelationTask()
    train, test = task.read(str(SEMEVAL / "train.txt"), "train"), task.read(str(SEMEVAL / "test.txt"), "test")
    assert (len(train), len(test)) == (600, 300)
    labels = task.labels(train)
    assert len(labels) == 19 and labels[0] == "Other"
    # Entity-Destination(e2,e1) never occurs in the sample, but directions come in pairs
    assert "Entity-Destination(e2,e1)" not in set(train["label"]) and "Entity-Destination(e2,e1)" in labels
    task.check_labels(test, labels, "test")


def test_demo_recipe_splits(tmp_path):
    from ftkit.config import resolve
    from ftkit.engine.splits import read_splits

    cfg, _ = resolve("relation", None, {}, [])
    assert cfg.model == "minilm" and cfg.data.validation_fraction == 0.1
    _, splits, _ = read_splits(RelationTask(), cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 540, "validation": 60, "test": 300}


BAD_SEMEVAL = {
    # name: (file text, expected fragment, expected line)
    "no markers": (semeval(("1", "A plain sentence.", "Other")), "no entity markers", 1),
    "unbalanced": (semeval(("1", "ok <e1>a</e1> <e2>b</e2>", "Other"), ("2", "The <e1>a and <e2>b</e2>.", "Other")),
                   "</e1> is missing", 5),
    "closing first": (semeval(("7", "The </e1>a<e1> and <e2>b</e2>.", "Other")), "</e1> comes before <e1>", 1),
    "duplicated": (semeval(("1", "<e1>a</e1> <e1>b</e1> <e2>c</e2>", "Other")), "duplicated marker <e1>", 1),
    "nested": (semeval(("1", "<e1>a <e2>b</e2> c</e1> d", "Other")), "overlap", 1),
    "crossed": (semeval(("1", "<e1>a <e2>b</e1> c</e2> d", "Other")), "overlap", 1),
    "empty entity": (semeval(("1", "<e1> </e1> and <e2>b</e2>", "Other")), "entity is empty", 1),
    "empty text": (semeval(("1", "", "Other")), "empty text", 1),
    "no second entity": (semeval(("1", "<e1>a</e1> and b", "Other")), "no <e2>..</e2> markers", 1),
    "missing label": (semeval(("1", "<e1>a</e1> <e2>b</e2>", "Other"), ("2", "<e1>c</e1> <e2>d</e2>", None)),
                      "sentence 2 has no label line", 5),
    "label at end of file": ('1\t"<e1>a</e1> <e2>b</e2>"\r\n', "has no label line", 1),
    "bad direction": (semeval(("1", "<e1>a</e1> <e2>b</e2>", "Cause-Effect(e1,e3)")), "invalid relation label", 2),
    "stray line": ('1\t"<e1>a</e1> <e2>b</e2>"\r\nOther\r\nComment:\r\nsomething else\r\n', "unexpected line", 4),
    "no sentence": ("Other\r\n", "a label line without a sentence", 1),
}


@pytest.mark.parametrize("name", list(BAD_SEMEVAL))
def test_bad_semeval_input_names_file_and_line(tmp_path, name):
    text, fragment, line = BAD_SEMEVAL[name]
    path = write(tmp_path / "data.txt", text)
    with pytest.raises(FtkitError) as err:
        RelationTask().read(str(path), "train")
    msg = err.value.one_line()
    assert fragment in msg
    assert f"{path}:{line}:" in msg


# ---------------------------------------------------------------------------
# JSONL with char spans (TACRED style) or inline markers


def test_jsonl_spans_types_and_markers(tmp_path):
    rows = [
        {"text": "Bill Gates founded Microsoft.", "head": {"start": 0, "end": 10, "type": "PERSON"},
         "tail": {"start": 19, "end": 28, "type": "ORG"}, "label": "org:founded_by"},
        {"text": "Paris is in France.", "head": [12, 18], "tail": [0, 5], "label": "no_relation"},
        {"text": "The <e1>cup</e1> holds <e2>tea</e2>.", "label": "no_relation", "id": 7},
    ]
    path = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    task = RelationTask(RelationTask.Options(negative_label="no_relation"))
    ds = task.read(str(path), "train")
    assert ds[0]["head_type"] == "PERSON" and ds[0]["text"][slice(*ds[0]["tail"])] == "Microsoft"
    assert ds[1]["text"][slice(*ds[1]["head"])] == "France" and ds[1]["source"].endswith("train.jsonl:2")
    assert ds[2]["text"] == "The cup holds tea." and ds[2]["id"] == "7"
    assert task.labels(ds) == ["no_relation", "org:founded_by"]
    # types are rendered inside the markers (option entity_types)
    assert render_marked(ds[0]["text"], ds[0]["head"], ds[0]["tail"], "PERSON", "ORG") == \
        "<e1>PERSON: Bill Gates</e1> founded <e2>ORG: Microsoft</e2>."
    assert render_marked(ds[1]["text"], ds[1]["head"], ds[1]["tail"]) == "<e2>Paris</e2> is in <e1>France</e1>."


GOOD = {"text": "Bill met Ann.", "head": {"start": 0, "end": 4}, "tail": {"start": 9, "end": 12}, "label": "x"}
BAD_JSONL = {
    "broken json": ('{oops\n', "invalid JSON", 2),
    "span outside text": (json.dumps({**GOOD, "tail": {"start": 9, "end": 40}}), "outside the text", 2),
    "negative span": (json.dumps({**GOOD, "head": {"start": -1, "end": 4}}), "outside the text", 2),
    "overlapping spans": (json.dumps({**GOOD, "tail": {"start": 2, "end": 8}}), "overlap", 2),
    "markers and spans": (json.dumps({**GOOD, "text": "<e1>Bill</e1> met <e2>Ann</e2>."}), "both", 2),
    "only head": (json.dumps({k: v for k, v in GOOD.items() if k != "tail"}), "'tail' is missing", 2),
    "no entities": (json.dumps({"text": "Bill met Ann.", "label": "x"}), "no entity markers", 2),
    "empty text": (json.dumps({**GOOD, "text": "  "}), "empty text", 2),
    "missing label": (json.dumps({k: v for k, v in GOOD.items() if k != "label"}), "missing field 'label'", 2),
    "float offsets": (json.dumps({**GOOD, "head": {"start": 0.0, "end": 4}}), "must be integers", 2),
}


@pytest.mark.parametrize("name", list(BAD_JSONL))
def test_bad_jsonl_names_file_and_line(tmp_path, name):
    second, fragment, line = BAD_JSONL[name]
    path = write(tmp_path / "data.jsonl", json.dumps(GOOD) + "\n" + second + "\n")
    with pytest.raises(FtkitError) as err:
        RelationTask().read(str(path), "train")
    assert fragment in err.value.one_line() and f"{path}:{line}:" in err.value.one_line()


def test_unknown_label_at_eval_names_the_line(tmp_path):
    task = RelationTask()
    train = task.read(str(write(tmp_path / "train.txt", semeval(("1", "<e1>a</e1> <e2>b</e2>", "Cause-Effect(e1,e2)")))),
                      "train")
    labels = task.labels(train)
    assert labels == ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"]
    dev = task.read(str(write(tmp_path / "dev.txt", semeval(("1", "<e1>a</e1> <e2>b</e2>", "Cause-Effect(e2,e1)"),
                                                             ("2", "<e1>a</e1> <e2>b</e2>", "Other")))), "validation")
    with pytest.raises(FtkitError, match=r"dev.txt:5: relation label 'Other' never occurs"):
        task.check_labels(dev, labels, "dev.txt")


def test_parse_marked_strips_markers_only():
    clean, head, tail = parse_marked("x <e2>B b</e2> y <e1>A</e1>")
    assert clean == "x B b y A" and clean[slice(*head)] == "A" and clean[slice(*tail)] == "B b"
    with pytest.raises(ValueError, match="reserved marker"):
        from ftkit.tasks.relation import check_spans

        check_spans("a <e1> b", (0, 1), (7, 8))


# ---------------------------------------------------------------------------
# the official SemEval-2010 Task 8 score, on hand-computed cases


CE12, CE21, CW12 = "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Component-Whole(e1,e2)"


def test_official_score_wrong_direction_and_other():
    gold = [CE12, CE12, CE21, CW12, "Other", "Other"]
    pred = [CE12, CE21, CE21, "Other", CW12, "Other"]
    s = official_scores(gold, pred)
    ce, cw = s["per_type"]["Cause-Effect"], s["per_type"]["Component-Whole"]
    # Cause-Effect: 2 right (type and direction), 1 wrong direction; 3 predicted, 3 gold
    assert (ce["correct"], ce["wrong_direction"], ce["proposed"], ce["support"]) == (2, 1, 3, 3)
    assert ce["precision"] == pytest.approx(2 / 3) and ce["recall"] == pytest.approx(2 / 3)
    # Component-Whole: its only prediction was on an Other example, its gold example was called Other
    assert (cw["correct"], cw["proposed"], cw["support"], cw["f1"]) == (0, 1, 1, 0.0)
    # macro over the 2 relation types in the key, Other excluded
    assert s["macro"]["f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert s["macro"]["precision"] == pytest.approx(1 / 3) and s["macro"]["recall"] == pytest.approx(1 / 3)
    assert s["micro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})


def test_official_macro_is_the_mean_of_per_type_f1():
    gold = ["A(e1,e2)", "A(e1,e2)", "B(e1,e2)", "B(e1,e2)"]
    pred = ["A(e1,e2)", "A(e1,e2)", "A(e1,e2)", "B(e1,e2)"]
    s = official_scores(gold, pred)
    # A: P 2/3, R 1, F1 0.8; B: P 1, R 1/2, F1 2/3
    assert s["per_type"]["A"]["f1"] == pytest.approx(0.8) and s["per_type"]["B"]["f1"] == pytest.approx(2 / 3)
    assert s["macro"]["f1"] == pytest.approx((0.8 + 2 / 3) / 2)  # not F1(macro P, macro R) = 0.789
    assert s["macro"]["precision"] == pytest.approx(5 / 6) and s["macro"]["recall"] == pytest.approx(0.75)


def test_official_score_all_directions_wrong_is_zero():
    gold = ["Entity-Origin(e1,e2)", "Entity-Origin(e2,e1)"]
    pred = ["Entity-Origin(e2,e1)", "Entity-Origin(e1,e2)"]
    s = official_scores(gold, pred)
    assert s["macro"]["f1"] == 0.0 and s["per_type"]["Entity-Origin"]["wrong_direction"] == 2
    assert official_scores(gold, gold)["macro"]["f1"] == 1.0


def test_types_absent_from_the_key_are_left_out_like_the_official_scorer():
    gold = ["Message-Topic(e1,e2)", "Message-Topic(e1,e2)", "Other", "Other"]
    pred = ["Message-Topic(e1,e2)", "Message-Topic(e2,e1)", "Product-Producer(e1,e2)", "Other"]
    s = official_scores(gold, pred)
    assert set(s["per_type"]) == {"Message-Topic", "Other"}
    assert s["macro"]["f1"] == pytest.approx(0.5)  # one type in the key: P 1/2, R 1/2
    assert s["micro"]["precision"] == pytest.approx(0.5)
    # the TACRED-style micro counts every non-negative prediction
    m = micro_scores(gold, pred, "Other")
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.4)


def test_task_score_with_tacred_negative_label():
    from datasets import Dataset

    gold = ["per:title", "org:founded", "no_relation", "no_relation"]
    pred = ["per:title", "no_relation", "per:title", "no_relation"]
    task = RelationTask(RelationTask.Options(negative_label="no_relation"))
    labels = ["no_relation", "org:founded", "per:title"]
    m = task.score(Dataset.from_dict({"label": gold}), [(p, {}) for p in pred], facts(task, labels))
    assert m["micro_f1"] == pytest.approx(0.5) and m["accuracy"] == pytest.approx(0.5)
    # per:title P 1/2 R 1 F1 2/3; org:founded 0 -> official macro 1/3
    assert m["f1"] == pytest.approx(1 / 3)
    assert m["per_label"]["per:title"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["confusion_matrix"]["labels"] == labels
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 1], [1, 0, 0], [0, 0, 1]]
    assert "per:title" in task.format_table(m)


# ---------------------------------------------------------------------------
# windows over long inputs


def test_long_inputs_keep_both_entity_starts(tiny_models):
    from transformers import AutoTokenizer

    from ftkit.tasks.relation import add_markers

    tok = AutoTokenizer.from_pretrained(tiny_models("bert"))
    e1, e2 = add_markers(tok)
    assert add_markers(tok) == [e1, e2]  # idempotent
    near = "word " * 80 + "<e1>Peter</e1> visited <e2>Berlin</e2>" + " again" * 60
    far = "<e1>Peter</e1>" + " went on and on" * 40 + " to <e2>Berlin</e2> and" + " then" * 30
    for text in (near, far):
        enc = fit_window(tok, text, 32)
        ids = enc["input_ids"]
        assert len(ids) <= 32 and e1 in ids and e2 in ids
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


# ---------------------------------------------------------------------------
# every family end to end


def _short_records(n: int) -> list[bytes]:
    """The first ``n`` sample records whose sentence fits the tiny models' 128-token window."""
    recs = (SEMEVAL / "train.txt").read_bytes().split(b"\r\n\r\n")
    return [r for r in recs if r.strip() and len(r.split(b"\r\n")[0]) <= 105][:n]


def _marked(path: Path) -> tuple[list[str], list[str]]:
    """(marked sentences, gold labels) read straight from a SemEval file, without ftkit."""
    texts, gold = [], []
    for rec in path.read_text().replace("\r\n", "\n").strip().split("\n\n"):
        lines = rec.split("\n")
        texts.append(lines[0].split("\t", 1)[1].strip()[1:-1])
        gold.append(lines[1].strip())
    return texts, gold


@pytest.mark.parametrize("family,pooling", [("bert", "entity_start"), ("bert", "cls"), ("gpt2", "auto"),
                                            ("t5", "auto")])
def test_family_trains_evaluates_exports_and_predicts(family, pooling, tiny_models, tmp_path):
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer
    from typer.testing import CliRunner

    from ftkit.cli import app
    from ftkit.config import resolve
    from ftkit.engine.finetune import finetune
    from ftkit.engine.inference import evaluate_run
    from ftkit.export import export_run

    data = tmp_path / "train.txt"
    data.write_bytes(b"\r\n\r\n".join(_short_records(32)) + b"\r\n\r\n")
    flags = {"model": str(tiny_models(family)), "data.train": str(data), "data.validation": str(data),
             "data.test": str(data), "training.batch_size": 8,
             "training.learning_rate": 5e-3, "training.logging_steps": 2, "training.save_total_limit": 1,
             "training.epochs": 8}
    cfg, _ = resolve("relation", None, flags, [f"task_options.pooling={pooling}"])
    run = tmp_path / "run"
    meta = finetune(cfg, run)
    expected = "entity_start" if (family, pooling) == ("bert", "entity_start") else "cls"
    model_meta = json.loads((run / "model" / "ftkit.json").read_text())
    assert model_meta["task_options"]["pooling"] == expected

    # loss falls
    losses = [r["loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) >= 8
    assert np.mean(losses[-3:]) < 0.85 * losses[0], losses

    # eval reproduces the numbers finetune wrote for the same split
    again = evaluate_run(run, "test")
    for k in ("f1", "micro_f1", "accuracy"):
        assert again[k] == pytest.approx(meta["metrics"]["test"][k])

    out = tmp_path / "export"
    export_run(run, out)
    card = (out / "README.md").read_text()
    labels = meta["labels"]

    # the export loads with plain transformers; recompute the scores without ftkit's reader or engine
    texts, gold = _marked(data)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids("<e1>") != tok.unk_token_id
    if expected == "entity_start":
        model = AutoModelForTokenClassification.from_pretrained(out).eval()
        assert type(model).__name__ == "BertForTokenClassification"
        assert model.config.num_labels == 2 * len(labels) and model.config.relation_labels == labels
        assert "entity start" in card.lower() and "AutoModelForTokenClassification" in card
    else:
        model = AutoModelForSequenceClassification.from_pretrained(out).eval()
        assert [model.config.id2label[i] for i in range(len(labels))] == labels
        assert 'pipeline("text-classification"' in card
    e1, e2 = tok.convert_tokens_to_ids("<e1>"), tok.convert_tokens_to_ids("<e2>")
    pred = []
    with torch.no_grad():
        for text in texts:
            enc = tok(text, return_tensors="pt")
            assert enc.input_ids.shape[1] <= model_meta["max_length"]
            logits = model(**enc).logits[0]
            if expected == "entity_start":
                ids = enc.input_ids[0].tolist()
                logits = logits[ids.index(e1), :len(labels)] + logits[ids.index(e2), len(labels):]
            pred.append(labels[int(logits.argmax())])
    assert again["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert again["f1"] == pytest.approx(official_scores(gold, pred)["macro"]["f1"])
    assert again["micro_f1"] == pytest.approx(micro_scores(gold, pred, "Other")["f1"])

    if expected == "cls":
        from transformers import pipeline

        nlp = pipeline("text-classification", model=model, tokenizer=tok)
        assert [r["label"] for r in nlp(texts[:4])] == pred[:4]

    # ftkit predict: marked lines (also as in the release files) and JSONL spans
    inputs = write(tmp_path / "in.txt", "\n".join([
        texts[0],
        f'8001\t"{texts[1]}"',
        json.dumps({"text": "Bill met Ann.", "head": {"start": 0, "end": 4}, "tail": {"start": 9, "end": 12}}),
    ]) + "\n")
    r = CliRunner().invoke(app, ["predict", str(out), "--input", str(inputs)])
    assert r.exit_code == 0, r.output
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["text"] for x in results] == [texts[0], f'8001\t"{texts[1]}"', "Bill met Ann."]
    assert [x["label"] for x in results[:2]] == pred[:2]
    for x in results:
        assert set(x) == {"text", "label", "probabilities"} and list(x["probabilities"]) == labels
        assert sum(x["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert x["label"] == max(x["probabilities"], key=x["probabilities"].get)

    bad = write(tmp_path / "bad.txt", texts[0] + "\nno markers here\n")
    r = CliRunner().invoke(app, ["predict", str(out), "--input", str(bad)])
    assert r.exit_code == 2 and "record 2: no entity markers" in r.output


# ---------------------------------------------------------------------------
# bad input through the command line


def _cli(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ftkit", *args], capture_output=True, text=True, env=env, timeout=300)


CLI_CASES = {
    "missing label line": ({"train.txt": semeval(("1", "<e1>a</e1> <e2>b</e2>", "Other"), ("2", "<e1>c</e1> d", None))},
                           [], "sentence 2 has no label line", "train.txt:5"),
    "broken json": ({"train.jsonl": json.dumps(GOOD) + "\n{oops\n"}, [], "invalid JSON", "train.jsonl:2"),
    "unknown test label": ({"train.txt": semeval(*[(str(i), "<e1>a</e1> <e2>b</e2>", "Other") for i in range(20)]),
                            "test.txt": semeval(("9", "<e1>a</e1> <e2>b</e2>", "Cause-Effect(e1,e2)"))},
                           ["--test", "@test.txt"], "relation label 'Cause-Effect(e1,e2)' never occurs", "test.txt:1"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, name):
    files, extra, fragment, where = CLI_CASES[name]
    for fname, content in files.items():
        write(tmp_path / fname, content)
    train = next(f for f in files if f.startswith("train"))
    extra = [str(tmp_path / a[1:]) if a.startswith("@") else a for a in extra]
    out = tmp_path / "run"
    r = _cli(["finetune", "--task", "relation", "--train", str(tmp_path / train), "--output", str(out), *extra])
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert fragment in errors[0] and where in errors[0], errors[0]
    assert not out.exists()
