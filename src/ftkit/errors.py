"""The one error type for bad data, bad configuration and missing resources.

Every reader, the config loader and the engine raise :class:`FtkitError` for
problems a user can fix. The CLI prints it as one line and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class FtkitError(Exception):
    """A problem with user input, reported as ``file:line: message (hint)``."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        record: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.record = record
        self.hint = hint
        super().__init__(self.one_line())

    def where(self) -> str:
        if self.file is None:
            return ""
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.record is not None:
            return f"{self.file}: {self.record}"
        return self.file

    def one_line(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        # One line, whatever the message contained.
        return " ".join(text.split())
