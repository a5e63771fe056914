"""The readers as they were before streaming (ftkit commit fd8314a): whole file in memory, rows in a list.

A frozen copy, kept only as the oracle of tests/test_streaming.py: the streaming readers must give the
same rows, in the same order, or fail where these fail. Shared per-record validators (labels, spans,
answers) are imported from ftkit; everything about files, lines and order is the old code.
"""
# ruff: noqa
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ftkit.data.conll import TAG_RE, detect_scheme, to_iob2
from ftkit.data.records import detect_format
from ftkit.errors import FtkitError
from ftkit.recipes import resolve_packaged
from ftkit.tasks.classification import LABEL_TEXT_RE, STRUCTURED, TREC_LABEL_RE, _error_at
from ftkit.tasks.qa import _answers_of, _check_question, _select
from ftkit.tasks.relation import LABEL_HINT, LABEL_LINE_RE, SENTENCE_LINE_RE, _row, parse_marked, unwrap_semeval_sentence


@dataclass(frozen=True)
class Record:
    """One input record and its location (line number for text files, index otherwise)."""

    source: str
    line: int | None
    index: int
    data: dict[str, Any]

    @property
    def where(self) -> str:
        """``file:line`` for text files, ``file: record N`` otherwise (how every message names a record)."""
        return f"{self.source}:{self.line}" if self.line is not None else f"{self.source}: record {self.index}"

    def error(self, message: str, hint: str | None = None) -> FtkitError:
        if self.line is not None:
            return FtkitError(message, file=self.source, line=self.line, hint=hint)
        return FtkitError(message, file=self.source, record=f"record {self.index}", hint=hint)


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a text file; undecodable bytes are reported with their line number."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FtkitError("file not found", file=p) from None
    except IsADirectoryError:
        raise FtkitError("expected a file, got a folder", file=p) from None
    except OSError as e:
        raise FtkitError(f"cannot read: {e.strerror}", file=p) from None
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


def _iter_jsonl(path: str, encoding: str) -> Iterator[Record]:
    text = read_text(path, encoding)
    stripped = text.lstrip()
    if stripped.startswith("["):
        raise FtkitError("expected JSON Lines (one object per line), got a JSON array", file=path, line=1)
    index = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise FtkitError(f"invalid JSON: {e.msg} (column {e.colno})", file=path, line=lineno) from None
        if not isinstance(obj, dict):
            raise FtkitError(f"expected a JSON object, got {type(obj).__name__}", file=path, line=lineno)
        yield Record(path, lineno, index, obj)
        index += 1


def _iter_csv(path: str, encoding: str, delimiter: str) -> Iterator[Record]:
    text = read_text(path, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise FtkitError("empty file (expected a header row)", file=path) from None
    except csv.Error as e:
        raise FtkitError(f"malformed CSV: {e}", file=path, line=1) from None
    header = [h.strip() for h in header]
    index = 0
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise FtkitError(
                    f"expected {len(header)} fields ({', '.join(header)}), got {len(row)}", file=path, line=lineno
                )
            yield Record(path, lineno, index, dict(zip(header, row)))
            index += 1
    except csv.Error as e:
        raise FtkitError(f"malformed CSV: {e}", file=path, line=reader.line_num) from None


def _iter_dataset(ds, source: str) -> Iterator[Record]:
    from datasets import ClassLabel, Sequence

    # Integer class labels (e.g. HF conll2003 ner_tags) are turned back into their names.
    converters = {}
    for name, feat in ds.features.items():
        if isinstance(feat, ClassLabel):
            converters[name] = feat.int2str
        elif isinstance(feat, Sequence) and isinstance(feat.feature, ClassLabel):
            converters[name] = lambda v, f=feat.feature: [f.int2str(x) for x in v]
        elif type(feat).__name__ == "List" and isinstance(getattr(feat, "feature", None), ClassLabel):
            converters[name] = lambda v, f=feat.feature: [f.int2str(x) for x in v]
    for i, row in enumerate(ds):
        for k, conv in converters.items():
            row[k] = conv(row[k])
        yield Record(source, None, i, row)


def _load_disk(path: str, split: str):
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(path)
    except Exception as e:  # datasets raises several types for a bad folder
        raise FtkitError(f"cannot load `datasets` folder: {e}", file=path) from None
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise FtkitError(f"no split '{split}' in this DatasetDict (has: {', '.join(ds)})", file=path)
        ds = ds[split]
    return ds


def _load_hub(name: str, split: str):
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise FtkitError(
            "not a local file or folder, and the Hugging Face hub is offline (HF_HUB_OFFLINE=1)", file=name
        )
    from datasets import load_dataset

    repo, _, hub_split = name.partition(":")
    try:
        return load_dataset(repo, split=hub_split or split)
    except Exception as e:
        raise FtkitError(f"cannot load hub dataset: {str(e).splitlines()[0][:200]}", file=name) from None


def iter_records(path: str, fmt: str, split: str, encoding: str = "utf-8") -> Iterator[Record]:
    """Records of a JSONL/CSV/TSV/Parquet file, a datasets folder or a hub dataset."""
    path = resolve_packaged(path)
    if fmt == "jsonl":
        yield from _iter_jsonl(path, encoding)
    elif fmt in ("csv", "tsv"):
        yield from _iter_csv(path, encoding, "," if fmt == "csv" else "\t")
    elif fmt == "parquet":
        from datasets import Dataset

        if not Path(path).is_file():
            raise FtkitError("file not found", file=path)
        try:
            ds = Dataset.from_parquet(path)
        except Exception as e:
            raise FtkitError(f"cannot read Parquet: {str(e).splitlines()[0][:200]}", file=path) from None
        yield from _iter_dataset(ds, path)
    elif fmt == "disk":
        yield from _iter_dataset(_load_disk(path, split), path)
    elif fmt == "hub":
        yield from _iter_dataset(_load_hub(path, split), path)
    else:
        raise FtkitError(f"format '{fmt}' is not supported here", file=path)


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    line: int


def read_conll(path: str, tag_column: int = -1, encoding: str = "utf-8") -> list[Sentence]:
    text = read_text(path, encoding)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    ncols = None

    def flush() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append(Sentence(tokens, tags, start))
        tokens, tags = [], []

    for lineno, line in enumerate(text.splitlines(), 1):
        cols = line.split()
        if not cols:
            flush()
            continue
        if cols[0] == "-DOCSTART-":
            flush()
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
    flush()
    if not sentences:
        raise FtkitError("no sentences found (empty file or only -DOCSTART- lines)", file=path)
    return sentences


def ner_sentences(self, path: str, split: str, fmt: str, encoding: str) -> list[dict[str, Any]]:
    o = self.options
    path = resolve_packaged(path)
    fmt = detect_format(path, fmt, default_text="conll")
    if fmt == "conll":
        return [
            {"tokens": s.tokens, "tags": s.tags, "source": f"{path}:{s.line}"}
            for s in read_conll(path, o.tag_column, encoding)
        ]
    rows = []
    for rec in iter_records(path, fmt, split, encoding):
        d = rec.data
        for key in (o.tokens_field, o.tags_field):
            if key not in d:
                raise rec.error(
                    f"missing field '{key}' (record has: {', '.join(map(str, d)) or 'nothing'})",
                    hint="set task_options.tokens_field / tags_field for other names",
                )
        tokens, tags = d[o.tokens_field], d[o.tags_field]
        if isinstance(tokens, str):
            tokens = tokens.split()
        if isinstance(tags, str):
            tags = tags.split()
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise rec.error(f"'{o.tokens_field}' must be a list of strings")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise rec.error(f"'{o.tags_field}' must be a list of tag strings")
        if not tokens:
            raise rec.error("empty sentence (no tokens)")
        if len(tokens) != len(tags):
            raise rec.error(f"{len(tokens)} tokens but {len(tags)} tags")
        for t in tags:
            if not TAG_RE.match(t):
                raise rec.error(f"invalid tag {t!r}", hint="tags are O or B-/I-/E-/S- followed by a type")
        rows.append({"tokens": tokens, "tags": tags, "source": rec.where})
    if not rows:
        raise FtkitError("no sentences found", file=path)
    return rows


def ner_read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
    from datasets import Dataset

    rows = ner_sentences(self, path, split, fmt, encoding)
    declared = self.options.tag_scheme
    for r in rows:
        # Each sentence is normalised on its own evidence (E-/S- tags: BIOES; a chunk opened by I-: IOB1).
        # That equals detecting one scheme for the whole file: the BIOES conversion includes the IOB1 one,
        # which changes nothing in IOB2. The input scheme is kept per sentence for the data summary.
        r["tag_scheme"] = declared if declared != "auto" else detect_scheme([r["tags"]])
        r["tags"] = to_iob2(r["tags"], r["tag_scheme"])
    return Dataset.from_list(rows)


def cls_from_records(self, path: str, fmt: str, split: str, encoding: str) -> list[dict[str, Any]]:
    o = self.options
    needed = [c for c in (o.text_column, o.text_pair_column, o.label_column) if c is not None]
    rows = []
    for rec in iter_records(path, fmt, split, encoding):
        d, where = rec.data, rec.where
        for key in needed:
            if key not in d:
                have = ", ".join(map(str, d)) or "nothing"
                raise rec.error(
                    f"missing column '{key}' (columns: {have})",
                    hint="set task_options.text_column / text_pair_column / label_column to the names used",
                )
        row = {"text": self._text(d[o.text_column], o.text_column, where)}
        if o.text_pair_column:
            row["text_pair"] = self._text(d[o.text_pair_column], o.text_pair_column, where)
        row["label"] = self._label(d[o.label_column], where)
        row["source"] = where
        rows.append(row)
    return rows


def cls_from_lines(self, path: str, encoding: str) -> list[dict[str, Any]]:
    o = self.options
    if o.text_pair_column:
        raise FtkitError("line files hold one text per line; text_pair_column needs CSV/TSV/JSONL/Parquet",
                         file=path)
    text = read_text(path, encoding)
    rows = []
    # split on "\n" only: str.splitlines() would also split on characters such as U+0085,
    # which a Latin-1 file can contain, and shift every line number after it
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        m = LABEL_TEXT_RE.match(line.strip())
        if not m:
            raise _error_at(where, "expected '<label> <text>' (a label, a space, then the text)")
        raw, body = m.groups()
        if o.line_format != "label_text":
            t = TREC_LABEL_RE.match(raw)
            if not t:
                raise _error_at(where, f"expected a TREC 'COARSE:fine' label, got {raw!r}",
                                hint="use task_options.line_format=label_text for '<label> <text>' lines")
            raw = t.group(1) if o.line_format == "trec_coarse" else raw
        rows.append({"text": body, "label": self._label(raw, where), "source": where})
    return rows


def cls_read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
    from datasets import Dataset

    o = self.options
    path = resolve_packaged(path)
    fmt = detect_format(path, fmt, default_text="lines")
    if fmt == "lines":
        if o.line_format is None:
            raise FtkitError(
                "cannot tell how to read this file (not .csv/.tsv/.jsonl/.parquet)", file=path,
                hint="for '<label> <text>' lines (SST-2 stsa.binary) set task_options.line_format=label_text; "
                     "for TREC files trec_coarse or trec_fine",
            )
        rows = cls_from_lines(self, path, encoding)
    elif fmt in STRUCTURED:
        rows = cls_from_records(self, path, fmt, split, encoding)
    else:
        raise FtkitError(f"data format '{fmt}' does not hold classification data", file=path,
                         hint="use csv, tsv, jsonl, parquet, a datasets folder, or a line file with "
                              "task_options.line_format")
    if not rows:
        raise FtkitError("no examples found", file=path)
    if split == "train":
        cls_check_train_labels(self, rows, path)
    columns = ["text"] + (["text_pair"] if o.text_pair_column else []) + ["label", "source"]
    if o.multi_label and not any(r["label"] for r in rows):
        # all-empty label lists: give the column an explicit type
        from datasets import Features, Sequence, Value

        feats = Features({c: Sequence(Value("string")) if c == "label" else Value("string") for c in columns})
        return Dataset.from_dict({c: [r[c] for r in rows] for c in columns}, features=feats)
    return Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def cls_check_train_labels(self, rows: list[dict[str, Any]], path: str) -> None:
    o = self.options
    counts: Counter = Counter()
    first: dict[str, str] = {}
    for r in rows:
        for lab in (r["label"] if o.multi_label else [r["label"]]):
            counts[lab] += 1
            first.setdefault(lab, r["source"])
    if not counts:
        raise FtkitError("the training data has no labels at all (every label list is empty)", file=path)
    if len(counts) == 1 and not o.multi_label:
        (only,) = counts
        raise _error_at(first[only], f"the training data has a single label '{only}'; a classifier needs two or more")
    rare = sorted((lab for lab, n in counts.items() if n < o.min_examples_per_label), key=lambda x: counts[x])
    if rare:
        shown = ", ".join(f"'{lab}' ({counts[lab]})" for lab in rare[:5]) + (", ..." if len(rare) > 5 else "")
        raise _error_at(
            first[rare[0]],
            f"{len(rare)} label(s) with fewer than {o.min_examples_per_label} training examples: {shown}",
            hint="a class needs examples to be learnt and scored; fix the labels, or allow it with "
                 "--set task_options.min_examples_per_label=1",
        )


def _parse_squad_json(text: str, path: str) -> dict[str, Any] | None:
    """The SQuAD JSON document in ``text``, or None when the file is JSON Lines."""
    body = text.strip()
    if not body:
        raise FtkitError("empty file", file=path)
    if not body.startswith("{"):
        return None  # the JSON Lines reader explains what is wrong
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return None  # several objects: JSON Lines
        first = text.lstrip().split("\n", 1)[0]
        try:
            json.loads(first)
            return None  # a complete first line: JSON Lines with a bad line further down
        except json.JSONDecodeError:
            pass
        truncated = e.pos >= len(text.rstrip()) - 1 or e.msg.startswith("Unterminated")
        raise FtkitError(f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})", file=path, line=e.lineno,
                         hint="the document ends early: is the file truncated?" if truncated else None) from None
    if not isinstance(obj, dict):
        return None
    if "data" not in obj:
        if "question" in obj or "context" in obj:
            return None  # a one-line JSON Lines file
        raise FtkitError("not a SQuAD file: no top-level 'data' list (and not one flat record per line)",
                         file=path, hint="expected SQuAD JSON or JSONL records with question/context/answers")
    return obj


def read_squad_json(obj: dict[str, Any], path: str, articles: str | None) -> list[dict[str, Any]]:
    data = obj.get("data")
    if not isinstance(data, list):
        raise FtkitError("'data' must be a list of articles", file=path)
    rows = []
    for a_i in _select(list(range(len(data))), articles, path):
        article = data[a_i]
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise FtkitError(f"article {a_i} has no 'paragraphs' list", file=path)
        title = str(article.get("title", ""))
        for p_i, para in enumerate(article["paragraphs"]):
            if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                raise FtkitError(f"article {title or a_i!r}, paragraph {p_i}: no 'qas' list", file=path)
            context = para.get("context")
            for q_i, qa in enumerate(para["qas"]):
                if not isinstance(qa, dict):
                    raise FtkitError(f"article {title or a_i!r}, paragraph {p_i}: question {q_i} is not an object",
                                     file=path)
                qid = qa.get("id")
                if qid is None:
                    raise FtkitError(f"article {title or a_i!r}, paragraph {p_i}: question {q_i} has no 'id'",
                                     file=path)
                qid = str(qid)

                def err(msg, hint=None, qid=qid):
                    return FtkitError(msg, file=path, record=f"question {qid}", hint=hint)

                parsed = _answers_of(qa.get("answers", []))
                if parsed is None:
                    raise err("'answers' must be a list of {text, answer_start} objects")
                texts, starts = parsed
                if qa.get("is_impossible") and texts:
                    raise err("is_impossible is true, but the question has answers")
                row = _check_question(qid, title, qa.get("question"), context, texts, starts, err)
                row["source"] = f"{path}: question {qid}"
                rows.append(row)
    return rows


def read_flat(path: str, fmt: str, split: str, encoding: str, articles: str | None) -> list[dict[str, Any]]:
    records = list(iter_records(path, fmt, split, encoding))
    if articles is not None:
        order: dict[str, int] = {}
        for rec in records:
            title = rec.data.get("title")
            if title is None:
                raise rec.error("task_options.articles needs a 'title' field in every record (it names the article)")
            order.setdefault(str(title), len(order))
        keep = set(_select(list(order), articles, path))
        records = [r for r in records if str(r.data.get("title")) in keep]
    rows = []
    for rec in records:
        d = rec.data
        qid = str(d["id"]) if d.get("id") is not None else str(rec.index)

        def err(msg, hint=None, rec=rec, qid=qid):
            return rec.error(f"question {qid}: {msg}", hint=hint)

        if "answers" not in d:
            raise err(f"missing field 'answers' (record has: {', '.join(map(str, d))})",
                      hint="answers: {text: [...], answer_start: [...]}; empty lists for a question with no answer")
        parsed = _answers_of(d["answers"])
        if parsed is None:
            raise err("'answers' must be {text: [...], answer_start: [...]} (or a list of {text, answer_start})")
        texts, starts = parsed
        row = _check_question(qid, str(d.get("title") or ""), d.get("question"), d.get("context"), texts, starts,
                              err)
        row["source"] = rec.where
        rows.append(row)
    return rows


def qa_read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
    from datasets import Dataset

    o = self.options
    path = resolve_packaged(path)
    fmt = detect_format(path, fmt, default_text="jsonl")
    articles = o.articles.get(split)
    declared_v2 = False
    if fmt == "conll":
        raise FtkitError("the qa task reads SQuAD JSON, JSONL, Parquet or `datasets` folders, not CoNLL",
                         file=path)
    obj = _parse_squad_json(read_text(path, encoding), path) if fmt == "jsonl" else None
    if obj is not None:
        declared_v2 = str(obj.get("version", "")).lower().lstrip("v").startswith("2")
        rows = read_squad_json(obj, path, articles)
    else:
        rows = read_flat(path, fmt, split, encoding, articles)
    if not rows:
        raise FtkitError("no questions found", file=path)

    for r in rows:
        r["squad_v2"] = declared_v2  # the file says "version": "2.0" (read by resolve_options)
    no_answer = [r for r in rows if not r["answers"]["text"]]
    if no_answer and o.version_2_with_negative is False:
        raise FtkitError(
            f"{len(no_answer)} question{'s have' if len(no_answer) > 1 else ' has'} no answer "
            f"(first: question {no_answer[0]['id']}), but version_2_with_negative is false",
            file=path, hint="for SQuAD 2.0 style data set task_options.version_2_with_negative=true "
                            "(it is detected from the training data)",
        )
    return Dataset.from_list(rows)


def read_semeval(path: str, encoding: str = "utf-8") -> list[dict[str, Any]]:
    """Records of a SemEval-2010 Task 8 file: sentence line, label line, optional comment, blank line."""
    text = read_text(path, encoding)
    lines = [line.rstrip("\r") for line in text.replace("\r\n", "\n").split("\n")]
    rows: list[dict[str, Any]] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        lineno = i + 1
        m = SENTENCE_LINE_RE.match(line)
        if not m:
            what = "a label line without a sentence" if LABEL_LINE_RE.match(line.strip()) else "unexpected line"
            raise FtkitError(f"{what}: {line.strip()[:60]!r}", file=path, line=lineno,
                             hint='records are ID<TAB>"sentence with <e1>..</e1> and <e2>..</e2>", a label line, '
                                  "a Comment: line and a blank line")
        sid = m.group(1)
        sentence = unwrap_semeval_sentence(line)
        label_line = lines[i + 1].strip() if i + 1 < n else ""
        if not label_line or label_line.startswith("Comment") or SENTENCE_LINE_RE.match(lines[i + 1]):
            raise FtkitError(f"sentence {sid} has no label line", file=path, line=lineno, hint=LABEL_HINT)
        if not LABEL_LINE_RE.match(label_line):
            raise FtkitError(f"invalid relation label {label_line[:60]!r}", file=path, line=lineno + 1,
                             hint=LABEL_HINT)
        k = i + 2
        if k < n and lines[k].lstrip().startswith("Comment"):
            k += 1
        if k < n and lines[k].strip() and not SENTENCE_LINE_RE.match(lines[k]):
            raise FtkitError(f"unexpected line after the record of sentence {sid}: {lines[k].strip()[:60]!r}",
                             file=path, line=k + 1, hint="a blank line separates records")
        try:
            clean, head, tail = parse_marked(sentence)
        except ValueError as e:
            raise FtkitError(f"sentence {sid}: {e}", file=path, line=lineno) from None
        rows.append(_row(sid, clean, head, tail, "", "", label_line, f"{path}:{lineno}"))
        i = k
    return rows


def relation_read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
    from datasets import Dataset

    path = resolve_packaged(path)
    fmt = detect_format(path, fmt, default_text="semeval")
    if fmt == "semeval" and read_text(path, encoding).lstrip().startswith("{"):
        fmt = "jsonl"  # JSON Lines in a .txt file
    if fmt == "conll":
        raise FtkitError("CoNLL column files are not a relation-extraction format", file=path,
                         hint="use the SemEval-2010 Task 8 format or JSONL with text, head, tail and label")
    if fmt == "semeval":
        rows = read_semeval(path, encoding)
    else:
        rows = [self.record_to_row(rec.data, rec.error, rec.where, require_label=True)
                for rec in iter_records(path, fmt, split, encoding)]
    if not rows:
        raise FtkitError("no examples found", file=path)
    return Dataset.from_list(rows)


def _split_lines(path: Path, encoding: str) -> list[str]:
    """Lines split on "\\n" only (``str.splitlines`` would also split on U+2028, U+0085, ...,
    breaking line alignment); a final newline does not start another line."""
    text = read_text(path, encoding)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def tr_read_parallel(self, a: Path, b: Path, encoding: str) -> list[dict[str, Any]]:
    src, tgt = _split_lines(a, encoding), _split_lines(b, encoding)
    if len(src) != len(tgt):
        longer = a if len(src) > len(tgt) else b
        raise FtkitError(
            f"line-count mismatch: {a.name} has {len(src)} lines, {b.name} has {len(tgt)}",
            file=longer, line=min(len(src), len(tgt)) + 1,
            hint="parallel files must be line-aligned: line i of one translates line i of the other",
        )
    if not src:
        raise FtkitError("no sentence pairs found (empty file)", file=a)
    for i, (s, t) in enumerate(zip(src, tgt), 1):
        if not s.strip():
            raise FtkitError("empty source line", file=a, line=i)
        if not t.strip():
            raise FtkitError("empty target line", file=b, line=i)
    return [{"source": s, "target": t, "where": f"{a}:{i}"} for i, (s, t) in enumerate(zip(src, tgt), 1)]


def tr_read_records(self, path: str, split: str, fmt: str, encoding: str) -> list[dict[str, Any]]:
    o = self.options
    src, tgt = o.source_lang, o.target_lang
    rows = []
    for rec in iter_records(path, fmt, split, encoding):
        d = rec.data
        tr = d.get("translation")
        if isinstance(tr, dict):
            missing = [lang for lang in (src, tgt) if lang not in tr]
            if missing:
                raise rec.error(
                    f"'translation' has no '{missing[0]}' (has: {', '.join(map(str, tr)) or 'nothing'})",
                    hint="set task_options.source_lang / target_lang",
                )
            pair = (tr[src], tr[tgt])
        elif o.source_field in d and o.target_field in d:
            pair = (d[o.source_field], d[o.target_field])
        elif src in d and tgt in d:
            pair = (d[src], d[tgt])
        else:
            want = o.source_field if o.source_field not in d else o.target_field
            raise rec.error(
                f"missing column '{want}' (record has: {', '.join(map(str, d)) or 'nothing'})",
                hint=f"use columns {o.source_field}/{o.target_field} or {src}/{tgt}, a "
                     f"'translation: {{{src}: ..., {tgt}: ...}}' field, or set task_options.source_field "
                     "/ target_field",
            )
        for side, value in zip(("source", "target"), pair):
            if not isinstance(value, str):
                raise rec.error(f"{side} text must be a string, got {type(value).__name__}")
            if not value.strip():
                raise rec.error(f"empty {side} text")
        rows.append({"source": pair[0], "target": pair[1], "where": rec.where})
    if not rows:
        raise FtkitError("no sentence pairs found", file=path)
    return rows


def tr_read(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
    from datasets import Dataset

    path = resolve_packaged(path)
    parallel = self._parallel_paths(path) if fmt == "auto" else None
    if parallel:
        rows = tr_read_parallel(self, *parallel, encoding)
    else:
        o = self.options
        p = Path(path)
        # neither a file nor PREFIX.src/PREFIX.tgt; "org/name" (no such local folder) may be a hub dataset
        if not p.exists() and (p.suffix or path.startswith((".", "/", "~")) or path.count("/") > 1
                               or ("/" in path and p.parent.is_dir())):
            raise FtkitError(
                f"file not found (nor parallel files {p.name}.{o.source_lang} + {p.name}.{o.target_lang})",
                file=path,
            )
        fmt = detect_format(path, fmt, default_text="text")
        if fmt in ("text", "conll"):
            raise FtkitError(
                "not a translation file: expected parallel files PREFIX."
                f"{o.source_lang} + PREFIX.{o.target_lang}, or JSONL/CSV/TSV with source and target columns",
                file=path,
            )
        rows = tr_read_records(self, path, split, fmt, encoding)
    return Dataset.from_list(rows)


def read(task, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8"):
    """The old ``task.read``: a Dataset built in memory from the old reader's rows."""
    return {"ner": ner_read, "classification": cls_read, "qa": qa_read, "relation": relation_read,
            "translation": tr_read}[task.name](task, path, split, fmt, encoding)
