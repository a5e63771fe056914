"""``UnhashedMaps``: a ``datasets.Dataset`` whose ``map`` skips hashing the mapped function.

``Dataset.map`` names its result by hashing the function it maps, tokenizer and all (it pickles the whole
vocabulary: 0.1 s or more a call, more than a forward pass over a few sentences costs). ftkit never uses that
name: its feature cache keys on the input data. Paid once per ``ftkit predict`` it does not matter, but a server
predicts once per batch, so each ``map`` gets a fresh random fingerprint through ``map``'s own
``new_fingerprint`` argument instead. The datasets ftkit builds in memory (``parallel.in_memory``: the examples
and features of ``predict``) are of this class. (A module of its own, imported on first use: it imports
``datasets``, which ``ftkit --help`` never loads; and a module-level class pickles by name into workers.)
"""

from __future__ import annotations

from datasets import Dataset
from datasets.fingerprint import generate_random_fingerprint


class UnhashedMaps(Dataset):
    def map(self, *args, **kwargs):
        kwargs.setdefault("new_fingerprint", generate_random_fingerprint())
        return super().map(*args, **kwargs)


def unhashed(dataset: Dataset) -> UnhashedMaps:
    """``dataset`` as an :class:`UnhashedMaps` (the same table, indices and fingerprint; itself when it is one)."""
    if isinstance(dataset, UnhashedMaps):
        return dataset
    return UnhashedMaps(dataset.data, info=dataset.info, split=dataset.split,
                        indices_table=getattr(dataset, "_indices", None), fingerprint=dataset._fingerprint)
