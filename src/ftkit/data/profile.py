"""What one pass over a split learns, in memory that does not grow with the text.

A reader streams a split's examples once; while they are written to Arrow, the task's
``observe`` adds each one to a :class:`Profile`: counters, the label counts and where each label
first occurs, named flags, and an 8-byte digest per example (and per value of a ``distinct``
field such as a QA context) from which duplicates and distinct counts are found at the end.
The label set, the data summary, lint and the label checks of a split all read the profile, never
a list of the examples. A split read in N parts gets one profile per part, merged in order.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from typing import Any, Callable

#: the attribute of a ``datasets.Dataset`` that holds the Profile its reader made
PROFILE_ATTR = "ftkit_profile"
#: examples listed one by one in a warning (empty examples); the rest are counted
MAX_LISTED = 100


def digest(text: str) -> int:
    """A non-zero 64-bit digest of ``text`` (0 stands for an empty example)."""
    h = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") or 1


def where_of(example: dict[str, Any], index: int) -> str:
    """How messages name an example: its ``where``/``source`` (file:line), else its index."""
    return example.get("where") or example.get("source") or f"record {index}"


class Profile:
    """Counts and digests of one split (see the module doc); ``finish`` makes it final."""

    def __init__(self, task: str = "") -> None:
        self.task = task
        self.count = 0
        self.counts: Counter = Counter()  # named totals (tokens, answers, ...)
        self.maxima: dict[str, int] = {}  # named maxima (longest source, ...)
        self.labels: Counter = Counter()  # label -> occurrences (what a label is, the task says)
        self.first: dict[str, str] = {}  # label -> where it first occurs
        self.notes: dict[str, Any] = {}  # named first values (the first unanswerable question, ...)
        self.flags: set[str] = set()  # named facts true of some example
        self.empty = 0
        self.empty_where: list[str] = []
        self.duplicates = 0
        self.first_duplicate: tuple[str, str] | None = None  # (where, where of the example it repeats)
        self.distinct: dict[str, int] = {}  # distinct values per name, once finished
        self.finished = False
        self._digests = array("Q")
        self._values: dict[str, array] = {}

    # ---- filled by Task.observe -------------------------------------------
    def where(self, example: dict[str, Any]) -> str:
        return where_of(example, self.count)

    def add(self, text: str, where: str) -> None:
        """One example, with its text (for empty and duplicate detection)."""
        self.count += 1
        if text.strip():
            self._digests.append(digest(text))
            return
        self.empty += 1
        if len(self.empty_where) < MAX_LISTED:
            self.empty_where.append(where)
        self._digests.append(0)

    def label(self, name: str, where: str, n: int = 1) -> None:
        self.labels[name] += n
        self.first.setdefault(name, where)

    def total(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def maximum(self, name: str, value: int) -> None:
        if value > self.maxima.get(name, value - 1):
            self.maxima[name] = value

    def note(self, name: str, value: Any) -> None:
        self.notes.setdefault(name, value)

    def value(self, name: str, text: str) -> None:
        """One value of a field whose distinct values are counted (``distinct[name]`` once finished)."""
        self._values.setdefault(name, array("Q")).append(digest(text))

    # ---- merged and finished by the reader ----------------------------------
    def merge(self, other: Profile) -> Profile:
        """Append the profile of the part that follows this one."""
        self.count += other.count
        self.counts.update(other.counts)
        for k, v in other.maxima.items():
            self.maximum(k, v)
        self.labels.update(other.labels)
        for d, o in ((self.first, other.first), (self.notes, other.notes)):
            for k, v in o.items():
                d.setdefault(k, v)
        self.flags |= other.flags
        self.empty += other.empty
        self.empty_where = (self.empty_where + other.empty_where)[:MAX_LISTED]
        self._digests.extend(other._digests)
        for k, v in other._values.items():
            self._values.setdefault(k, array("Q")).extend(v)
        return self

    def finish(self, example_at: Callable[[int], dict[str, Any]]) -> Profile:
        """Find duplicates and distinct counts; ``example_at(i)`` is the i-th example (to name places)."""
        import numpy as np

        if self.finished:
            return self
        # one sort of the digests (0 marks an empty example): 16 bytes per example for a moment
        d = np.frombuffer(self._digests, dtype=np.uint64) if len(self._digests) else np.zeros(0, np.uint64)
        order = np.argsort(d, kind="stable")
        ranked = d[order]
        repeats = (ranked[1:] == ranked[:-1]) & (ranked[1:] != 0)
        self.duplicates = int(repeats.sum())
        if self.duplicates:
            first = int(order[1:][repeats].min())
            original = int(order[np.searchsorted(ranked, d[first])])
            self.first_duplicate = (where_of(example_at(first), first), where_of(example_at(original), original))
        del d, order, ranked, repeats
        for name, arr in self._values.items():
            self.distinct[name] = int(len(np.unique(np.frombuffer(arr, dtype=np.uint64))))
        self._digests, self._values = array("Q"), {}
        self.finished = True
        return self
