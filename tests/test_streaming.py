"""Streaming readers, parallel parts, the caches of examples and features, and data.streaming.

The oracle is tests/legacy_readers.py: the readers as they were before streaming (whole file in
memory). The streamed, memory-mapped datasets must hold exactly their rows, in order, on every bundled
sample and on the fuzz corpus, and fail where they fail.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import legacy_readers
from conftest import write
from ftkit.data import lines as lines_mod
from ftkit.data.stream import build_split, stream_split
from ftkit.errors import FtkitError
from ftkit.tasks.classification import ClassificationOptions, ClassificationTask
from ftkit.tasks.ner import NerTask
from ftkit.tasks.qa import QaTask
from ftkit.tasks.relation import RelationTask
from ftkit.tasks.translation import TranslationTask
from test_fuzz_readers import VALID, mutated

SAMPLES = Path(__file__).resolve().parent.parent / "src" / "ftkit" / "samples"


def sst2():
    return ClassificationTask(ClassificationOptions(line_format="label_text"))


BUNDLED = [(NerTask, SAMPLES / "conll2003" / f"{s}.txt", s) for s in ("train", "validation", "test")] + \
    [(sst2, SAMPLES / "sst2" / f"{s}.txt", s) for s in ("train", "validation", "test")] + \
    [(QaTask, SAMPLES / "squad" / f"{s}.json", s) for s in ("train", "validation", "test")] + \
    [(RelationTask, SAMPLES / "semeval2010" / f"{s}.txt", s) for s in ("train", "test")] + \
    [(TranslationTask, SAMPLES / "multi30k" / s, s) for s in ("train", "val", "test")]


def outcome(read):
    try:
        return "rows", read().to_list()
    except FtkitError:
        return "error", None


@pytest.fixture
def no_cache(monkeypatch):
    monkeypatch.setenv("FTKIT_NO_CACHE", "1")


@pytest.mark.parametrize("make,path,split", BUNDLED, ids=[f"{p.parent.name}-{p.name}" for _, p, _ in BUNDLED])
def test_streamed_rows_equal_the_old_reader_on_bundled_samples(make, path, split, no_cache, monkeypatch):
    task = make()
    old = legacy_readers.read(task, str(path), split).to_list()
    assert build_split(task, str(path), split).to_list() == old
    # cut into parts read by 3 processes: the same rows, in the same order
    monkeypatch.setattr(lines_mod, "MIN_PART_BYTES", 2048)
    parts = task.parts(str(path), split, "auto", "utf-8", 3)
    if isinstance(task, (NerTask, RelationTask)) or (isinstance(task, ClassificationTask)):
        assert len(parts) == 3 and parts[1].first_line > 1
    ds = build_split(task, str(path), split, workers=3)
    assert ds.to_list() == old
    assert task.data_summary(ds, split) == task.data_summary(legacy_readers.read(task, str(path), split), split)


def _parallel_reader(p):
    p.with_suffix(".en").write_text("a dog runs\nthe cat sleeps\n")
    p.rename(p.with_suffix(".de"))
    return str(p.with_suffix(""))


# reader -> (suffix, task, seed text, path transform)
FUZZ = {
    "ner-conll": (".conll", NerTask, "conll", str),
    "ner-jsonl": (".jsonl", NerTask, "jsonl", str),
    "ner-csv": (".csv", NerTask, "csv", str),
    "ner-tsv": (".tsv", NerTask, "tsv", str),
    "relation-semeval": (".txt", RelationTask, "semeval", str),
    "qa-squad-json": (".json", QaTask, "squad", str),
    "qa-flat-jsonl": (".jsonl", QaTask, "qa-jsonl", str),
    "translation-parallel": (".txt", TranslationTask, "parallel", _parallel_reader),
    "classification-lines": (".txt", sst2, "sst2-lines", str),
    "classification-jsonl": (".jsonl", ClassificationTask, "cls-jsonl", str),
}


@pytest.mark.parametrize("name", list(FUZZ))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_streamed_rows_equal_the_old_reader_on_the_fuzz_corpus(name, data, tmp_path_factory):
    suffix, make, seed, to_path = FUZZ[name]
    payload = data.draw(st.one_of(st.binary(max_size=200), mutated(VALID[seed])))
    p = tmp_path_factory.mktemp("fuzz") / f"input{suffix}"
    p.write_bytes(payload)
    path = to_path(p)
    task = make()
    old = outcome(lambda: legacy_readers.read(task, path, "train"))
    new = outcome(lambda: build_split(task, path, "train"))
    assert new == old


def _big_squad(n_articles: int, version_last: str | None = None) -> dict:
    context = "Paris is the capital of France and its largest city. " * 8
    data = [{"title": f"T{a}", "paragraphs": [{"context": context, "qas": [
        {"id": f"q{a}-{q}", "question": f"Which city {q}?", "answers": [{"text": "Paris", "answer_start": 0}]}
        for q in range(6)]}]} for a in range(n_articles)]
    doc = {"data": data}
    if version_last:
        doc["version"] = version_last  # after the data, as in the official v1.1 files
    return doc


def test_large_squad_document_is_streamed(tmp_path, no_cache):
    doc = _big_squad(1200, version_last="2.0")
    path = write(tmp_path / "big.json", json.dumps(doc))  # one line, over 1 MiB: read with ijson
    assert path.stat().st_size > (1 << 20)
    task = QaTask()
    new = build_split(task, str(path), "train")
    assert new.to_list() == legacy_readers.read(task, str(path), "train").to_list()
    assert set(new["squad_v2"]) == {True} and task.resolve_options(new, None).version_2_with_negative
    sliced = QaTask(task.Options(articles={"test": "-3:"}))
    assert sorted(set(build_split(sliced, str(path), "test")["title"])) == ["T1197", "T1198", "T1199"]
    broken = write(tmp_path / "broken.json", json.dumps(doc, indent=1)[:-40])
    with pytest.raises(FtkitError, match=r"broken\.json:\d+: invalid JSON"):
        build_split(task, str(broken), "train")


def _conll_with_error_at(path: Path, bad_line: int) -> Path:
    sentence = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\n"  # 5 lines
    n = (bad_line - 1) // 5
    with open(path, "w") as f:
        f.write(sentence * n)
        f.write("\n" * (bad_line - 1 - 5 * n))
        f.write("Peter PERSON\n")
        f.write(sentence * 20)
    return path


def _ftkit(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ftkit", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_bad_line_deep_in_a_large_file_is_reported_and_leaves_no_cache_entry(tmp_path):
    big = _conll_with_error_at(tmp_path / "big.conll", 900_000)
    cache = tmp_path / "cache"
    env = {"FTKIT_CACHE_DIR": str(cache)}
    out = _ftkit("validate", "--task", "ner", "--train", str(big), "--workers", "2", env=env)
    assert out.returncode == 2, out.stderr
    assert f"error: {big}:900000: invalid tag 'PERSON'" in out.stdout
    out = _ftkit("finetune", "--task", "ner", "--train", str(big), "--validation", str(big), "--max-steps", "1",
                 "--output", str(tmp_path / "run"), env=env)
    assert out.returncode == 2 and f"{big}:900000: invalid tag" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()
    entries = list((cache / "examples").iterdir()) if (cache / "examples").exists() else []
    assert entries == [], "a split that failed leaves nothing in the cache"
    out = _ftkit("validate", "--task", "ner", "--train", str(big), "--workers", "0", env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--workers" in out.stderr


def test_examples_cache_hit_and_an_edited_file_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "train.conll"
    path.write_text((SAMPLES / "conll2003" / "train.txt").read_text())
    task = NerTask()
    first = build_split(task, str(path), "train")
    calls = []
    orig = NerTask.iter_examples
    monkeypatch.setattr(NerTask, "iter_examples", lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    again = build_split(task, str(path), "train")
    assert calls == [] and again._fingerprint == first._fingerprint and again.to_list() == first.to_list()
    assert task.data_summary(again, "train") == task.data_summary(first, "train")
    # the same size and modification time, one tag changed: read again, not served stale
    stat = path.stat()
    text = path.read_text()
    assert text.startswith("-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\n")
    path.write_text(text.replace("EU NNP I-NP I-ORG", "UE NNP I-NP I-LOC", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = build_split(task, str(path), "train")
    assert calls and edited._fingerprint != first._fingerprint
    assert edited[0]["tokens"][0] == "UE" and edited[0]["tags"][0] == "B-LOC"
    before, after = task.data_summary(first)["entities"], task.data_summary(edited)["entities"]
    assert (after["LOC"], after["ORG"]) == (before["LOC"] + 1, before["ORG"] - 1)
    # other options are another entry
    assert build_split(NerTask(task.Options(tag_scheme="iob2")), str(path), "train")._fingerprint != \
        edited._fingerprint


def _encoder_cases():
    return [
        (NerTask(), SAMPLES / "conll2003" / "validation.txt"),
        (sst2(), SAMPLES / "sst2" / "validation.txt"),
        (QaTask(), SAMPLES / "squad" / "validation.json"),
        (RelationTask(), SAMPLES / "semeval2010" / "test.txt"),
        (TranslationTask(), SAMPLES / "multi30k" / "val"),
    ]


def test_parallel_encoding_equals_one_process_and_is_cached(tiny_models, monkeypatch, tmp_path):
    """Every task's encoder runs in worker processes (its batch function pickles), gives the features one
    process gives, and a second run loads them from the cache."""
    import ftkit.data.parallel as parallel
    from ftkit.engine.feature_cache import encode_cached
    from ftkit.engine.models import resolve_facts
    from ftkit.families import load_config, load_tokenizer

    monkeypatch.setenv("FTKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(parallel, "MIN_ROWS_PER_WORKER", 10)
    info = load_config(str(tiny_models("bert")))
    for task, path in _encoder_cases():
        examples = build_split(task, str(path), "validation")
        examples = examples.select(range(min(60, len(examples))))
        tokenizer = load_tokenizer(info)
        bound, facts = resolve_facts(task, examples, task.labels(examples), info, tokenizer, 64)
        one = bound.encode(examples, tokenizer, facts, train=True).to_list()
        two = encode_cached(bound, facts, examples, tokenizer, train=True, workers=2)
        assert len(two.cache_files) == 2, task.name  # written by two processes
        assert two.to_list() == one, task.name
        calls = []
        with monkeypatch.context() as m:
            m.setattr(type(bound), "encode", lambda *a, **k: calls.append(1))
            assert encode_cached(bound, facts, examples, tokenizer, train=True, workers=2).to_list() == one
        assert calls == [], task.name


def test_streaming_mode_trains_on_a_saved_dataset(tiny_models, tmp_path, monkeypatch):
    from datasets import Dataset, DatasetDict
    from typer.testing import CliRunner

    import ftkit
    from ftkit.cli import app

    monkeypatch.setenv("FTKIT_CACHE_DIR", str(tmp_path / "cache"))
    rows = [{"text": line.split(" ", 1)[1], "label": int(line[0])}
            for line in (SAMPLES / "sst2" / "train.txt").read_text().splitlines()[:120]]
    DatasetDict({"train": Dataset.from_list(rows[:100]), "validation": Dataset.from_list(rows[100:])}).save_to_disk(
        str(tmp_path / "ds"))
    task = ClassificationTask()
    stream = stream_split(task, str(tmp_path / "ds"), "train", "auto")
    assert type(stream).__name__ == "IterableDataset"
    assert list(stream) == build_split(task, str(tmp_path / "ds"), "train").to_list()
    assert task.data_summary(stream)["examples"] == 100 and task.labels(stream) == ["0", "1"]

    run = ftkit.finetune("classification", model=str(tiny_models("bert")), train=str(tmp_path / "ds"),
                         validation=str(tmp_path / "ds"), output=tmp_path / "run", max_steps=3, batch_size=8,
                         overrides={"data.streaming": True, "training.eval_strategy": "no"})
    assert run.train_steps == 3 and run.metrics["validation"]["examples"] == 20
    assert run.meta["data"]["train"]["examples"] == 100

    result = CliRunner().invoke(app, ["finetune", "--task", "classification", "--train", str(tmp_path / "ds"),
                                      "--epochs", "1", "--set", "data.streaming=true", "--output",
                                      str(tmp_path / "run2")])
    assert result.exit_code == 2
    err = result.output.strip().splitlines()[-1]
    assert err.startswith("error: ") and "epochs are undefined" in err and "--max-steps" in err
    assert not (tmp_path / "run2").exists()


def test_in_memory_examples_pickle_and_map_without_hashing(monkeypatch):
    """The examples ``predict`` builds in memory are ``UnhashedMaps``: pickled by name into map's worker
    processes, and ``map`` never hashes the function it maps (a server would pay for it on every batch)."""
    import pickle

    import datasets.arrow_dataset

    from ftkit.data.parallel import in_memory
    from ftkit.data.unhashed import UnhashedMaps, unhashed

    examples = in_memory({"text": ["a b", "c", "d e f"], "n": [1, 2, 3]})
    assert isinstance(examples, UnhashedMaps)
    again = pickle.loads(pickle.dumps(examples))
    assert type(again) is UnhashedMaps and again.to_list() == examples.to_list()
    assert unhashed(examples) is examples
    assert type(unhashed(datasets.Dataset.from_dict({"n": [1]}))) is UnhashedMaps

    two = examples.map(lambda b: {"m": [x * 10 for x in b["n"]]}, batched=True, batch_size=2, num_proc=2)
    assert two["m"][:] == [10, 20, 30]

    def no_hashing(*args, **kwargs):
        raise AssertionError("Dataset.map hashed its function")

    monkeypatch.setattr(datasets.arrow_dataset, "update_fingerprint", no_hashing)
    words = examples.map(lambda b: {"words": [len(t.split()) for t in b["text"]]}, batched=True)
    assert words["words"][:] == [2, 1, 3]
