"""Progress messages: one place that decides where they go (stderr, so stdout carries only results).

Under N processes only the main process (rank 0) prints them; the others run silently.
"""

from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    """Rank 0 of a launcher's processes (or the only process); read from the environment the launcher sets."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def log(msg: str) -> None:
    """A progress line on stderr (the main process only)."""
    if is_main_process():
        print(msg, file=sys.stderr, flush=True)
