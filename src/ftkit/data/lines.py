"""Text files read one line at a time, whole or in parts: what every streaming reader is built on.

``iter_lines`` decodes one line at a time, so memory does not grow with the file, and numbers
lines exactly as reading the whole text did:

- ``breaks="newline"``: a line ends at "\\n" only, a "\\r" before it is kept for the reader to strip
  (``text.split("\\n")``, without the empty string after a final newline);
- ``breaks="unicode"``: every break ``str.splitlines`` knows ends a line ("\\r", "\\x0b", "\\x85", "\\u2028"...);
- ``breaks="csv"``: lines keep their ends and end at "\\n", "\\r" or "\\r\\n" (``open(newline="")``, what
  the csv module expects).

Undecodable bytes are reported with their (physical) line; a UTF-8 byte-order mark is skipped.
Encodings in which "\\n" is not the byte 0x0A (UTF-16, UTF-32, UTF-8 with signature) are decoded whole.

:func:`plan_parts` cuts a large file into byte ranges (:class:`Part`) that each start at a record
boundary -- the start of a line, or the line after a blank line -- and knows the line number each
one starts at, so N processes can read one file at once and still name every line exactly.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from ftkit.errors import FtkitError

Breaks = Literal["newline", "unicode", "csv"]
BOM = b"\xef\xbb\xbf"
#: parts are at least this large (reading a small file in parts costs more than it saves)
MIN_PART_BYTES = 4 << 20
#: bytes that ``str.splitlines`` treats as line breaks besides "\n" (and "\r" not before "\n"), in the
#: single-byte and UTF-8 encodings a file can be cut in: such a file is read in one part
_EXOTIC_BREAKS = re.compile(rb"[\x0b\x0c\x1c-\x1e\x85]|\r(?!\n)|\xe2\x80[\xa8\xa9]")
_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")
_CSV_LINES = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")
#: stateless encodings in which every byte 0x0A is a "\n": a file in one of them can be cut anywhere
_CUTTABLE = re.compile(r"^(utf[-_]?8|ascii|us-ascii|latin[-_]?1|iso8859.*|cp125\d)$")


@dataclass(frozen=True)
class Part:
    """A piece of one input that a reader can read on its own.

    For text files, bytes ``[start, end)`` (``end`` None: to the end) whose first line is line
    ``first_line``; records are counted from the part's start. ``streaming`` asks hub datasets to be
    streamed rather than downloaded (``data.streaming``). ``Part()`` is the whole input.
    """

    start: int = 0
    end: int | None = None
    first_line: int = 1
    streaming: bool = False

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None


WHOLE = Part()


def codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise FtkitError(f"unknown encoding '{encoding}'") from None


def line_by_line(encoding: str) -> bool:
    """Whether "\\n" is the byte 0x0A in ``encoding`` (so a file can be split into lines as bytes)."""
    try:
        return "a\n".encode(codec_name(encoding)) == b"a\n"
    except UnicodeError:
        return False


def _strips_bom(encoding: str) -> bool:
    # as reading the whole file did: only for an encoding declared as utf-8 / utf8
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def open_binary(path: str | Path):
    p = Path(path)
    try:
        return open(p, "rb")
    except FileNotFoundError:
        raise FtkitError("file not found", file=p) from None
    except IsADirectoryError:
        raise FtkitError("expected a file, got a folder", file=p) from None
    except OSError as e:
        raise FtkitError(f"cannot read: {e.strerror}", file=p) from None


def decode_error(path, encoding: str, data: bytes, e: UnicodeDecodeError, line: int) -> FtkitError:
    return FtkitError(
        f"bytes {data[e.start:e.start + 4]!r} are not valid {encoding}", file=path, line=line,
        hint="pass --set data.encoding=latin-1 (or the file's encoding)",
    )


def _split(text: str, breaks: Breaks) -> list[str]:
    if breaks == "unicode":
        return text.splitlines()
    if breaks == "csv":
        return [piece for piece in _CSV_LINES.split(text) if piece]
    return [text[:-1] if text.endswith("\n") else text]


def iter_lines(path: str | Path, encoding: str = "utf-8", part: Part = WHOLE,
               breaks: Breaks = "newline") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for every line of ``part`` of a text file (see the module doc)."""
    codec = codec_name(encoding)
    if not line_by_line(encoding):
        if not part.whole:
            raise ValueError(f"a file in {encoding} cannot be read in parts")
        yield from _whole_lines(path, encoding, breaks)
        return
    decoder = codecs.getincrementaldecoder(codec)("strict")
    lineno, physical = part.first_line, part.first_line
    with open_binary(path) as f:
        f.seek(part.start)
        left = None if part.end is None else part.end - part.start
        first = part.start == 0
        raw = b""
        for raw in f:
            if left is not None:
                if left <= 0:
                    break
                left -= len(raw)
            if first:
                first = False
                if raw.startswith(BOM) and _strips_bom(encoding):
                    raw = raw[3:]
            try:
                text = decoder.decode(raw)
            except UnicodeDecodeError as e:
                raise decode_error(path, encoding, e.object, e, physical) from None
            for piece in _split(text, breaks):
                yield lineno, piece
                lineno += 1
            physical += 1
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            raise decode_error(path, encoding, e.object, e, max(physical - 1, 1)) from None


def _whole_lines(path, encoding: str, breaks: Breaks) -> Iterator[tuple[int, str]]:
    text = read_text(path, encoding)
    if breaks == "unicode":
        pieces = text.splitlines()
    elif breaks == "csv":
        pieces = _split(text, "csv")
    else:
        pieces = text.split("\n")
        if pieces and pieces[-1] == "":
            pieces.pop()
    yield from enumerate(pieces, 1)


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a whole text file; undecodable bytes are reported with their line number (streaming readers
    use :func:`ftkit.data.lines.iter_lines`)."""
    p = Path(path)
    with open_binary(p) as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf") and encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        raw = raw[3:]
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise FtkitError(
            f"bytes {raw[e.start:e.start + 4]!r} are not valid {encoding}",
            file=p, line=line, hint="pass --set data.encoding=latin-1 (or the file's encoding)",
        ) from None
    except LookupError:
        raise FtkitError(f"unknown encoding '{encoding}'") from None


def peek_text(path: str | Path, encoding: str = "utf-8", size: int = 1 << 16) -> str:
    """The first characters of a text file (undecodable bytes replaced): enough to tell its format."""
    with open_binary(path) as f:
        raw = f.read(size)
    if raw.startswith(BOM) and _strips_bom(encoding):
        raw = raw[3:]
    return codecs.getincrementaldecoder(codec_name(encoding))("replace").decode(raw)


def count_lines(path: str | Path, encoding: str = "utf-8") -> int:
    """The number of lines ``iter_lines(breaks="newline")`` yields, counted as bytes (no decoding)."""
    if not line_by_line(encoding):
        return sum(1 for _ in _whole_lines(path, encoding, "newline"))
    n, last = 0, b""
    with open_binary(path) as f:
        while block := f.read(1 << 22):
            n += block.count(b"\n")
            last = block
    return n + (1 if last and not last.endswith(b"\n") else 0)


def _exotic(data: bytes) -> bool:
    """Whether ``data`` holds a line break other than "\\n" and "\\r\\n" (a "\\r" at its very end is decided
    with the next block)."""
    return any(not (m.group() == b"\r" and m.end() == len(data)) for m in _EXOTIC_BREAKS.finditer(data))


def plan_parts(path: str | Path, n: int, encoding: str = "utf-8", boundary: Literal["line", "blank"] = "line",
               breaks: Breaks = "newline", min_bytes: int | None = None) -> list[Part]:
    """At most ``n`` parts of a text file of about equal size, each starting at a record boundary.

    ``boundary="line"``: after any "\\n" (one record per line); ``"blank"``: after a blank line (records
    of several lines separated by blank lines, as CoNLL sentences). With ``breaks="unicode"`` a file that
    holds any break other than "\\n" and "\\r\\n" stays whole (those would shift the line numbers of the
    later parts). A small file, or one in an encoding that cannot be cut, is one part.
    """
    min_bytes = MIN_PART_BYTES if min_bytes is None else min_bytes
    try:
        size = os.path.getsize(path)
    except OSError:
        return [WHOLE]
    n = min(n, size // max(min_bytes, 1))
    if n <= 1 or not _CUTTABLE.match(codec_name(encoding)):
        return [WHOLE]
    targets = [size * k // n for k in range(1, n)]
    cuts: list[tuple[int, int]] = []  # (byte offset, line number there)
    pattern = re.compile(b"\n") if boundary == "line" else _BLANK_LINE
    block_size = 1 << 22
    lines_before, offset, tail = 0, 0, b""
    with open_binary(path) as f:
        while targets:
            block = f.read(block_size)
            if not block:
                break
            if breaks == "unicode" and _exotic(tail[-2:] + block):
                return [WHOLE]
            # the tail of the last block lets a boundary straddle two blocks
            data, base = tail + block, offset - len(tail)
            while targets and targets[0] < offset + len(block):
                m = pattern.search(data, max(targets[0] - base, 0))
                if m is None:
                    break
                cut = base + m.end()
                line = lines_before + data.count(b"\n", len(tail), m.end()) + 1
                cuts.append((cut, line))
                targets = [t for t in targets if t > cut]
            lines_before += block.count(b"\n")
            offset += len(block)
            tail = block[-64:]
    if not cuts:
        return [WHOLE]
    starts = [(0, 1)] + [c for c in cuts if 0 < c[0] < size]
    return [Part(start=s, end=(starts[i + 1][0] if i + 1 < len(starts) else None), first_line=line)
            for i, (s, line) in enumerate(starts)]
