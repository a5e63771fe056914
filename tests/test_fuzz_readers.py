"""Property-based fuzzing: every reader either parses a file or raises FtkitError -- nothing else.

Inputs are random bytes, random text, and mutations (deleted/duplicated/swapped lines, cut
files, injected bytes) of valid files in each format.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftkit.errors import FtkitError
from ftkit.tasks.classification import ClassificationOptions, ClassificationTask
from ftkit.tasks.ner import NerTask
from ftkit.tasks.qa import QaTask
from ftkit.tasks.relation import RelationTask
from ftkit.tasks.translation import TranslationTask

SQUAD = ('{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Paris is the capital of France.", '
         '"qas": [{"id": "q1", "question": "What is the capital?", "answers": [{"text": "Paris", "answer_start": 0}]}, '
         '{"id": "q2", "question": "Of what?", "answers": [{"text": "France", "answer_start": 24}]}]}]}]}')
SEMEVAL = ('1\t"The <e1>child</e1> was wrapped into the <e2>cradle</e2>."\r\nOther\r\nComment:\r\n\r\n'
           '2\t"The <e1>burst</e1> was caused by <e2>pressure</e2>."\r\nCause-Effect(e2,e1)\r\nComment: x\r\n\r\n')

VALID = {
    "conll": "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nPeter NNP I-NP B-PER\nBlackburn NNP I-NP I-PER\n",
    "jsonl": '{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}\n{"tokens": ["Peter"], "tags": ["S-PER"]}\n',
    "csv": 'tokens,tags\n"EU rejects","B-ORG O"\n"Peter Blackburn","B-PER I-PER"\n',
    "tsv": "tokens\ttags\nEU rejects\tB-ORG O\n",
}

VALID.update({
    "semeval": SEMEVAL,
    "squad": SQUAD,
    "qa-jsonl": '{"id": "a", "question": "Who?", "context": "Bob ran.", "answers": {"text": ["Bob"], "answer_start": [0]}}\n',
    "parallel": "a dog runs\nthe cat sleeps\n",
    "sst2-lines": "1 a good film\n0 a bad film\n1 fine\n0 dull\n",
    "cls-jsonl": '{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n{"text": "fine", "label": "pos"}\n'
                 '{"text": "dull", "label": "neg"}\n',
})


def _parallel(p):
    # the fuzzed bytes are the German side; the English side is valid
    p.with_suffix(".en").write_text("a dog runs\nthe cat sleeps\n")
    p.rename(p.with_suffix(".de"))
    return TranslationTask().read(str(p.with_suffix("")), "train")


# reader name -> (file suffix, function(path) that reads it, seed text)
READERS = {
    "ner-conll": (".conll", lambda p: NerTask().read(str(p), "train"), "conll"),
    "ner-jsonl": (".jsonl", lambda p: NerTask().read(str(p), "train"), "jsonl"),
    "ner-csv": (".csv", lambda p: NerTask().read(str(p), "train"), "csv"),
    "ner-tsv": (".tsv", lambda p: NerTask().read(str(p), "train"), "tsv"),
    "relation-semeval": (".txt", lambda p: RelationTask().read(str(p), "train"), "semeval"),
    "qa-squad-json": (".json", lambda p: QaTask().read(str(p), "train"), "squad"),
    "qa-flat-jsonl": (".jsonl", lambda p: QaTask().read(str(p), "train"), "qa-jsonl"),
    "translation-parallel": (".txt", _parallel, "parallel"),
    "classification-lines": (".txt", lambda p: ClassificationTask(ClassificationOptions(line_format="label_text"))
                             .read(str(p), "train"), "sst2-lines"),
    "classification-jsonl": (".jsonl", lambda p: ClassificationTask().read(str(p), "train"), "cls-jsonl"),
}


@st.composite
def mutated(draw, text: str):
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["delete", "dup", "swap", "cut", "inject", "replace_char", "crlf"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cut":
            k = draw(st.integers(0, max(0, len(lines[i]) - 1)))
            lines[i] = lines[i][:k]
        elif op == "inject":
            lines.insert(i, draw(st.text(max_size=30)))
        elif op == "replace_char":
            line = lines[i]
            if line:
                k = draw(st.integers(0, len(line) - 1))
                lines[i] = line[:k] + draw(st.characters()) + line[k + 1:]
        elif op == "crlf":
            lines[i] = lines[i].replace("\n", "\r\n")
    data = "".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(max_size=4)) + data[pos:]
    return data


def _check(reader, suffix, data, tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / f"input{suffix}"
    p.write_bytes(data)
    try:
        reader(p)
    except FtkitError as e:
        assert "\n" not in e.one_line()


@pytest.mark.parametrize("name", list(READERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reader_parses_or_raises_ftkit_error(name, data, tmp_path_factory):
    suffix, reader, seed = READERS[name]
    payload = data.draw(st.one_of(st.binary(max_size=200), mutated(VALID[seed])))
    _check(reader, suffix, payload, tmp_path_factory)


@pytest.mark.parametrize("name", list(READERS))
def test_unmutated_seed_parses(name, tmp_path):
    suffix, reader, seed = READERS[name]
    p = tmp_path / f"input{suffix}"
    p.write_text(VALID[seed])
    assert len(reader(p)) >= 1
