"""CoNLL parsing edge cases and tag-scheme normalisation."""

import pytest
from conftest import write

from ftkit.data.conll import detect_scheme, read_conll, to_iob2
from ftkit.errors import FtkitError
from ftkit.tasks.ner import NerOptions, NerTask


def test_docstart_blank_lines_crlf_and_tabs(tmp_path):
    text = ("-DOCSTART- -X- -X- O\r\n\r\n"
            "EU\tNNP\tI-NP\tI-ORG\r\nrejects VBZ I-VP O\r\n\r\n\r\n"
            "Peter NNP I-NP I-PER\r\nBlackburn NNP I-NP I-PER\r\n")
    sents = read_conll(str(write(tmp_path / "a.conll", text)))
    assert [s.tokens for s in sents] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sents] == [["I-ORG", "O"], ["I-PER", "I-PER"]]
    assert [s.line for s in sents] == [3, 7]


def test_bom_and_trailing_text_without_newline(tmp_path):
    p = tmp_path / "b.conll"
    p.write_bytes(b"\xef\xbb\xbfParis B-LOC\nis O")
    sents = read_conll(str(p))
    assert sents[0].tokens == ["Paris", "is"]


def test_tag_column_option(tmp_path):
    p = write(tmp_path / "c.conll", "Paris B-LOC NNP\nis O VBZ\n")
    assert read_conll(str(p), tag_column=1)[0].tags == ["B-LOC", "O"]


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("Paris B-LOC\nis\n", 2, "expected a token and a tag column"),
        ("Paris B-LOC\nis X-FOO\n", 2, "invalid tag 'X-FOO'"),
        ("Paris LOC\n", 1, "invalid tag 'LOC'"),
        ("", None, "no sentences found"),
        ("-DOCSTART- -X- O O\n\n", None, "no sentences found"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, text, line, fragment):
    p = write(tmp_path / "bad.conll", text)
    with pytest.raises(FtkitError) as e:
        read_conll(str(p))
    msg = e.value.one_line()
    assert fragment in msg
    assert msg.startswith(f"{p}:{line}:" if line else f"{p}:")


def test_undecodable_bytes_report_their_line(tmp_path):
    p = tmp_path / "latin.conll"
    p.write_bytes("Paris B-LOC\n\nM\u00fcnchen B-LOC\n".encode("latin-1"))
    with pytest.raises(FtkitError) as e:
        read_conll(str(p))
    assert f"{p}:3:" in e.value.one_line() and "utf-8" in e.value.one_line()
    # ... and the suggested fix works
    assert read_conll(str(p), encoding="latin-1")[1].tokens == ["M\u00fcnchen"]


def test_scheme_detection():
    assert detect_scheme([["I-PER", "I-PER", "O"]]) == "iob1"
    assert detect_scheme([["B-PER", "I-PER", "O", "B-LOC"]]) == "iob2"
    assert detect_scheme([["S-PER", "O", "B-LOC", "E-LOC"]]) == "bioes"
    assert detect_scheme([["O", "O"]]) == "iob2"


def test_iob1_to_iob2():
    # IOB1: B- only between two adjacent chunks of the same type
    tags = ["I-ORG", "O", "I-PER", "I-PER", "B-PER", "I-LOC", "I-MISC"]
    assert to_iob2(tags, "iob1") == ["B-ORG", "O", "B-PER", "I-PER", "B-PER", "B-LOC", "B-MISC"]


def test_iob2_is_unchanged_and_bioes_converts():
    iob2 = ["B-ORG", "I-ORG", "O", "B-PER", "B-PER"]
    assert to_iob2(iob2, "iob2") == iob2
    assert to_iob2(["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"], "bioes") == ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]


def test_entities_of_iob1_file_survive_normalisation(tmp_path):
    """Entity chunks are the same before and after conversion (scored by seqeval in IOB1 mode)."""
    from seqeval.metrics.sequence_labeling import get_entities

    from conftest import SAMPLES

    sents = read_conll(str(SAMPLES / "train.txt"))
    for s in sents[:300]:
        # conlleval chunking of IOB1 input == chunking of our IOB2 output
        assert get_entities(s.tags) == get_entities(to_iob2(s.tags, "iob1"))


def test_ner_reader_jsonl_and_label_checks(tmp_path):
    task = NerTask(NerOptions())
    train = write(tmp_path / "train.jsonl",
                  '{"tokens": ["Paris", "is", "big"], "tags": ["B-LOC", "O", "O"]}\n'
                  '{"tokens": ["Bob"], "tags": ["S-PER"]}\n')
    ds = task.read(str(train), "train")
    assert task.data_summary(ds, "train")["tag_scheme"] == "bioes"  # the file's scheme, from all its sentences
    assert ds["tags"] == [["B-LOC", "O", "O"], ["B-PER"]]
    assert task.labels(ds) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]

    bad = write(tmp_path / "dev.jsonl", '{"tokens": ["Acme"], "tags": ["B-ORG"]}\n')
    with pytest.raises(FtkitError, match=r"dev.jsonl:1: entity type 'ORG' \(B-ORG\) never occurs in the training data"):
        task.check_labels(task.read(str(bad), "validation"), task.labels(ds), str(bad))


@pytest.mark.parametrize(
    "line, fragment",
    [
        ('{"tokens": ["a", "b"], "tags": ["O"]}', "2 tokens but 1 tags"),
        ('{"tokens": ["a"]}', "missing field 'tags'"),
        ('{"tokens": [], "tags": []}', "empty sentence"),
        ('{"tokens": ["a"], "tags": ["PER"]}', "invalid tag 'PER'"),
        ('{"tokens": ["a"], "tags": ["O"]', "invalid JSON"),
        ('["a", "O"]', "expected a JSON object"),
    ],
)
def test_ner_jsonl_errors(tmp_path, line, fragment):
    p = write(tmp_path / "x.jsonl", '{"tokens": ["ok"], "tags": ["O"]}\n' + line + "\n")
    with pytest.raises(FtkitError) as e:
        NerTask().read(str(p), "train")
    assert fragment in str(e.value) and f"{p}:2:" in str(e.value)


def test_ner_reader_csv_and_parquet(tmp_path):
    import pandas as pd

    csv = write(tmp_path / "t.csv", 'tokens,tags\n"New York rocks","B-LOC I-LOC O"\n')
    assert NerTask().read(str(csv), "train")["tokens"] == [["New", "York", "rocks"]]
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"tokens": [["Bob", "runs"]], "tags": [["B-PER", "O"]]}).to_parquet(pq)
    assert NerTask().read(str(pq), "train")["tags"] == [["B-PER", "O"]]


def test_ner_reader_datasets_folder_with_classlabels(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    feats = Features({"tokens": Sequence(Value("string")),
                      "ner_tags": Sequence(ClassLabel(names=["O", "B-PER", "I-PER"]))})
    Dataset.from_dict({"tokens": [["Ann", "Lee", "x"]], "ner_tags": [[1, 2, 0]]}, features=feats).save_to_disk(
        str(tmp_path / "ds"))
    ds = NerTask(NerOptions(tags_field="ner_tags")).read(str(tmp_path / "ds"), "train")
    assert ds["tags"] == [["B-PER", "I-PER", "O"]]
