"""Format detection and record iteration for tabular/JSON data.

Supported: JSONL (``.jsonl``/``.json`` with one object per line), CSV/TSV,
Parquet, ``datasets`` ``save_to_disk`` folders, and hub datasets (online only).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ftkit.data.lines import WHOLE, Part, iter_lines, peek_text, read_text  # noqa: F401 (read_text is re-exported)
from ftkit.errors import FtkitError
from ftkit.recipes import resolve_packaged


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


TEXT_SUFFIXES = {".conll": "conll", ".iob": "conll", ".bio": "conll", ".jsonl": "jsonl", ".json": "jsonl",
                 ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: str, declared: str = "auto", default_text: str = "conll") -> str:
    """The format of ``path``: declared, or from the suffix / folder layout / hub."""
    if declared != "auto":
        return declared
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "state.json").exists() or (p / "dataset_dict.json").exists():
            return "disk"
        raise FtkitError("folder is not a `datasets` save_to_disk folder (no dataset_info.json)", file=p)
    if p.exists():
        return TEXT_SUFFIXES.get(p.suffix.lower(), default_text)
    looks_local = p.suffix.lower() in TEXT_SUFFIXES or p.suffix.lower() in (".txt", ".tsv") or path.startswith(
        (".", "/", "~")) or path.count("/") > 1
    if looks_local:
        raise FtkitError("file not found", file=path)
    return "hub"


def _iter_jsonl(path: str, encoding: str, part: Part = WHOLE) -> Iterator[Record]:
    if part.start == 0 and peek_text(path, encoding).lstrip().startswith("["):
        raise FtkitError("expected JSON Lines (one object per line), got a JSON array", file=path, line=1)
    index = 0
    for lineno, line in iter_lines(path, encoding, part, breaks="unicode"):
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
    # a quoted field may hold line breaks: a CSV file is read in one part
    reader = csv.reader((line for _, line in iter_lines(path, encoding, breaks="csv")), delimiter=delimiter)
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
    for name, feat in (ds.features or {}).items():
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


def _load_hub(name: str, split: str, streaming: bool = False):
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise FtkitError(
            "not a local file or folder, and the Hugging Face hub is offline (HF_HUB_OFFLINE=1)", file=name
        )
    from datasets import load_dataset

    repo, _, hub_split = name.partition(":")
    try:
        return load_dataset(repo, split=hub_split or split, streaming=streaming)
    except Exception as e:
        raise FtkitError(f"cannot load hub dataset: {str(e).splitlines()[0][:200]}", file=name) from None


def iter_records(path: str, fmt: str, split: str, encoding: str = "utf-8", part: Part = WHOLE) -> Iterator[Record]:
    """Records of a JSONL/CSV/TSV/Parquet file, a datasets folder or a hub dataset, one at a time.

    ``part`` (from :func:`ftkit.data.lines.plan_parts`) limits a JSONL file to a byte range; other
    formats are read whole, and hub datasets are streamed when ``part.streaming``.
    """
    path = resolve_packaged(path)
    if fmt == "jsonl":
        yield from _iter_jsonl(path, encoding, part)
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
        yield from _iter_dataset(_load_hub(path, split, part.streaming), path)
    else:
        raise FtkitError(f"format '{fmt}' is not supported here", file=path)
