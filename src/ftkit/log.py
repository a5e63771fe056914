"""Progress messages: one place that decides where they go (stderr, so stdout carries only results)."""

from __future__ import annotations

import sys


def log(msg: str) -> None:
    """A progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)
