"""The feature cache: ``task.encode`` once per (data, tokenizer, task options, facts, code).

Entries live under ``$FTKIT_CACHE_DIR/features`` (default ``~/.cache/ftkit``), one ``datasets``
folder each, written to a temporary folder and renamed, so a crash never leaves an entry that a
later run would trust. ``FTKIT_NO_CACHE=1`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

from ftkit.tasks.base import Facts
from ftkit.version import __version__


def cache_dir() -> Path:
    return Path(os.environ.get("FTKIT_CACHE_DIR") or Path.home() / ".cache" / "ftkit")


def enabled() -> bool:
    return os.environ.get("FTKIT_NO_CACHE") != "1"


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


def encode_cached(task, facts: Facts, examples, tokenizer, train: bool):
    """``task.encode(examples, tokenizer, facts, train)``, from the cache when the same encoding was done."""
    from datasets import load_from_disk

    path = cache_dir() / "features" / cache_key(task, facts, examples, tokenizer, train)
    if enabled() and (path / "dataset_info.json").exists():
        try:
            return load_from_disk(str(path))
        except Exception:  # a damaged entry is encoded again
            shutil.rmtree(path, ignore_errors=True)
    features = task.encode(examples, tokenizer, facts, train)
    if enabled():
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
            features.save_to_disk(str(tmp))
            os.replace(tmp, path)
        except OSError:  # a cache is an optimisation, never a failure
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return features
