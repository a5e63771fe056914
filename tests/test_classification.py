"""Text classification end to end: readers and their errors, every family through the real
engine, scores recomputed independently with scikit-learn on the exported folder, the
`text-classification` pipeline, long texts in windows, and multi-label data.

Tiny random checkpoints and a tiny synthetic corpus keep the file fast; the keyword in each
text decides its label, so a few dozen steps are enough for the loss to fall.
"""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import facts, write
from typer.testing import CliRunner

from ftkit.cli import app
from ftkit.config import resolve
from ftkit.engine.finetune import finetune
from ftkit.engine.inference import evaluate_run, predict_records
from ftkit.engine.models import load_trained
from ftkit.tasks import make_task
from ftkit.errors import FtkitError
from ftkit.export import export_run
from ftkit.tasks.classification import ClassificationTask

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"

KEYWORDS = {"pos": ["great", "wonderful", "brilliant"], "neg": ["terrible", "boring", "awful"],
            "mid": ["average", "okay", "so-so"]}
FILLER = ["the", "film", "story", "was", "and", "it", "really", "a", "plot", "in", "Paris", "with", "actors"]




def make_rows(n, seed, labels=("pos", "neg", "mid"), fill=2):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lab = labels[i % len(labels)]
        words = rng.sample(FILLER, fill) + [rng.choice(KEYWORDS[lab])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": lab})
    return rows


def write_csv(path, rows, fields=("text", "label"), delimiter=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path, rows):
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def task(**options):
    return make_task("classification", options)


# ---------------------------------------------------------------------------
# readers


ROWS = [{"text": "a fine, warm film", "label": 1}, {"text": "dull and long", "label": 0},
        {"text": "great fun", "label": 1}, {"text": "a mess", "label": 0}]


def test_every_format_reads_the_same_examples(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Value

    files = {
        "csv": write_csv(tmp_path / "d.csv", ROWS),
        "tsv": write_csv(tmp_path / "d.tsv", ROWS, delimiter="\t"),
        "jsonl": write_jsonl(tmp_path / "d.jsonl", ROWS),
        "lines": write(tmp_path / "d.txt", "".join(f"{r['label']} {r['text']}\n" for r in ROWS)),
    }
    Dataset.from_list(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    files["parquet"] = tmp_path / "d.parquet"
    # a datasets folder with ClassLabel integers: read back as their names
    feats = Features({"text": Value("string"), "label": ClassLabel(names=["0", "1"])})
    Dataset.from_list(ROWS, features=feats).save_to_disk(str(tmp_path / "disk"))
    files["disk"] = tmp_path / "disk"

    t = task(line_format="label_text")
    for fmt, path in files.items():
        ds = t.read(str(path), "train")
        assert ds["text"] == [r["text"] for r in ROWS], fmt
        assert ds["label"] == ["1", "0", "1", "0"], fmt  # integer labels are kept as their text
        assert t.labels(ds) == ["0", "1"]
    # line numbers point at the file (CSV: the header is line 1)
    assert t.read(str(files["csv"]), "train")["source"][0] == f"{files['csv']}:2"
    assert t.read(str(files["lines"]), "train")["source"][3] == f"{files['lines']}:4"
    # label_names renames labels and fixes their order (YAML gives integer keys)
    named = task(line_format="label_text", label_names={0: "negative", 1: "positive"})
    ds = named.read(str(files["jsonl"]), "train")
    assert ds["label"][:2] == ["positive", "negative"] and named.labels(ds) == ["negative", "positive"]


def test_data_summary_reports_class_imbalance(tmp_path):
    rows = [{"text": f"t{i}", "label": "pos"} for i in range(10)] + [{"text": f"u{i}", "label": "neg"} for i in range(2)]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    summary = task().data_summary(task().read(str(path), "train"))
    assert summary == {"examples": 12, "labels": {"neg": 2, "pos": 10},
                       "imbalance": {"ratio": 5.0, "largest": "pos", "smallest": "neg"}}
    one = write(tmp_path / "one.jsonl", json.dumps({"text": "x", "label": "pos"}) + "\n")
    assert "imbalance" not in task().data_summary(task().read(str(one), "test"))  # an eval split may hold one class
    multi = write(tmp_path / "m.jsonl", "\n".join(json.dumps({"text": f"t{i}", "label": labs}) for i, labs in
                                                  enumerate([["a", "b"], ["a"], ["a"], ["a"], ["b"], ["a", "c"], ["c"], ["a"]])) + "\n")
    t = task(multi_label=True)
    assert t.data_summary(t.read(str(multi), "train"))["imbalance"] == {"ratio": 3.0, "largest": "a", "smallest": "c"}


def test_text_pairs_and_custom_columns(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "gold": "yes" if i % 2 else "no"} for i in range(4)]
    p = write_csv(tmp_path / "nli.csv", rows, fields=("premise", "hypothesis", "gold"))
    t = task(text_column="premise", text_pair_column="hypothesis", label_column="gold")
    ds = t.read(str(p), "train")
    assert ds["text"][1] == "p1" and ds["text_pair"][1] == "h1" and ds["label"][1] == "yes"


def test_trec_line_formats_and_latin1(tmp_path):
    body = (b"DESC:manner How did serfdom develop in and then leave Russia ?\n"
            b"LOC:city Which city has the oldest relationship as a sister\xf0city with Los Angeles ?\n"
            b"DESC:def What is a fear of parasites ?\nLOC:other Where is the Orinoco ?\n")
    p = tmp_path / "train_5500.label"
    p.write_bytes(body)
    with pytest.raises(FtkitError, match=r"train_5500.label:2: bytes .* not valid utf-8.*latin-1"):
        task(line_format="trec_coarse").read(str(p), "train")
    coarse = task(line_format="trec_coarse")
    ds = coarse.read(str(p), "train", encoding="latin-1")
    assert ds["label"] == ["DESC", "LOC", "DESC", "LOC"]
    assert ds["text"][1] == "Which city has the oldest relationship as a sisterðcity with Los Angeles ?"
    fine = task(line_format="trec_fine", min_examples_per_label=1)
    assert fine.read(str(p), "train", encoding="latin-1")["label"][0] == "DESC:manner"


@pytest.mark.skipif(not (SHARED / "trec" / "train_5500.label").exists(), reason="shared TREC data not present")
def test_real_trec_and_sst2_files():
    cfg, _ = resolve(None, "classification-trec", {"data.train": str(SHARED / "trec" / "train_5500.label")}, [])
    t = make_task(cfg.task, cfg.task_options)
    ds = t.read(cfg.data.train, "train", cfg.data.format, cfg.data.encoding)
    counts = t.data_summary(ds)["labels"]
    assert len(ds) == 5452 and counts == {"ABBR": 86, "DESC": 1162, "ENTY": 1250, "HUM": 1223, "LOC": 835, "NUM": 896}
    cfg, _ = resolve(None, "classification-sst2", {"data.train": str(SHARED / "sst2" / "stsa.binary.dev")}, [])
    t = make_task(cfg.task, cfg.task_options)
    counts = t.data_summary(t.read(cfg.data.train, "train"))["labels"]
    assert counts == {"negative": 428, "positive": 444}


def test_recipes_and_bundled_sample():
    cfg, source = resolve("classification", None, {}, [])
    assert source.endswith("classification-demo.yaml")
    t = make_task(cfg.task, cfg.task_options)
    sizes = {split: len(t.read(getattr(cfg.data, split), split)) for split in ("train", "validation", "test")}
    assert sizes == {"train": 600, "validation": 200, "test": 300}
    for name in ("classification-sst2", "classification-trec"):
        cfg, _ = resolve(None, name, {}, [])
        make_task(cfg.task, cfg.task_options)  # the task options validate
    cfg, _ = resolve(None, "classification-trec", {}, [])
    assert cfg.data.validation_fraction and cfg.data.encoding == "latin-1"


def test_rare_labels_survive_a_validation_fraction_split(tmp_path):
    """The label set is the training file's: a label whose examples all land in the carved-out
    validation part (or beyond max_train_examples) is still known (no spurious 'unknown label' error)."""
    from ftkit.engine.splits import read_splits

    rows = make_rows(30, 0, labels=("pos", "neg")) + [{"text": "so-so", "label": "mid"},
                                                       {"text": "okay", "label": "mid"}]
    p = write_csv(tmp_path / "t.csv", rows)
    t = task()
    cfg, _ = resolve("classification", None, {"data.train": str(p), "data.validation_fraction": 0.25},
                     ["data.validation=null", "data.test=null", "task_options.label_names=null"])
    _, splits, labels = read_splits(t, cfg)
    assert len(splits["validation"]) == 8 and labels == ["mid", "neg", "pos"]
    # the first 30 rows hold no 'mid' at all: the label set still comes from the whole file
    cfg, _ = resolve("classification", None, {"data.train": str(p), "data.validation_fraction": 0.25},
                     ["data.validation=null", "data.test=null", "task_options.label_names=null",
                      "data.max_train_examples=30"])
    _, splits, labels = read_splits(t, cfg)
    assert "mid" not in set(splits["train"]["label"]) | set(splits["validation"]["label"])
    assert labels == ["mid", "neg", "pos"]


def test_score_matches_hand_computed_values():
    from datasets import Dataset

    t = task()
    ex = Dataset.from_dict({"label": ["a", "a", "b", "c"]})
    preds = [{"label": x} for x in ["a", "b", "b", "c"]]
    m = t.score(ex, preds, facts(t, ["a", "b", "c"]))
    assert m["accuracy"] == 0.75
    # per label F1: a 2/3, b 2/3, c 1 -> macro 7/9; weighted (2*2/3 + 2/3 + 1) / 4
    assert m["f1"] == pytest.approx(7 / 9) and m["weighted_f1"] == pytest.approx((4 / 3 + 2 / 3 + 1) / 4)
    assert m["micro_f1"] == 0.75 and m["per_label"]["a"]["support"] == 2
    assert m["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert "confusion matrix" in t.format_table(m)


# ---------------------------------------------------------------------------
# bad input through the CLI: one line, exit 2, file:line, no run folder

NO_EVAL = ["--set", "data.validation=null", "--set", "data.test=null"]
# SST-2 style '<label> <text>' lines with named labels, as the demo recipe reads its sample
SST = [*NO_EVAL, "--set", "task_options.line_format=label_text",
       "--set", "task_options.label_names={0: negative, 1: positive}"]
GOOD_TXT = "1 good film\n0 bad film\n1 great film\n0 awful film\n"

BAD_CASES = {
    # name: (files, extra args, expected fragment, expected location)
    "missing column": ({"train.csv": "sentence,label\nhi,1\nho,0\n"}, NO_EVAL,
                       "missing column 'text' (columns: sentence, label)", "train.csv:2"),
    "null text": ({"train.jsonl": '{"text": "a", "label": 1}\n{"text": null, "label": 0}\n'}, NO_EVAL,
                  "null text in 'text'", "train.jsonl:2"),
    "empty text": ({"train.csv": "text,label\nok,1\n  ,0\n"}, NO_EVAL, "empty text in 'text'", "train.csv:3"),
    "label without text": ({"train.txt": "1 good\n0\n"}, SST, "expected '<label> <text>'", "train.txt:2"),
    "empty label": ({"train.csv": "text,label\nok,1\nbad,\n"}, NO_EVAL, "empty label in 'label'", "train.csv:3"),
    "single-example label": ({"train.txt": "1 a\n1 b\n0 c\n"}, SST,
                             "label(s) with fewer than 2 training examples: 'negative' (1)", "train.txt:3"),
    "one label only": ({"train.txt": "1 a\n1 b\n"}, SST, "single label 'positive'", "train.txt:1"),
    "label not in label_names": ({"train.txt": GOOD_TXT + "2 c\n"}, SST,
                                 "label '2' is not in task_options.label_names", "train.txt:5"),
    "unknown eval label": ({"train.txt": GOOD_TXT, "dev.txt": "1 fine\n2 meh\n"},
                           ["--validation", "@dev.txt", "--set", "data.test=null", "--set",
                            "task_options.line_format=label_text"], "label '2' never occurs in the training data",
                           "dev.txt:2"),
    "broken json": ({"train.jsonl": '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{oops\n'}, NO_EVAL,
                    "invalid JSON", "train.jsonl:3"),
    "list label without multi_label": ({"train.jsonl": '{"text": "a", "label": ["x", "y"]}\n'}, NO_EVAL,
                                       "holds a list of labels", "train.jsonl:1"),
    "no line format": ({"train.txt": GOOD_TXT}, [*NO_EVAL, "--set", "task_options.line_format=null"],
                       "cannot tell how to read this file", "train.txt"),
    "bad trec label": ({"train.label": "DESC:manner How ?\nNUMdate When ?\n"},
                       [*NO_EVAL, "--set", "task_options.line_format=trec_coarse", "--set", "task_options.label_names=null"],
                       "expected a TREC 'COARSE:fine' label", "train.label:2"),
    "latin-1 byte": ({"train.label": b"DESC:def What ?\nLOC:city a sister\xf0city ?\n"},
                     [*NO_EVAL, "--set", "task_options.line_format=trec_fine", "--set", "task_options.label_names=null"],
                     "not valid utf-8", "train.label:2"),
    "unknown task option": ({"train.txt": GOOD_TXT}, [*SST, "--set", "task_options.long_texts=window"],
                            "unknown key 'task_options.long_texts'", None),
    "bad long_text": ({"train.txt": GOOD_TXT}, [*SST, "--set", "task_options.long_text=chop"],
                      "'task_options.long_text'", None),
}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, name):
    files, extra, fragment, where = BAD_CASES[name]
    for fname, content in files.items():
        (tmp_path / fname).write_bytes(content if isinstance(content, bytes) else content.encode())
    train = next(f for f in files if f.startswith("train"))
    extra = [str(tmp_path / a[1:]) if a.startswith("@") else a for a in extra]
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["finetune", "--task", "classification", "--train", str(tmp_path / train),
                                 "--output", str(out), *extra])
    assert r.exit_code == 2, r.output
    error_lines = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert fragment in error_lines[0], error_lines[0]
    if where:
        assert f"{tmp_path / where}" in error_lines[0], error_lines[0]
    assert not out.exists()


# ---------------------------------------------------------------------------
# every family through the engine


def _cfg(model_dir, tmp_path, options=None, **training):
    data = tmp_path / "data"
    write_csv(data / "train.csv", make_rows(96, 1))
    write_csv(data / "dev.csv", make_rows(18, 2))
    write_csv(data / "test.csv", make_rows(24, 3))
    flags = {"model": str(model_dir), "data.train": str(data / "train.csv"), "data.validation": str(data / "dev.csv"),
             "data.test": str(data / "test.csv"), "training.batch_size": 8, "training.learning_rate": 3e-3,
             "training.logging_steps": 2, "training.save_total_limit": 1, "training.epochs": 4}
    flags.update({f"training.{k}": v for k, v in training.items()})
    sets = [f"task_options.{k}={json.dumps(v)}" for k, v in (options or {}).items()]
    cfg, _ = resolve("classification", None, flags, ["task_options.label_names=null", *sets])
    return cfg


def _plain_predictions(export, texts):
    """Logits from the exported folder with nothing but transformers (one text at a time)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForSequenceClassification.from_pretrained(export).eval()
    out = []
    with torch.no_grad():
        for t in texts:
            out.append(model(**tok(t, return_tensors="pt", truncation=True)).logits[0].numpy())
    return model, np.stack(out)


# A random tiny BERT sits on a plateau for a few dozen steps (its pooler and head both start near
# zero); GPT-2 and T5 read one token's state directly and learn at once.
EPOCHS = {"bert": 8, "gpt2": 4, "t5": 4}


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_family_trains_evaluates_exports_and_predicts(family, tiny_models, tmp_path):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score
    from transformers import pipeline

    cfg = _cfg(tiny_models(family), tmp_path, epochs=EPOCHS[family])
    run = tmp_path / "run"
    meta = finetune(cfg, run)
    assert meta["family"] == {"bert": "encoder", "gpt2": "gpt", "t5": "t5"}[family]
    assert meta["labels"] == ["mid", "neg", "pos"]

    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) >= 5
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses

    # eval reproduces the numbers finetune wrote, and the file holds the confusion matrix
    again = evaluate_run(run, "test")
    written = json.loads((run / "eval_test.json").read_text())
    for key in ("accuracy", "f1", "micro_f1", "weighted_f1", "precision", "recall"):
        assert again[key] == pytest.approx(meta["metrics"]["test"][key]) == pytest.approx(written[key])
    assert written["confusion_matrix"]["labels"] == meta["labels"]
    for split in ("validation", "test"):  # the matrix drawn beside the JSON, by finetune and again by eval
        png = (run / f"confusion_{split}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # an independent recomputation on the exported folder with plain transformers + scikit-learn
    out = tmp_path / "export"
    export_run(run, out)
    rows = list(csv.DictReader(open(tmp_path / "data" / "test.csv", encoding="utf-8")))
    model, logits = _plain_predictions(out, [r["text"] for r in rows])
    assert type(model).__name__ == {"bert": "BertForSequenceClassification", "gpt2": "GPT2ForSequenceClassification",
                                    "t5": "T5ForSequenceClassification"}[family]
    gold = [r["label"] for r in rows]
    pred = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert written["accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=1e-9)
    assert written["f1"] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0), abs=1e-9)
    assert written["precision"] == pytest.approx(precision_score(gold, pred, average="macro", zero_division=0))
    assert written["recall"] == pytest.approx(recall_score(gold, pred, average="macro", zero_division=0))
    assert written["micro_f1"] == pytest.approx(f1_score(gold, pred, average="micro"), abs=1e-9)
    assert written["weighted_f1"] == pytest.approx(f1_score(gold, pred, average="weighted", zero_division=0))
    assert written["confusion_matrix"]["matrix"] == confusion_matrix(gold, pred, labels=meta["labels"]).tolist()
    assert {k: v["support"] for k, v in written["per_label"].items()} == {"mid": 8, "neg": 8, "pos": 8}
    assert written["accuracy"] > 0.5  # three balanced classes: chance is 1/3

    # the pipeline loads the export and agrees with ftkit predict
    nlp = pipeline("text-classification", model=str(out))
    texts = [rows[0]["text"], rows[1]["text"], "the film was wonderful"]
    preds = predict_records(out, [{"text": t} for t in texts])
    for text, p, top in zip(texts, preds, nlp(texts)):
        assert set(p) == {"text", "label", "probabilities"} and p["text"] == text
        assert set(p["probabilities"]) == set(meta["labels"])
        assert sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert top["label"] == p["label"]
        assert top["score"] == pytest.approx(p["probabilities"][p["label"]], abs=1e-3)


def test_predict_command(tiny_models, tmp_path):
    cfg = _cfg(tiny_models("bert"), tmp_path, epochs=1)
    run = tmp_path / "run"
    finetune(cfg, run)
    lines = ["the film was great", json.dumps({"text": "boring and awful"}), ""]
    r = CliRunner().invoke(app, ["predict", str(run), "--input", "-"], input="\n".join(lines) + "\n")
    assert r.exit_code == 0, r.output
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["text"] for o in out] == ["the film was great", "boring and awful"]
    assert all(o["label"] in ("mid", "neg", "pos") and len(o["probabilities"]) == 3 for o in out)
    r = CliRunner().invoke(app, ["eval", str(run), "--split", "test"])
    assert r.exit_code == 0 and "confusion matrix" in r.stdout and "accuracy" in r.stdout


# ---------------------------------------------------------------------------
# long texts and multi-label


def test_long_text_window_pools_logits_over_windows(tiny_models, tmp_path, capsys):
    import torch

    cfg = _cfg(tiny_models("bert"), tmp_path, options={"long_text": "window", "window_stride": 4},
               max_length=16, epochs=1)
    run = tmp_path / "run"
    finetune(cfg, run)
    t, fx, model, tok, meta = load_trained(run)
    assert meta["max_length"] == 16 and fx.max_length == 16 and t.options.long_text == "window"

    long_text = " ".join(["the film was really wonderful and the actors in Paris were great"] * 4)
    examples = t.predict_examples([{"text": "a dull film"}, {"text": long_text}])
    features = t.encode(examples, tok, fx, train=False)
    ids = list(features["example_id"])
    assert ids.count(0) == 1 and ids.count(1) >= 4
    assert max(features["length"]) <= 16
    # the windows cover the whole text: the last one ends with the text's last sub-token
    full = tok(long_text)["input_ids"]
    assert features["input_ids"][-1][-2] == full[-2]

    # pooled prediction = softmax of the mean of the windows' logits (computed here with the plain model)
    from ftkit.engine.inference import model_outputs

    outputs = model_outputs(t, fx, model, tok, features, device="cpu")
    preds = t.decode(examples, features, outputs, fx)
    assert [p["windows"] for p in preds] == [1, ids.count(1)]
    with torch.no_grad():
        win_logits = [model(input_ids=torch.tensor([f["input_ids"]]),
                            attention_mask=torch.tensor([f["attention_mask"]])).logits[0].numpy()
                      for f in features if f["example_id"] == 1]
    mean = np.mean(win_logits, axis=0)
    expected = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    got = np.array([preds[1]["probabilities"][lab] for lab in meta["labels"]])
    assert got == pytest.approx(expected, abs=1e-5)
    assert preds[1]["label"] == meta["labels"][int(np.argmax(mean))]

    # truncate mode: one feature per text, and it says how many texts it cut
    capsys.readouterr()
    trunc = ClassificationTask()
    feats = trunc.encode(examples, tok, facts(trunc, meta["labels"], 16), train=False)
    assert list(feats["example_id"]) == [0, 1]
    assert "1 of 2 texts are longer than the 16-sub-token window and were truncated" in capsys.readouterr().err


def test_multi_label(tiny_models, tmp_path):
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    rng = random.Random(5)
    topics = {"sport": ["football", "tennis"], "politics": ["election", "minister"]}

    def rows(n):
        out = []
        for i in range(n):
            labs = [["sport"], ["politics"], ["sport", "politics"], []][i % 4]
            words = rng.sample(FILLER, 2) + [rng.choice(topics[lab]) for lab in labs]
            rng.shuffle(words)
            out.append({"text": " ".join(words), "label": labs})
        return out

    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", rows(96))
    test_rows = rows(16)
    # labels given as a separated string work too
    write_csv(data / "test.csv", [{"text": r["text"], "label": ";".join(r["label"])} for r in test_rows])
    flags = {"model": str(tiny_models("bert")), "data.train": str(data / "train.jsonl"),
             "data.test": str(data / "test.csv"), "training.batch_size": 8, "training.learning_rate": 3e-3,
             "training.logging_steps": 2, "training.epochs": 8}
    cfg, _ = resolve("classification", None, flags, ["data.validation=null", "task_options.label_names=null",
                                                     "task_options.multi_label=true", "task_options.label_separator=;"])
    run = tmp_path / "run"
    meta = finetune(cfg, run)
    assert meta["labels"] == ["politics", "sport"]
    m = meta["metrics"]["test"]
    assert {"subset_accuracy", "f1", "micro_f1", "hamming_loss", "per_label", "confusion_matrix"} <= set(m)
    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses

    out = tmp_path / "export"
    export_run(run, out)
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(**tok([r["text"] for r in test_rows], return_tensors="pt", padding=True)).logits)
    y_pred = (probs >= 0.5).int().numpy()
    y_true = np.array([[int(lab in r["label"]) for lab in meta["labels"]] for r in test_rows])
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-9)
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-9)
    assert m["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro", zero_division=0), abs=1e-9)
    assert m["confusion_matrix"]["matrices"]["sport"][1][1] == int(((y_true[:, 1] == 1) & (y_pred[:, 1] == 1)).sum())

    # predictions: a list of labels, and sigmoid scores that the pipeline reproduces
    text = test_rows[2]["text"]
    pred = predict_records(out, [{"text": text}])[0]
    assert isinstance(pred["label"], list) and set(pred["label"]) <= {"politics", "sport"}
    (ranked,) = pipeline("text-classification", model=str(out), top_k=None)([text])
    scores = {d["label"]: d["score"] for d in ranked}
    assert scores == pytest.approx(pred["probabilities"], abs=1e-3)
    assert pred["label"] == [lab for lab in meta["labels"] if pred["probabilities"][lab] >= 0.5]
