"""One table of malformed inputs across the five tasks and the recipes.

Each case runs the real CLI and must end with exactly one `error:` line that names the file
(and line/record) or the key, exit status 2, no traceback, and no output folder.
"""

import json
import os
import subprocess
import sys

import pytest

SQUAD_BAD = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Paris is the capital of France.", "qas": [{"id": "q1", "question": "What is the capital?", "answers": [{"text": "Paris", "answer_start": 3}]}]}]}]}
CASES = {
 "classification: missing column": ("classification", {"train.csv": "sentence,label\nhello,pos\nbye,neg\n"}, ["--set", "task_options.label_names=null"], "train.csv"),
 "classification: empty text": ("classification", {"train.csv": 'text,label\n"",pos\nfine,neg\nok,pos\nno,neg\n'}, ["--set", "task_options.label_names=null"], "train.csv:2"),
 "classification: label with one example": ("classification", {"train.csv": "text,label\na,pos\nb,pos\nc,neg\n"}, ["--set", "task_options.label_names=null"], "train.csv"),
 "classification: broken JSON line": ("classification", {"train.jsonl": '{"text": "a", "label": "pos"}\n{"text": \n'}, ["--set", "task_options.label_names=null"], "train.jsonl:2"),
 "classification: unknown eval label": ("classification", {"train.csv": "text,label\na,pos\nb,pos\nc,neg\nd,neg\n", "test.csv": "text,label\ne,maybe\n"}, ["--set", "task_options.label_names=null", "--test", "@test.csv", "--set", "data.validation=null"], "test.csv:2"),
 "classification: label without text": ("classification", {"train.txt": "1 good film\n0\n"}, ["--set", "task_options.line_format=label_text"], "train.txt:2"),
 "relation: record without e2 markers": ("relation", {"train.txt": '1\t"The <e1>child</e1> was wrapped in a cradle."\r\nOther\r\nComment:\r\n\r\n'}, [], "train.txt:1"),
 "relation: unbalanced markers": ("relation", {"train.txt": '1\t"The <e1>child</e1> was wrapped in a <e2>cradle."\r\nOther\r\nComment:\r\n\r\n'}, [], "train.txt:1"),
 "relation: missing label line": ("relation", {"train.txt": '1\t"The <e1>child</e1> was wrapped in a <e2>cradle</e2>."\r\n\r\n'}, [], "train.txt"),
 "relation: span outside the text": ("relation", {"train.jsonl": json.dumps({"text": "ab cd", "head": {"start": 0, "end": 2}, "tail": {"start": 3, "end": 9}, "label": "X"}) + "\n"}, [], "train.jsonl:1"),
 "relation: overlapping spans": ("relation", {"train.jsonl": json.dumps({"text": "ab cd ef", "head": {"start": 0, "end": 4}, "tail": {"start": 3, "end": 8}, "label": "X"}) + "\n"}, [], "train.jsonl:1"),
 "relation: markers and spans": ("relation", {"train.jsonl": json.dumps({"text": "<e1>ab</e1> <e2>cd</e2>", "head": {"start": 4, "end": 6}, "tail": {"start": 16, "end": 18}, "label": "X"}) + "\n"}, [], "train.jsonl:1"),
 "qa: answer not at answer_start": ("qa", {"train.json": json.dumps(SQUAD_BAD)}, [], "q1"),
 "qa: truncated JSON": ("qa", {"train.json": json.dumps(SQUAD_BAD)[:80]}, [], "train.json"),
 "qa: missing context": ("qa", {"train.jsonl": json.dumps({"id": "q9", "question": "Who?", "answers": {"text": ["x"], "answer_start": [0]}}) + "\n"}, [], "train.jsonl:1"),
 "translation: line-count mismatch": ("translation", {"train.en": "a dog\na cat\nthe sun\n", "train.de": "ein Hund\neine Katze\n"}, ["--train", "@train"], "train"),
 "translation: empty target line": ("translation", {"train.en": "a dog\na cat\n", "train.de": "ein Hund\n\n"}, ["--train", "@train"], "train.de:2"),
 "translation: missing target column": ("translation", {"train.jsonl": '{"source": "a dog"}\n'}, [], "train.jsonl:1"),
 "ner: invalid tag": ("ner", {"train.conll": "Paris B-LOC\nis Q-X\n"}, [], "train.conll:2"),
 "ner: undecodable bytes": ("ner", {"train.conll": b"Paris B-LOC\n\nM\xfcnchen B-LOC\n"}, [], "train.conll:3"),
 "recipe: unknown key": (None, {"r.yaml": "task: ner\ntraining:\n  epochz: 2\n"}, ["--recipe", "@r.yaml"], "training.epochz"),
 "recipe: wrong type": (None, {"r.yaml": "task: qa\ntraining:\n  batch_size: many\n"}, ["--recipe", "@r.yaml"], "training.batch_size"),
 "recipe: invalid YAML": (None, {"r.yaml": "task: ner\ntraining: [\n"}, ["--recipe", "@r.yaml"], "r.yaml"),
 "recipe: python object tag": (None, {"r.yaml": "task: !!python/object/apply:os.system ['true']\n"}, ["--recipe", "@r.yaml"], "r.yaml"),
 "recipe: unknown name": (None, {}, ["--recipe", "no-such-recipe"], "no-such-recipe"),
 "task: unknown": ("pos-tagging", {}, [], "pos-tagging"),
 "task option: unknown (qa)": ("qa", {}, ["--set", "task_options.doc_strid=64"], "task_options.doc_strid"),
 "task option: wrong value (translation)": ("translation", {}, ["--set", "task_options.num_beams=zero"], "task_options.num_beams"),
}


# expected fragment of each message (besides the location)
FRAGMENTS = {
    "classification: missing column": "missing column 'text' (columns: sentence, label)",
    "classification: empty text": "empty text",
    "classification: label with one example": "fewer than 2 training examples",
    "classification: broken JSON line": "invalid JSON",
    "classification: unknown eval label": "label 'maybe' never occurs in the training data",
    "classification: label without text": "expected '<label> <text>'",
    "relation: record without e2 markers": "no <e2>..</e2> markers",
    "relation: unbalanced markers": "unbalanced markers",
    "relation: missing label line": "has no label line",
    "relation: span outside the text": "is outside the text",
    "relation: overlapping spans": "overlap",
    "relation: markers and spans": "give one or the other",
    "qa: answer not at answer_start": "does not match the context at answer_start 3",
    "qa: truncated JSON": "invalid JSON",
    "qa: missing context": "missing or empty 'context'",
    "translation: line-count mismatch": "train.en has 3 lines, train.de has 2",
    "translation: empty target line": "empty target line",
    "translation: missing target column": "missing column 'target'",
    "ner: invalid tag": "invalid tag 'Q-X'",
    "ner: undecodable bytes": "not valid utf-8",
    "recipe: unknown key": "unknown key 'training.epochz'",
    "recipe: wrong type": "'training.batch_size': Input should be a valid integer",
    "recipe: invalid YAML": "invalid YAML",
    "recipe: python object tag": "invalid YAML",
    "recipe: unknown name": "unknown recipe 'no-such-recipe'",
    "task: unknown": "unknown task 'pos-tagging'",
    "task option: unknown (qa)": "unknown key 'task_options.doc_strid'",
    "task option: wrong value (translation)": "'task_options.num_beams'",
}


def test_the_table_is_large_and_covers_every_task():
    assert len(CASES) >= 25
    tasks = {c[0] for c in CASES.values()}
    assert {"ner", "classification", "relation", "qa", "translation"} <= tasks


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input(name, tmp_path):
    task, files, extra, where = CASES[name]
    for fname, content in files.items():
        (tmp_path / fname).write_bytes(content if isinstance(content, bytes) else content.encode())
    args = ["finetune"] + (["--task", task] if task else [])
    train = [f for f in files if f.startswith("train")]
    if train and "--train" not in extra:
        args += ["--train", str(tmp_path / train[0])]
    args += [str(tmp_path / a[1:]) if a.startswith("@") else a for a in extra]
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "ftkit", *args, "--output", str(out)], capture_output=True, text=True,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert r.returncode == 2, r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    assert FRAGMENTS[name] in errors[0], errors[0]
    assert where in errors[0], errors[0]
    assert not out.exists()
