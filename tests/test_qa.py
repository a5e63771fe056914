"""Extractive QA: SQuAD readers, the official metric, window post-processing, every family end to end."""

import collections
import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, facts, write

from ftkit.errors import FtkitError
from ftkit.metrics.squad import normalize_answer, squad_scores
from ftkit.tasks.qa import QaOptions, QaTask

SQUAD = REPO / "src" / "ftkit" / "samples" / "squad"
DEV = REPO.parent / "shared" / "data" / "squad_v1" / "dev-v1.1.json"
if not DEV.exists():
    DEV = Path("/work/shared/data/squad_v1/dev-v1.1.json")


def squad_doc(articles, version="1.1"):
    return {"version": version, "data": articles}


def article(title, *paragraphs):
    return {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs]}


def qa(qid, question, context, *answers, impossible=None):
    out = {"id": qid, "question": question,
           "answers": [{"text": a, "answer_start": context.index(a)} for a in answers]}
    if impossible is not None:
        out["is_impossible"] = impossible
    return out


C1 = "Paris is the capital of France. The Eiffel Tower was built in 1889."
C2 = "Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50."
V1 = squad_doc([
    article("France", (C1, [qa("q1", "What is the capital of France?", C1, "Paris", "Paris"),
                            qa("q2", "When was the Eiffel Tower built?", C1, "1889", "in 1889")])),
    article("Super_Bowl", (C2, [qa("q3", "Who won Super Bowl 50?", C2, "Denver Broncos")])),
])


def read(task, path, split="train", **opts):
    return (task or QaTask(QaOptions(**opts))).read(str(path), split)


# ---------------------------------------------------------------------------
# readers


def test_squad_v1_json(tmp_path):
    task = QaTask()
    ex = task.read(str(write(tmp_path / "v1.json", json.dumps(V1))), "train")
    assert ex["id"] == ["q1", "q2", "q3"]
    assert ex["title"] == ["France", "France", "Super_Bowl"]
    assert ex[1]["answers"] == {"text": ["1889", "in 1889"], "answer_start": [62, 59]}
    assert task.resolve_options(ex, None).version_2_with_negative is False  # detected from the training data
    assert task.data_summary(ex) == {"questions": 3, "contexts": 2, "articles": 2, "unanswerable": 0, "answers": 5}
    # a slice of articles per split
    assert read(None, tmp_path / "v1.json", "test", articles={"test": "1:"})["id"] == ["q3"]
    assert read(None, tmp_path / "v1.json", "train", articles={"test": "1:"})["id"] == ["q1", "q2", "q3"]
    assert read(None, tmp_path / "v1.json", "train", articles={"train": "0"})["id"] == ["q1", "q2"]


def test_squad_v2_json_detects_unanswerable_questions(tmp_path):
    doc = squad_doc([article("France", (C1, [
        qa("a", "What is the capital of France?", C1, "Paris", impossible=False),
        qa("b", "What is the capital of Spain?", C1, impossible=True),
    ]))], version="v2.0")
    task = QaTask()
    ex = task.read(str(write(tmp_path / "v2.json", json.dumps(doc))), "train")
    resolved = task.resolve_options(ex, None)
    assert resolved.version_2_with_negative is True and task.options.version_2_with_negative is None
    assert ex[1]["answers"] == {"text": [], "answer_start": []}
    assert task.data_summary(ex)["unanswerable"] == 1
    # the resolved setting travels with the task (ftkit.json), so evaluation data is read the same way
    again = QaTask(QaOptions(**resolved.model_dump()))
    assert len(again.read(str(tmp_path / "v2.json"), "test")) == 2
    # explicit v1 refuses questions without answers
    with pytest.raises(FtkitError, match=r"1 question has no answer \(first: question b\)"):
        read(None, tmp_path / "v2.json", version_2_with_negative=False)
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"] = [{"text": "Paris", "answer_start": 0}]
    with pytest.raises(FtkitError, match="question b: is_impossible is true"):
        read(None, write(tmp_path / "bad.json", json.dumps(doc)))


def _flat(doc):
    return [{"id": q["id"], "title": a["title"], "context": p["context"], "question": q["question"],
             "answers": {"text": [x["text"] for x in q["answers"]], "answer_start": [x["answer_start"] for x in q["answers"]]}}
            for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]]


def test_flat_records_in_jsonl_parquet_and_datasets_folders(tmp_path):
    from datasets import Dataset

    rows = _flat(V1)
    jsonl = write(tmp_path / "flat.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    Dataset.from_list(rows).to_parquet(str(tmp_path / "flat.parquet"))
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "flat_ds"))
    expected = QaTask().read(str(write(tmp_path / "v1.json", json.dumps(V1))), "train")
    keys = ["id", "title", "question", "context", "answers"]
    for path in (jsonl, tmp_path / "flat.parquet", tmp_path / "flat_ds"):
        ex = QaTask().read(str(path), "train")
        assert [{k: r[k] for k in keys} for r in ex] == [{k: r[k] for k in keys} for r in expected], path
    assert QaTask().read(str(jsonl), "train")["source"][2] == f"{jsonl}:3"
    # articles are the records' titles, in order of first appearance
    assert read(None, jsonl, "test", articles={"test": "1:2"})["id"] == ["q3"]
    # SQuAD 2.0 style flat records: empty answer lists
    v2 = write(tmp_path / "v2.jsonl", json.dumps({"id": "x", "question": "Who?", "context": "Nobody here.",
                                                   "answers": {"text": [], "answer_start": []}}) + "\n")
    task = QaTask()
    ex = task.read(str(v2), "train")
    assert ex[0]["answers"]["text"] == [] and task.with_options(task.resolve_options(ex, None)).version_2


def test_real_dev_file_splits_by_article():
    if not DEV.exists():
        pytest.skip("needs ../shared/data/squad_v1/dev-v1.1.json")
    task = QaTask(QaOptions(articles={"train": "0:38", "test": "38:48"}))
    train, test = task.read(str(DEV), "train"), task.read(str(DEV), "test")
    assert (len(train), len(test)) == (8582, 1988)  # the counts SOURCE.md gives
    assert not set(train["title"]) & set(test["title"]) and not set(train["context"]) & set(test["context"])
    assert task.data_summary(test)["articles"] == 10


def test_bundled_sample_is_split_by_article():
    titles = {}
    for split in ("train", "validation", "test"):
        ex = QaTask().read(f"ftkit:samples/squad/{split}.json", split)
        titles[split] = set(ex["title"])
        assert len(ex) > 90
    assert not titles["train"] & titles["test"] and not titles["validation"] & (titles["train"] | titles["test"])


BAD = {
    "offset mismatch": (
        "train.json", json.dumps(squad_doc([article("T", (C1, [{"id": "56be4db0acb8001400a502ec", "question": "Where?",
                                                                "answers": [{"text": "Paris", "answer_start": 3}]}]))])),
        r"train\.json: question 56be4db0acb8001400a502ec: answer 'Paris' does not match the context at answer_start 3"),
    "negative offset": ("t.json", json.dumps(squad_doc([article("T", (C1, [
        {"id": "q9", "question": "Where?", "answers": [{"text": "Paris", "answer_start": -1}]}]))])),
        r"question q9: answer 'Paris' does not match"),
    "flat offset mismatch": ("train.jsonl", json.dumps(_flat(V1)[0]) + "\n" + json.dumps(
        dict(_flat(V1)[1], answers={"text": ["1889"], "answer_start": [10]})) + "\n",
        r"train\.jsonl:2: question q2: answer '1889' does not match"),
    "missing context": ("train.jsonl", json.dumps({"id": "z", "question": "Why?", "answers": []}) + "\n",
                        r"train\.jsonl:1: question z: missing or empty 'context'"),
    "missing question": ("t.json", json.dumps(squad_doc([article("T", (C1, [{"id": "q7", "answers": []}]))])),
                         r"t\.json: question q7: missing or empty 'question'"),
    "missing answers": ("t.jsonl", json.dumps({"id": "z", "question": "Why?", "context": "x"}) + "\n",
                        r"t\.jsonl:1: question z: missing field 'answers'"),
    "truncated": ("train.json", json.dumps(V1)[:150], r"train\.json:1: invalid JSON: .*\(line 1, column \d+\).*truncated"),
    "empty": ("train.json", "\n", r"train\.json: empty file"),
    "no data": ("train.json", json.dumps({"version": "1.1"}), r"no top-level 'data' list"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_data_is_reported_with_file_and_question(tmp_path, name):
    fname, text, pattern = BAD[name]
    with pytest.raises(FtkitError) as e:
        QaTask().read(str(write(tmp_path / fname, text)), "train")
    assert re.search(pattern, e.value.one_line()), e.value.one_line()


def test_bad_options(tmp_path):
    from ftkit.tasks import make_task

    with pytest.raises(FtkitError, match=r"task_options.articles.*articles.train: expected START:STOP"):
        make_task("qa", {"articles": {"train": "a:b"}})
    with pytest.raises(FtkitError, match="unknown key 'task_options.articles.dev'|task_options.articles.dev"):
        make_task("qa", {"articles": {"dev": "0:1"}})
    with pytest.raises(FtkitError, match="articles '5:9' selects no article: the file has 2 articles"):
        read(None, write(tmp_path / "v1.json", json.dumps(V1)), articles={"train": "5:9"})


# ---------------------------------------------------------------------------
# the official metric on hand-computed cases


def test_normalize_answer():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a day") == "apple day"
    assert normalize_answer("Theatre (A) anthem") == "theatre anthem"  # articles are whole words only
    assert normalize_answer("  U.S.A.  ") == "usa"


def test_squad_v1_exact_match_and_f1_by_hand():
    golds = [["Denver Broncos", "The Denver Broncos"], ["1889"], ["Carolina Panthers"], ["the"]]
    preds = ["the denver broncos.", "in 1889", "Denver Broncos won", "a"]
    m = squad_scores(golds, preds, version_2=False)
    # q1: exact after normalisation.  q2: pred [in, 1889] vs [1889]: P=1/2, R=1, F1=2/3.
    # q3: no common token: 0.  q4: gold and prediction both normalise to "": EM 1, F1 0 (v1.1 script).
    assert m["examples"] == 4
    assert m["exact_match"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert m["f1"] == pytest.approx((1 + 2 / 3 + 0 + 0) / 4)
    # max over gold answers: the better of two partial matches counts
    m = squad_scores([["Denver Broncos defeated", "Broncos"]], ["Broncos won"], version_2=False)
    # vs gold 1: common 1, P=1/2, R=1/3 -> 0.4; vs gold 2: P=1/2, R=1 -> 2/3
    assert m["f1"] == pytest.approx(2 / 3) and m["exact_match"] == 0


def test_squad_v2_has_ans_no_ans_by_hand():
    golds = [["Paris"], [], [], ["in 1889", "1889"]]
    preds = ["Paris", "", "London", "1889 ."]
    m = squad_scores(golds, preds, version_2=True)
    assert m["exact_match"] == pytest.approx(3 / 4) and m["f1"] == pytest.approx(3 / 4)
    assert (m["has_ans_exact_match"], m["has_ans_f1"], m["has_ans_total"]) == (1.0, 1.0, 2)
    assert (m["no_ans_exact_match"], m["no_ans_f1"], m["no_ans_total"]) == (0.5, 0.5, 2)
    # v2 rules: a gold answer that normalises to nothing counts as "no answer"
    assert squad_scores([["the"]], [""], version_2=True)["f1"] == 1.0
    assert squad_scores([["the"]], [""], version_2=False)["f1"] == 0.0


def test_score_and_table_use_the_task_setting():
    task = QaTask(QaOptions(version_2_with_negative=True))
    from datasets import Dataset

    ex = Dataset.from_list([{"context": C1, "answers": {"text": ["Paris"], "answer_start": [0]}},
                            {"context": C1, "answers": {"text": [], "answer_start": []}}])
    m = task.score(ex, [{"text": "Paris"}, {"text": ""}], facts(task))
    assert m["exact_match"] == 1.0 and m["per_label"]["NoAns"] == {"exact_match": 1.0, "f1": 1.0, "support": 1}
    assert "NoAns" in task.format_table(m)


# ---------------------------------------------------------------------------
# windows and post-processing with oracle logits

LONG = ("The river flows slowly through the green valley near the old town. " * 6
        + "In 1990 the treaty was signed in Paris by the ministers of both countries.")


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "t5"])
def test_answer_in_a_later_window_is_found_exactly(family, tiny_models):
    from datasets import Dataset

    from ftkit.families import load_config, load_tokenizer

    tok = load_tokenizer(load_config(str(tiny_models(family))))
    answer = "Paris"
    start = LONG.index(answer)
    ex = Dataset.from_list([{"id": "x", "question": "Where was the treaty signed?", "context": LONG,
                             "answers": {"text": [answer], "answer_start": [start]}}])
    task = QaTask(QaOptions(doc_stride=8))
    feats = task.encode(ex, tok, facts(task, task.labels(None), 48), train=False)
    assert len(feats) >= 3 and set(feats["example_id"]) == {0}
    assert all(len(ids) <= 48 for ids in feats["input_ids"])

    # oracle: the tokens that cover the answer characters, computed here from the offsets
    out = np.full((len(feats), 48, 2), -100.0, dtype=np.float32)
    holding = []
    for f, offsets in enumerate(feats["offsets"]):
        cover = [k for k, (s, e) in enumerate(offsets) if s >= 0 and e > s and s < start + len(answer) and e > start]
        out[f, : len(offsets)] = 0.0
        out[f, feats["null_index"][f]] = 1.0
        if cover and offsets[cover[0]][0] <= start and offsets[cover[-1]][1] >= start + len(answer):
            holding.append(f)
            out[f, cover[0], 0] = out[f, cover[-1], 1] = 8.0
            assert (feats["start_positions"][f], feats["end_positions"][f]) == (cover[0], cover[-1])
        else:
            assert feats["start_positions"][f] == feats["end_positions"][f] == feats["null_index"][f]
    assert holding and holding[0] >= 1, "the answer must not fit in the first window"
    # a weaker distractor span in the first window
    ctx0 = [k for k, (s, e) in enumerate(feats["offsets"][0]) if s >= 0]
    out[0, ctx0[2], 0] = out[0, ctx0[3], 1] = 5.0

    pred = task.decode(ex, feats, out, facts(task))[0]
    assert (pred["text"], pred["start"], pred["end"]) == (answer, start, start + len(answer))
    assert 0.5 < pred["score"] <= 1.0

    # spans longer than max_answer_length are never chosen: "Paris by" scores best, but is 2+ sub-tokens
    short = QaTask(QaOptions(doc_stride=8, max_answer_length=1))
    wide = out.copy()
    by = LONG.index(" by", start) + 1
    widened = 0
    for f in holding:
        offsets = feats["offsets"][f]
        wide[f, :, :] = np.minimum(wide[f], 1.0)
        first = next(k for k, (s, e) in enumerate(offsets) if s >= 0 and e > start)
        last = next((k for k, (s, e) in enumerate(offsets) if s >= 0 and e >= by + 2), None)
        if last is not None:  # this window holds "Paris by" whole
            wide[f, first, 0], wide[f, last, 1] = 9.0, 9.0
            widened += 1
    assert widened
    assert task.decode(ex, feats, wide, facts(task))[0]["text"] == "Paris by"
    got = short.decode(ex, feats, wide, facts(short))[0]
    # single sub-tokens, without the leading space byte-level/sentencepiece tokens carry
    singles = {(s + (LONG[s] == " "), e) for offsets in feats["offsets"] for s, e in offsets if s >= 0 and e > s}
    assert got["text"] != "Paris by" and (got["start"], got["end"]) in singles

    # SQuAD 2.0: a winning null score gives the empty answer; a high threshold keeps the span
    nulls = out.copy()
    for f, n in enumerate(feats["null_index"]):
        nulls[f, n] = 20.0
    v2 = QaTask(QaOptions(doc_stride=8, version_2_with_negative=True))
    assert v2.decode(ex, feats, nulls, facts(v2))[0] == {"text": "", "start": None, "end": None,
                                                   "score": pytest.approx(1.0, abs=1e-3)}
    lenient = QaTask(QaOptions(doc_stride=8, version_2_with_negative=True, null_score_diff_threshold=100.0))
    assert lenient.decode(ex, feats, nulls, facts(lenient))[0]["text"] == answer


def test_null_position_per_tokenizer_layout(tiny_models):
    from ftkit.families import load_config, load_tokenizer
    from ftkit.tasks.qa import null_layout

    layouts = {f: null_layout(load_tokenizer(load_config(str(tiny_models(f))))) for f in ("bert", "roberta", "gpt2", "t5")}
    assert layouts == {"bert": "first", "roberta": "first", "gpt2": "append", "t5": "last"}


# ---------------------------------------------------------------------------
# every family end to end


LAMB = [
    ("The European Commission said on Thursday it disagreed with German advice to consumers to shun British lamb.",
     [("Who disagreed with German advice?", "The European Commission"), ("What should consumers shun?", "British lamb"),
      ("When did the Commission speak?", "Thursday")]),
    ("Peter Blackburn reported from Brussels on Monday.",
     [("Who reported from Brussels?", "Peter Blackburn"), ("Where did Peter Blackburn report from?", "Brussels")]),
    ("Germany's representative to the European Union's veterinary committee, Werner Zwingmann, said on Wednesday "
     "consumers should buy sheepmeat from countries other than Britain until the scientific advice was clearer.",
     [("Who is Germany's representative?", "Werner Zwingmann"), ("Which country should consumers avoid?", "Britain")]),
    ("Spanish Farm Minister Loyola de Palacio had earlier accused Fischler at an EU farm ministers' meeting of causing "
     "unjustified alarm through dangerous generalisation. Fischler proposed EU-wide measures after reports from "
     "Britain and France that under laboratory conditions sheep could contract Bovine Spongiform Encephalopathy.",
     [("Who accused Fischler?", "Loyola de Palacio"), ("What could sheep contract?", "Bovine Spongiform Encephalopathy"),
      ("Who proposed EU-wide measures?", "Fischler")]),
]


def _train_file(tmp_path):
    """Short real-news paragraphs (the tiny tokenizers know their words); the last needs several windows."""
    paragraphs = [(c, [qa(f"q{i}-{j}", q, c, a) for j, (q, a) in enumerate(qas)]) for i, (c, qas) in enumerate(LAMB)]
    return write(tmp_path / "train.json", json.dumps(squad_doc([article("Lamb", *paragraphs)])))


@pytest.fixture(scope="session")
def trained(tiny_models, tmp_path_factory):
    """Train a family once per session: (run folder, export folder, finetune metadata, train file)."""
    from ftkit.config import resolve
    from ftkit.engine.finetune import finetune
    from ftkit.export import export_run

    done = {}

    def get(family):
        if family not in done:
            root = tmp_path_factory.mktemp(f"qa-{family}")
            train = _train_file(root)
            flags = {"model": str(tiny_models(family)), "data.train": str(train), "data.validation": str(train),
                     "data.test": str(train), "training.batch_size": 4, "training.learning_rate": 3e-3,
                     "training.epochs": 5, "training.logging_steps": 2, "training.save_total_limit": 1,
                     "training.max_length": 64}
            cfg, _ = resolve("qa", None, flags, ["task_options.doc_stride=16"])
            meta = finetune(cfg, root / "run")
            export_run(root / "run", root / "export")
            done[family] = (root / "run", root / "export", meta, train)
        return done[family]

    return get


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_family_trains_evaluates_exports_and_predicts(family, trained):
    from transformers import AutoModelForQuestionAnswering

    from ftkit.engine.inference import evaluate_run, predict_records

    run, export, meta, _ = trained(family)
    assert meta["family"] == {"bert": "encoder", "gpt2": "gpt", "t5": "t5"}[family]
    assert meta["labels"] == ["start", "end"]
    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) >= 4
    assert sum(losses[-3:]) / 3 < 0.75 * losses[0], losses
    assert "eval_f1" in "".join(json.dumps(r) for r in logs)  # the validation F1 drove model selection

    again = evaluate_run(run, "test")
    assert again["f1"] == pytest.approx(meta["metrics"]["test"]["f1"])
    assert again["exact_match"] == pytest.approx(meta["metrics"]["test"]["exact_match"])

    model = AutoModelForQuestionAnswering.from_pretrained(export)
    assert model.config.id2label == {0: "start", 1: "end"}
    assert json.loads((export / "ftkit.json").read_text())["task_options"]["version_2_with_negative"] is False

    context = LONG
    preds = predict_records(export, [{"question": "Where was the treaty signed?", "context": context},
                                     {"id": "k", "question": "What flows?", "context": "The river flows."}])
    assert [set(p) for p in preds] == [{"question", "answer", "start", "end", "score"},
                                       {"id", "question", "answer", "start", "end", "score"}]
    for p, ctx in zip(preds, [context, "The river flows."]):
        assert p["answer"] and ctx[p["start"]:p["end"]] == p["answer"] and 0 < p["score"] <= 1
        assert p["answer"] == p["answer"].strip()


def test_plain_transformers_loads_the_bert_export(trained):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    from ftkit.engine.inference import predict_records

    _, export, _, _ = trained("bert")
    question, context = "What flows through the valley?", "The river flows slowly through the green valley."
    try:
        nlp = pipeline("question-answering", model=str(export))
    except KeyError as e:  # transformers 5 removed the pipeline ("use text-generation with a chat model")
        assert "removed" in str(e)
    else:
        got = nlp(question=question, context=context)
        assert context[got["start"]:got["end"]] == got["answer"]

    # the exported folder alone answers with plain transformers: same span as `ftkit predict`
    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForQuestionAnswering.from_pretrained(export).eval()
    enc = tok(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    ctx = [i for i, s in enumerate(enc.sequence_ids(0)) if s == 1]
    with torch.no_grad():
        out = model(**enc)
    st, en = out.start_logits[0].tolist(), out.end_logits[0].tolist()
    s, e = max(((s, e) for s in ctx for e in ctx if s <= e < s + 30), key=lambda p: st[p[0]] + en[p[1]])
    ours = predict_records(export, [{"question": question, "context": context}])[0]
    assert (ours["start"], ours["end"]) == (offsets[s][0], offsets[e][1])

    # the model card's usage code runs as written
    card = (export / "README.md").read_text()
    assert "AutoModelForQuestionAnswering" in card and 'pipeline("question-answering"' not in card
    code = card.split("## Usage", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    scope = {}
    exec(code.replace("PATH/TO/THIS/FOLDER", str(export)), scope)
    assert scope["answer"] and scope["answer"] in scope["context"]


def test_squad_v2_trains_and_scores_has_ans_and_no_ans(tiny_models, tmp_path):
    from ftkit.config import resolve
    from ftkit.engine.finetune import finetune
    from ftkit.engine.inference import evaluate_run, predict_records

    paragraphs = [(c, [qa(f"q{i}-{j}", q, c, a) for j, (q, a) in enumerate(qas)]
                   + [qa(f"n{i}", "What did the committee eat?", c, impossible=True)])
                  for i, (c, qas) in enumerate(LAMB[:2])]
    train = write(tmp_path / "v2.json", json.dumps(squad_doc([article("Lamb", *paragraphs)], version="v2.0")))
    flags = {"model": str(tiny_models("bert")), "data.train": str(train), "data.validation": str(train),
             "data.test": str(train), "training.batch_size": 4, "training.max_steps": 4,
             "training.learning_rate": 3e-3, "training.max_length": 64, "training.save_total_limit": 1}
    cfg, _ = resolve("qa", None, flags, [])
    meta = finetune(cfg, tmp_path / "run")
    m = meta["metrics"]["test"]
    assert (m["has_ans_total"], m["no_ans_total"]) == (5, 2)
    assert m["f1"] == pytest.approx((5 * m["has_ans_f1"] + 2 * m["no_ans_f1"]) / 7)
    assert set(m["per_label"]) == {"HasAns", "NoAns"}
    assert evaluate_run(tmp_path / "run", "test")["no_ans_f1"] == pytest.approx(m["no_ans_f1"])
    context = "Peter Blackburn reported."
    pred = predict_records(tmp_path / "run", [{"question": "Who?", "context": context}])[0]
    assert 0 <= pred["score"] <= 1
    if pred["answer"]:  # a span: exactly the characters at its offsets, whitespace-trimmed
        assert context[pred["start"]:pred["end"]] == pred["answer"] == pred["answer"].strip()
    else:  # the SQuAD 2.0 null answer
        assert pred["start"] is None and pred["end"] is None


# the official evaluate-v1.1.py, kept independent of ftkit's implementation
def _official_normalize(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction, ground_truth):
    prediction_tokens = _official_normalize(prediction).split()
    ground_truth_tokens = _official_normalize(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _official_evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for art in dataset:
        for paragraph in art["paragraphs"]:
            for q in paragraph["qas"]:
                total += 1
                truths = [x["text"] for x in q["answers"]]
                pred = predictions[q["id"]]
                exact_match += max(_official_normalize(pred) == _official_normalize(t) for t in truths)
                f1 += max(_official_f1(pred, t) for t in truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def test_cli_eval_equals_the_official_script_on_predictions_of_the_export(trained):
    from ftkit.engine.inference import predict_records

    run, export, _, train = trained("bert")
    r = subprocess.run([sys.executable, "-m", "ftkit", "eval", str(run), "--split", "test", "--json"],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    dataset = json.loads(train.read_text(encoding="utf-8"))["data"]
    qas = [(q, p["context"]) for a in dataset for p in a["paragraphs"] for q in p["qas"]]
    preds = predict_records(export, [{"id": q["id"], "question": q["question"], "context": c} for q, c in qas])
    official = _official_evaluate(dataset, {p["id"]: p["answer"] for p in preds})
    assert cli["f1"] > 0.0, "the trained model should get some answers partly right"
    assert 100 * cli["exact_match"] == pytest.approx(official["exact_match"])
    assert 100 * cli["f1"] == pytest.approx(official["f1"])
    assert cli["examples"] == len(qas) == 10


# ---------------------------------------------------------------------------
# the command line


CLI_BAD = {
    "offset mismatch": ("train.json", BAD["offset mismatch"][1], "question 56be4db0acb8001400a502ec", "train.json"),
    "truncated json": ("train.json", json.dumps(V1)[:200], "invalid JSON", "train.json:1"),
    "missing context": ("train.jsonl", BAD["missing context"][1], "missing or empty 'context'", "train.jsonl:1"),
    "empty file": ("train.json", "", "empty file", "train.json"),
}


@pytest.mark.parametrize("name", list(CLI_BAD))
def test_cli_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, name):
    fname, text, fragment, where = CLI_BAD[name]
    path = write(tmp_path / fname, text)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "ftkit", "finetune", "--task", "qa", "--train", str(path),
                        "--output", str(out)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert fragment in errors[0] and where in errors[0]
    assert not out.exists()


def test_cli_predict_needs_question_and_context(trained, tmp_path):
    _, export, _, _ = trained("bert")
    r = subprocess.run([sys.executable, "-m", "ftkit", "predict", str(export), "--input", "-"],
                       input="Where is Paris?\n", capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "input record 1: missing or empty 'question'" in r.stderr and r.stdout == ""
