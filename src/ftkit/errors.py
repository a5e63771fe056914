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


def from_validation_error(err, source: str | None = None, prefix: str = "",
                          origins: dict[str, str] | None = None, known: dict[str, list[str]] | None = None) -> FtkitError:
    """One :class:`FtkitError` for a pydantic ``ValidationError``: every problem with its dotted key.

    ``origins`` maps dotted keys set on the command line (or through the Python API) to how the
    user wrote them (``--set task_options.tag_scheme=x``, ``--epochs``): a problem under such a key
    is blamed on it, not on the recipe ``source``. ``known`` maps a section (``task_options``) to
    its valid keys, for a did-you-mean hint on unknown keys.
    """
    import difflib

    parts, hints, unblamed = [], [], 0
    for e in err.errors():
        path = prefix + (".".join(str(p) for p in e["loc"]) or "<root>")
        if e["type"] == "extra_forbidden":
            text = f"unknown key '{path}'"
            section, _, leaf = path.rpartition(".")
            if known and section in known:
                close = difflib.get_close_matches(leaf, known[section], n=1)
                hints.append((f"did you mean '{section}.{close[0]}'? " if close else "")
                             + f"{section} keys: {', '.join(known[section])}")
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            msg = e["msg"]
            if e["type"] == "value_error":
                msg = msg.removeprefix("Value error, ")
            text = f"'{path}': {msg}{shown}"
        origin = None
        for key, how in (origins or {}).items():
            if path == key or path.startswith(key + ".") or key.startswith(path + "."):
                origin = how
        if origin:
            text = f"{origin}: {text}"
        else:
            unblamed += 1
        parts.append(text)
    # the recipe file is named only when it holds at least one of the problems
    return FtkitError("; ".join(parts), file=source if unblamed else None,
                      hint="; ".join(dict.fromkeys(hints)) or None)
