"""Readers for the data formats ftkit understands.

Each reader yields plain records together with where they came from, so that the
task modules can report a bad record as ``file:line: message``.
"""

from ftkit.data.records import Record, detect_format, iter_records, read_text

__all__ = ["Record", "detect_format", "iter_records", "read_text"]
