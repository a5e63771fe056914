"""CoNLL column files (CoNLL-2002/2003 style) and BIO tag-scheme handling.

- two or more whitespace-separated columns (spaces or tabs), the tag in the last
  column unless ``tag_column`` says otherwise;
- blank lines end sentences, ``-DOCSTART-`` lines are document markers;
- CRLF line endings and a UTF-8 BOM are accepted;
- read one sentence at a time (:func:`iter_conll`), whole or one part of a large file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from ftkit.data.lines import WHOLE, Part, iter_lines
from ftkit.errors import FtkitError

TAG_RE = re.compile(r"^(?:O|[BIES]-\S+)$")


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    line: int  # line of the first token (1-based)


def read_conll(path: str, tag_column: int = -1, encoding: str = "utf-8") -> list[Sentence]:
    return list(iter_conll(path, tag_column, encoding))


def iter_conll(path: str, tag_column: int = -1, encoding: str = "utf-8", part: Part = WHOLE) -> Iterator[Sentence]:
    """The sentences of a CoNLL file (or of one part of it), one at a time."""
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    ncols = None
    found = False
    for lineno, line in iter_lines(path, encoding, part, breaks="unicode"):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if tokens:
                found = True
                yield Sentence(tokens, tags, start)
            tokens, tags = [], []
            continue
        if len(cols) < 2:
            raise FtkitError(
                f"expected a token and a tag column, got 1 column ({cols[0]!r})", file=path, line=lineno,
                hint="CoNLL lines are 'TOKEN ... TAG' separated by spaces or tabs",
            )
        if ncols is not None and len(cols) != ncols and tag_column != -1:
            raise FtkitError(f"expected {ncols} columns as on earlier lines, got {len(cols)}", file=path, line=lineno)
        ncols = ncols or len(cols)
        try:
            tag = cols[tag_column]
        except IndexError:
            raise FtkitError(f"no column {tag_column} (line has {len(cols)} columns)", file=path, line=lineno) from None
        if not TAG_RE.match(tag):
            raise FtkitError(
                f"invalid tag {tag!r}", file=path, line=lineno,
                hint="tags are O or B-/I-/E-/S- followed by a type, e.g. B-PER",
            )
        if not tokens:
            start = lineno
        tokens.append(cols[0])
        tags.append(tag)
    if tokens:
        found = True
        yield Sentence(tokens, tags, start)
    if not found and part.whole:
        raise FtkitError("no sentences found (empty file or only -DOCSTART- lines)", file=path)


def detect_scheme(tag_seqs) -> str:
    """``bioes`` if E-/S- tags occur, ``iob1`` if a chunk starts with I-, else ``iob2``."""
    iob1 = False
    for tags in tag_seqs:
        prev = "O"
        for t in tags:
            if t[:2] in ("E-", "S-"):
                return "bioes"
            if t.startswith("I-") and not (prev != "O" and prev[2:] == t[2:]):
                iob1 = True
            prev = t
    return "iob1" if iob1 else "iob2"


def to_iob2(tags: list[str], scheme: str) -> list[str]:
    """Normalise one sentence's tags to IOB2 (a chunk always starts with B-)."""
    out = []
    prev = "O"
    for t in tags:
        if scheme == "bioes":
            if t.startswith("S-"):
                t = "B-" + t[2:]
            elif t.startswith("E-"):
                t = "I-" + t[2:]
        # IOB1 -> IOB2: an I- that does not continue a chunk of the same type opens one.
        # On IOB2 input this is a no-op, so it is safe to apply to both.
        if t.startswith("I-") and (prev == "O" or prev[2:] != t[2:]):
            t = "B-" + t[2:]
        out.append(t)
        prev = t
    return out
