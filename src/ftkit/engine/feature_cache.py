"""The feature cache: ``task.encode`` once per (data, tokenizer, task options, facts, code), in parallel.

Entries live under ``$FTKIT_CACHE_DIR/features`` (default ``~/.cache/ftkit``), one folder each. The
task's ``encode`` runs its ``datasets.map`` (``ftkit.data.parallel.map_examples``) in ``workers``
processes, writing straight into a temporary folder that is renamed into place once the features are
complete, so a crash never leaves an entry that a later run would trust; a later run on the same data,
tokenizer and options memory-maps the entry instead of encoding again. ``FTKIT_NO_CACHE=1`` turns the
cache off.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path

from ftkit.data.parallel import planned
from ftkit.data.stream import cache_dir, cache_enabled as enabled, new_temp, scratch_dir
from ftkit.tasks.base import Facts
from ftkit.version import __version__

MANIFEST = "manifest.json"

__all__ = ["cache_dir", "enabled", "encode_cached", "cache_key"]


def tokenizer_fingerprint(tokenizer) -> str:
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    # truncation/padding are call-time settings the backend remembers, not part of the tokenizer
    state.pop("truncation", None)
    state.pop("padding", None)
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    h.update(json.dumps(state, sort_keys=True).encode())
    return h.hexdigest()[:16]


def code_fingerprint(cls) -> str:
    """The task module's source: an edited encoder (a development install) never reuses stale features."""
    try:
        return hashlib.sha256(Path(inspect.getfile(cls)).read_bytes()).hexdigest()[:16]
    except (OSError, TypeError):
        return ""


def cache_key(task, facts: Facts, examples, tokenizer, train: bool) -> str:
    key = json.dumps(
        [__version__, code_fingerprint(type(task)), task.name, facts.to_meta(), examples._fingerprint,
         tokenizer_fingerprint(tokenizer), train],
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _load(folder: Path, fingerprint: str):
    from datasets import Dataset, concatenate_datasets, load_from_disk

    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("saved"):
        return load_from_disk(str(folder / manifest["saved"]))
    parts = [Dataset.from_file(str(folder / name)) for name in manifest["files"]]
    ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if len(ds) != manifest["rows"]:
        raise ValueError("incomplete entry")
    ds._fingerprint = fingerprint
    return ds


def _commit(features, tmp: Path, final: Path, key: str):
    """Record the files of ``features`` in ``tmp`` (saving them there when the encoder wrote elsewhere),
    rename ``tmp`` to ``final`` and memory-map the entry from there."""
    from datasets import Dataset

    files = [Path(f["filename"]) for f in getattr(features, "cache_files", [])]
    inside = (isinstance(features, Dataset) and files and features._indices is None
              and all(f.parent == tmp for f in files))
    if inside:
        manifest = {"files": [f.name for f in files], "rows": len(features)}
    else:
        features.save_to_disk(str(tmp / "saved"))
        manifest = {"saved": "saved", "rows": len(features)}
    (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    del features
    try:
        os.replace(tmp, final)
    except OSError:  # another process wrote the same entry first
        shutil.rmtree(tmp, ignore_errors=True)
    return _load(final, key)


def encode_cached(task, facts: Facts, examples, tokenizer, train: bool, workers: int = 1):
    """``task.encode(examples, tokenizer, facts, train)`` in up to ``workers`` processes, from the cache
    when the same encoding was done before."""
    from datasets import Dataset

    if not isinstance(examples, Dataset):  # a stream is encoded lazily, as it is read
        return task.encode(examples, tokenizer, facts, train)
    key = cache_key(task, facts, examples, tokenizer, train)
    final = cache_dir() / "features" / key
    if enabled() and (final / MANIFEST).exists():
        try:
            return _load(final, key)
        except Exception:  # a damaged entry is encoded again
            shutil.rmtree(final, ignore_errors=True)
    tmp = new_temp(final.parent if enabled() else scratch_dir())
    try:
        with planned(workers, str(tmp / "features.arrow"), key):
            features = task.encode(examples, tokenizer, facts, train)
        if not enabled():
            return features
        return _commit(features, tmp, final, key)
    except BaseException:
        if enabled():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
