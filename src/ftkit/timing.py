"""Where a run's wall time goes: one clock per run, every second charged to exactly one phase.

The clock keeps a timeline: at any moment the innermost open phase is charged (time outside any phase is
``other``), so the phases always sum to the wall time. ``run.json`` records them as ``"timings"``::

    {"startup": 1.9, "read": 0.3, "encode": 0.1, "model_load": 0.5, "train": 90.2,
     "eval_during_training": 4.1, "eval_validation": 1.0, "eval_test": 1.1, "save": 0.6, "plot": 0.3,
     "other": 0.1, "total": 100.2}

``startup`` is from the process's start (the interpreter and its imports) when the CLI runs the command,
from the call otherwise. Under ``ftkit finetune --processes N`` the launcher's clock (its start-up, reading,
encoding) travels to the workers in ``FTKIT_TIMINGS``; the workers' start is charged to ``launch`` and the
main worker writes the whole timeline. A lower layer: imports nothing of ftkit.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Iterator

#: the launcher's clock, handed to the workers of ``--processes N``
TIMINGS_ENV = "FTKIT_TIMINGS"
#: the order phases are shown in (others follow in the order they were first charged)
ORDER = ("startup", "launch", "read", "encode", "model_load", "train", "eval_during_training", "eval_validation",
         "eval_test", "save", "plot", "other")


def process_start() -> float:
    """When this process started (its interpreter start-up and imports count towards a command's time).

    On Linux: the process's start in clock ticks since boot (/proc/self/stat) against the uptime now
    (/proc/uptime, to 10 ms). psutil's ``create_time`` adds the same ticks to the boot time, which the kernel
    gives in whole seconds: up to a second early (0.55 s on the machine this was measured on)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        now = time.time()
        return min(now, now - (uptime - start_ticks / os.sysconf("SC_CLK_TCK")))
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - no psutil or no /proc: the call is the best we know
        return time.time()


class Clock:
    def __init__(self, origin: float, parts: dict[str, float] | None = None, last: float | None = None):
        self.origin = origin
        self.parts: dict[str, float] = dict(parts or {})
        self.last = origin if last is None else last
        self.stack: list[str] = []

    def charge(self, name: str | None = None) -> None:
        """Charge the time since the last charge to ``name`` (default: the open phase, else ``other``)."""
        now = time.time()
        name = name or (self.stack[-1] if self.stack else "other")
        self.parts[name] = self.parts.get(name, 0.0) + max(0.0, now - self.last)
        self.last = now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.charge()
        self.stack.append(name)
        try:
            yield
        finally:
            self.charge()
            self.stack.pop()

    def total(self) -> float:
        return time.time() - self.origin

    def report(self) -> dict[str, float]:
        """The phases in seconds (rounded to 0.01) and their ``total``: the wall time since the origin."""
        self.charge()
        known = [k for k in ORDER if k in self.parts] + [k for k in self.parts if k not in ORDER]
        out = {k: round(self.parts[k], 2) for k in known}
        out["total"] = round(self.last - self.origin, 2)
        return out

    def to_env(self) -> str:
        self.charge()
        return json.dumps({"origin": self.origin, "last": self.last, "parts": self.parts})


_clock: Clock | None = None
#: set by the console script (``ftkit ...``, ``python -m ftkit ...``): a run's start-up counts from the process's
#: start. Not for the API or typer's test runner in a longer-lived process (that start is not the command's).
command_line = False


def begin(origin: float | None = None) -> Clock:
    """A new clock for a run, charging ``startup`` up to now (from ``origin``: the process start for the CLI).
    A worker of ``--processes`` continues its launcher's clock instead and charges its own start to ``launch``."""
    global _clock
    handed = os.environ.get(TIMINGS_ENV)
    if handed:
        try:
            d = json.loads(handed)
            _clock = Clock(float(d["origin"]), {k: float(v) for k, v in d["parts"].items()}, float(d["last"]))
            _clock.charge("launch")
            return _clock
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # not ours: a clock of this process
    _clock = Clock(origin if origin is not None else time.time())
    _clock.charge("startup")
    return _clock


def clock() -> Clock:
    """The run's clock (one started at the call when no run began one: a direct engine call)."""
    return _clock if _clock is not None else begin()


def phase(name: str):
    """``with timing.phase("encode"): ...`` on the run's clock."""
    return clock().phase(name)


def end() -> dict[str, float]:
    """The run's timings; the next run in this process (a sweep's next trial) starts a new clock."""
    global _clock
    out = clock().report()
    _clock = None
    return out


def one_line(timings: dict[str, float]) -> str:
    """``time 100.2s: startup 1.9, read 0.3, ...`` (phases under 0.05 s left out)."""
    parts = ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if k != "total" and v >= 0.05)
    return f"time {timings.get('total', 0.0):.1f}s: {parts}"
