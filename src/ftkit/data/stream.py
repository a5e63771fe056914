"""Splits larger than memory: a task's example rows streamed into memory-mapped Arrow, in parallel, cached.

:func:`build_split` reads one split with ``task.iter_examples`` and writes the rows to Arrow files
in batches (``datasets.arrow_writer.ArrowWriter``), while ``task.observe`` adds each row to the
split's :class:`~ftkit.data.profile.Profile`. Nothing but one batch of rows is held in memory; the
result is a ``datasets.Dataset`` memory-mapped from those files, with the profile attached.

- **Parts.** A large text file is cut into parts at record boundaries (``task.parts``), read by
  ``workers`` processes at once, each writing its own Arrow file and profile; the parts are joined in
  order, so rows, line numbers and the first error are exactly those of one reader reading the file
  from the top (an error in part k wins only once parts 0..k-1 are read without one).
- **Cache.** A split of local files is kept under ``$FTKIT_CACHE_DIR/examples/<key>``; the key hashes
  the task, its options and code, the split, format and encoding, and each file's path, size,
  modification time, inode and a digest of its first and last 64 KiB -- an edited file is read again.
  An entry is written in a temporary folder and renamed into place only once every part is read and
  the split passed its checks: a bad line at line 900,000 leaves no entry behind.
- ``datasets.Dataset.from_generator`` would also write Arrow, but one example at a time through its
  builder (about 7x slower here), and an error raised in one of its worker processes reaches the
  caller without the file and line; hence the writer is used directly.

``FTKIT_NO_CACHE=1`` keeps entries in a temporary folder removed when the process ends.
"""

from __future__ import annotations

import atexit
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from ftkit.data.lines import WHOLE, Part
from ftkit.data.profile import PROFILE_ATTR, Profile
from ftkit.errors import FtkitError
from ftkit.version import __version__

#: rows per Arrow record batch (and per profile update of the writer)
BATCH_ROWS = 1000
PROFILE_FILE = "profile.json"


def cache_dir() -> Path:
    return Path(os.environ.get("FTKIT_CACHE_DIR") or Path.home() / ".cache" / "ftkit")


def cache_enabled() -> bool:
    return os.environ.get("FTKIT_NO_CACHE") != "1"


@lru_cache(maxsize=1)
def scratch_dir() -> Path:
    """A folder for this process's uncached Arrow files, removed when it ends."""
    path = Path(tempfile.mkdtemp(prefix="ftkit-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def new_temp(parent: Path) -> Path:
    """A fresh temporary folder in ``parent`` (renamed into place once complete); stale ones are removed."""
    parent.mkdir(parents=True, exist_ok=True)
    day_ago = time.time() - 86400
    for old in parent.glob(".tmp-*"):
        try:
            if old.stat().st_mtime < day_ago:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=parent, prefix=".tmp-"))


@lru_cache(maxsize=None)
def _source_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def code_fingerprint(cls) -> str:
    """The task's module and the readers it builds on: an edited reader never reuses stale rows."""
    from ftkit.data import conll, lines, profile, records

    files = [inspect.getfile(m) for m in (conll, lines, profile, records)]
    try:
        files.append(inspect.getfile(cls))
    except TypeError:
        pass
    files.append(__file__)
    return hashlib.sha256("".join(_source_digest(f) for f in files).encode()).hexdigest()[:16]


def file_identity(path: Path) -> list[Any]:
    """What changes when a file is edited: path, size, times, inode, and its first and last 64 KiB."""
    st = path.stat()
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(1 << 16))
        if st.st_size > 1 << 17:
            f.seek(-(1 << 16), os.SEEK_END)
        h.update(f.read(1 << 16))
    return [str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, h.hexdigest()]


def split_key(task, path: str, split: str, fmt: str, encoding: str) -> str | None:
    """The cache key of one split's examples, or None when its source is not local files."""
    try:
        files = task.data_files(path, split, fmt)
        if not files:
            return None
        identity = [file_identity(Path(f)) for f in files]
    except OSError:
        return None
    key = json.dumps([__version__, code_fingerprint(type(task)), task.name, task.options.model_dump(mode="json"),
                      split, fmt, encoding, identity], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------
# writing


def _columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    return {k: [r[k] for r in rows] for k in names}


def write_part(task, path: str, split: str, fmt: str, encoding: str, part: Part,
               out: str | None) -> tuple[Profile | None, FtkitError | None]:
    """Read one part into the Arrow file ``out`` (None: profile only); ``(profile, None)`` or ``(None, error)``."""
    from datasets.arrow_writer import ArrowWriter

    profile = Profile(task.name)
    features = task.example_features()
    names = list(features) if features is not None else None
    writer = ArrowWriter(path=out, features=features) if out is not None else None
    try:
        batch: list[dict[str, Any]] = []
        for row in task.iter_examples(path, split, fmt, encoding, part):
            task.observe(profile, row)
            if writer is None:
                continue
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                names = names or list(batch[0])
                writer.write_batch(_columns(batch, names))
                batch = []
        if writer is not None:
            if batch:
                writer.write_batch(_columns(batch, names or list(batch[0])))
            if writer.pa_writer is not None or features is not None:
                writer.finalize()
    except FtkitError as e:
        return None, e
    finally:
        if writer is not None:
            writer.close()
            if profile.count == 0 and os.path.exists(out):
                os.remove(out)
    return profile, None


def _write_part_job(args) -> tuple[Profile | None, FtkitError | None]:
    return write_part(*args)


def _read_parts(task, path, split, fmt, encoding, parts: list[Part], folder: Path | None,
                workers: int) -> list[Profile]:
    """Each part's profile, in order; the first error of the file (in reading order) is raised."""
    jobs = [(task, path, split, fmt, encoding, part,
             str(folder / f"part-{i:05d}.arrow") if folder is not None else None) for i, part in enumerate(parts)]
    if len(jobs) == 1 or workers <= 1:
        results = map(_write_part_job, jobs)
        return [_raise_or(profile, error) for profile, error in results]
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(min(workers, len(jobs))) as pool:
        # in order: part k's error is raised only once parts 0..k-1 came back without one
        return [_raise_or(profile, error) for profile, error in pool.imap(_write_part_job, jobs)]


def _raise_or(profile, error):
    if error is not None:
        raise error
    return profile


def _open(folder: Path, fingerprint: str):
    from datasets import Dataset, concatenate_datasets

    files = sorted(folder.glob("part-*.arrow"))
    if not files:
        return None
    parts = [Dataset.from_file(str(f)) for f in files]
    ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    ds._fingerprint = fingerprint
    return ds


def _empty(task):
    from datasets import Dataset

    features = task.example_features()
    return Dataset.from_dict({k: [] for k in features}, features=features) if features is not None else Dataset.from_dict({})


def build_split(task, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8", workers: int = 1):
    """One split as a memory-mapped ``datasets.Dataset`` with its finished Profile attached (see the module doc)."""
    from ftkit.recipes import resolve_packaged

    path = resolve_packaged(path)
    key = split_key(task, path, split, fmt, encoding) if cache_enabled() else None
    final = cache_dir() / "examples" / key if key else None
    if final is not None and (final / PROFILE_FILE).exists():
        try:
            profile = profile_from_json((final / PROFILE_FILE).read_text(encoding="utf-8"))
            ds = _open(final, key) if profile.count else _empty(task)
            if ds is None or len(ds) != profile.count:
                raise ValueError("incomplete entry")
        except Exception:  # a damaged entry is read again
            shutil.rmtree(final, ignore_errors=True)
        else:
            task.check_split(profile, path, split)
            setattr(ds, PROFILE_ATTR, profile)
            return ds
    parts = _plan(task, path, split, fmt, encoding, workers)
    tmp = new_temp(final.parent if final is not None else scratch_dir())
    try:
        profile = Profile(task.name)
        for p in _read_parts(task, path, split, fmt, encoding, parts, tmp, workers):
            profile.merge(p)
        fingerprint = key or hashlib.sha256(f"{tmp}{time.time()}".encode()).hexdigest()[:24]
        ds = _open(tmp, fingerprint) if profile.count else _empty(task)
        profile.finish(lambda i: ds[i])
        task.check_split(profile, path, split)
        (tmp / PROFILE_FILE).write_text(profile_to_json(profile), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final is not None:
        del ds
        try:
            os.replace(tmp, final)
        except OSError:  # another process wrote the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
        ds = _open(final, key) if profile.count else _empty(task)
    setattr(ds, PROFILE_ATTR, profile)
    return ds


def _plan(task, path, split, fmt, encoding, workers: int) -> list[Part]:
    if workers <= 1:
        return [WHOLE]
    try:
        return task.parts(path, split, fmt, encoding, workers) or [WHOLE]
    except FtkitError:  # the reader reports it, with its line
        return [WHOLE]


def profile_split(task, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8",
                  workers: int = 1) -> Profile:
    """One pass over a split without writing it (``data.streaming``): its finished, checked profile."""
    from itertools import islice

    from ftkit.recipes import resolve_packaged

    path = resolve_packaged(path)
    streamed = Part(streaming=True)
    parts = _plan(task, path, split, fmt, encoding, workers) if fmt not in ("hub",) else [streamed]
    profile = Profile(task.name)
    for p in _read_parts(task, path, split, fmt, encoding, parts, None, workers):
        profile.merge(p)
    profile.finish(lambda i: next(islice(task.iter_examples(path, split, fmt, encoding, streamed), i, None)))
    task.check_split(profile, path, split)
    return profile


def _stream_rows(task, path, split, fmt, encoding):
    yield from task.iter_examples(path, split, fmt, encoding, Part(streaming=True))


def stream_split(task, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8", workers: int = 1):
    """One split as a ``datasets.IterableDataset`` read lazily with ``iter_examples`` each time it is
    iterated (nothing written), after one checking pass whose profile is attached."""
    from datasets import IterableDataset

    from ftkit.recipes import resolve_packaged

    path = resolve_packaged(path)
    profile = profile_split(task, path, split, fmt, encoding, workers)
    ds = IterableDataset.from_generator(_stream_rows, features=task.example_features(),
                                        gen_kwargs={"task": task, "path": path, "split": split, "fmt": fmt,
                                                    "encoding": encoding})
    if ds.features is None:
        ds = ds._resolve_features()
    setattr(ds, PROFILE_ATTR, profile)
    return ds


# ---------------------------------------------------------------------------
# the profile on disk (JSON: a cache entry holds no pickle)


def profile_to_json(p: Profile) -> str:
    return json.dumps({
        "task": p.task, "count": p.count, "counts": p.counts, "maxima": p.maxima, "labels": p.labels,
        "first": p.first, "notes": p.notes, "flags": sorted(p.flags), "empty": p.empty,
        "empty_where": p.empty_where, "duplicates": p.duplicates, "first_duplicate": p.first_duplicate,
        "distinct": p.distinct,
    })


def profile_from_json(text: str) -> Profile:
    from collections import Counter

    d = json.loads(text)
    p = Profile(d["task"])
    p.count, p.counts, p.maxima = d["count"], Counter(d["counts"]), d["maxima"]
    p.labels, p.first, p.notes, p.flags = Counter(d["labels"]), d["first"], d["notes"], set(d["flags"])
    p.empty, p.empty_where, p.duplicates = d["empty"], d["empty_where"], d["duplicates"]
    p.first_duplicate = tuple(d["first_duplicate"]) if d["first_duplicate"] else None
    p.distinct, p.finished = d["distinct"], True
    return p
