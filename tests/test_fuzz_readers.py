"""Property-based fuzzing: every reader either parses a file or raises FtkitError -- nothing else.

Inputs are random bytes, random text, and mutations (deleted/duplicated/swapped lines, cut
files, injected bytes) of valid files in each format.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftkit.errors import FtkitError
from ftkit.tasks.ner import NerTask

VALID = {
    "conll": "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nPeter NNP I-NP B-PER\nBlackburn NNP I-NP I-PER\n",
    "jsonl": '{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}\n{"tokens": ["Peter"], "tags": ["S-PER"]}\n',
    "csv": 'tokens,tags\n"EU rejects","B-ORG O"\n"Peter Blackburn","B-PER I-PER"\n',
    "tsv": "tokens\ttags\nEU rejects\tB-ORG O\n",
}

# reader name -> (file suffix, function(path) that reads it)
READERS = {
    "ner-conll": (".conll", lambda p: NerTask().read(str(p), "train")),
    "ner-jsonl": (".jsonl", lambda p: NerTask().read(str(p), "train")),
    "ner-csv": (".csv", lambda p: NerTask().read(str(p), "train")),
    "ner-tsv": (".tsv", lambda p: NerTask().read(str(p), "train")),
}
SEEDS = {"ner-conll": "conll", "ner-jsonl": "jsonl", "ner-csv": "csv", "ner-tsv": "tsv"}


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
    suffix, reader = READERS[name]
    payload = data.draw(st.one_of(st.binary(max_size=200), mutated(VALID[SEEDS[name]])))
    _check(reader, suffix, payload, tmp_path_factory)
