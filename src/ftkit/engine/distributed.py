"""N processes training one model: who is who, one process decides, the others follow.

ftkit runs as N copies of the same program (started by ``torchrun``, ``accelerate launch`` or
``ftkit finetune --processes N``). The process group is formed by accelerate's ``PartialState``
(gloo for CPU workers, NCCL for CUDA ones) before any data is read, so that:

- the *main* process (rank 0) does everything that is decided or written once -- reading and
  encoding the data, checking the run folder, writing it, printing -- and hands the result to the
  others (:func:`decide`); a user error found there is printed once and every rank exits with 2;
- the others wait, then read what the main process prepared (:mod:`ftkit.engine.exchange`).

With one process every helper here is a no-op.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Callable, TypeVar

from ftkit.errors import FtkitError

T = TypeVar("T")

#: set by ``ftkit finetune --processes N`` in its workers' environment
LAUNCHER_ENV = "FTKIT_LAUNCHER"


class QuietExit(SystemExit):
    """A rank that follows the main process's decision to stop: the main process says why, once."""


#: streams are read lazily by each process; sharing one stream across ranks is not built yet
STREAMING_ONE_PROCESS = ("data.streaming trains on one process for now: a stream cannot be prepared once and "
                         "shared with the other processes")

def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def env_world_size() -> int:
    """The world size the launcher announced (before or after the process group is formed)."""
    for key in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 1


def rank() -> int:
    d = _dist()
    if d is not None:
        return d.get_rank()
    for key in ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key]) if env_world_size() > 1 else 0
    return 0


def world_size() -> int:
    d = _dist()
    return d.get_world_size() if d is not None else 1


def is_main() -> bool:
    return rank() == 0


def launcher() -> str:
    """What started this process: ``ftkit`` (--processes), ``accelerate``, ``torchrun``, ``mpirun`` or ``none``."""
    env = os.environ
    if env.get(LAUNCHER_ENV):
        return env[LAUNCHER_ENV]
    if any(k in env for k in ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_DYNAMO_BACKEND", "ACCELERATE_USE_CPU")):
        return "accelerate"
    if "TORCHELASTIC_RUN_ID" in env:
        return "torchrun"
    if "OMPI_COMM_WORLD_SIZE" in env or "PMI_SIZE" in env:
        return "mpirun"
    return "none"


def use_cpu(device: str) -> bool:
    """CPU workers: asked for, or no CUDA device. accelerate forms a (gloo) group for CPU workers only when
    told it runs on CPU; without it, N CPU processes each train alone."""
    import torch

    return device == "cpu" or not torch.cuda.is_available()


def setup(device: str = "auto") -> dict[str, Any]:
    """Form the process group when a launcher started several processes; ``{"world_size", "backend",
    "launcher"}`` (what run.json records)."""
    if env_world_size() > 1 and _dist() is None:
        from accelerate import PartialState

        try:
            PartialState(cpu=use_cpu(device))
            # leave the group before the interpreter tears down (a gloo group destroyed at exit can abort)
            atexit.register(_leave)
        except (RuntimeError, ValueError) as e:
            raise FtkitError(f"cannot form the process group of {env_world_size()} processes: "
                             f"{' '.join(str(e).split())[:200]}") from None
    elif env_world_size() <= 1 and (asked := _accelerate_asked()) > 1:
        raise FtkitError(
            f"accelerate launch started 1 process, not the {asked} asked for: without GPUs (or with --cpu) it runs "
            "several processes only through mpirun (--mpirun_hostfile)",
            hint=f"use `ftkit finetune --processes {asked} ...`, or `accelerate launch --multi_gpu --num_processes "
                 f"{asked} -m ftkit finetune ...` (ftkit's workers then use gloo on CPU)")
    d = _dist()
    if d is not None and d.get_rank() != 0:
        _quiet()
    if d is None:
        if env_world_size() > 1:
            raise FtkitError(f"the launcher started {env_world_size()} processes, but they formed no process group")
        return {"world_size": 1, "backend": None, "launcher": launcher()}
    return {"world_size": d.get_world_size(), "backend": str(d.get_backend()), "launcher": launcher()}


def _quiet() -> None:
    """The other ranks show no progress bars (the main process shows them once)."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _accelerate_asked() -> int:
    """How many processes the ``accelerate launch`` that started this single process was asked for (its
    simple launcher starts one whatever ``--num_processes`` says); 0 when unknown."""
    if "ACCELERATE_USE_CPU" not in os.environ:  # set by accelerate's simple (one-process) launcher only
        return 0
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return 0
    asked = 0
    for i, a in enumerate(argv):
        key, _, value = a.partition("=")
        if key in ("--num_processes", "--num-processes"):
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            asked = int(value) if value.isdigit() else asked
        elif key in ("--config_file", "--config-file") and not asked:
            try:
                import yaml

                n = (yaml.safe_load(open(value or argv[i + 1], encoding="utf-8")) or {}).get("num_processes")
                asked = n if isinstance(n, int) else asked
            except (OSError, IndexError, ValueError, AttributeError, yaml.YAMLError):
                pass
    return asked


def _leave() -> None:
    d = _dist()
    if d is not None:
        d.destroy_process_group()


def barrier() -> None:
    d = _dist()
    if d is not None:
        d.barrier()


def broadcast(value: T) -> T:
    """The main process's ``value`` on every rank."""
    d = _dist()
    if d is None:
        return value
    box = [value if d.get_rank() == 0 else None]
    d.broadcast_object_list(box, src=0)
    return box[0]


def decide(fn: Callable[[], T]) -> T:
    """``fn()`` run by the main process only, its result handed to every rank. A user error there is raised
    on the main process (printed once) and ends the other ranks quietly with the same status."""
    if _dist() is None:
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    error: BaseException | None = None
    if is_main():
        try:
            outcome = ("ok", fn())
        except FtkitError as e:
            outcome, error = ("exit", e.exit_code), e
        except SystemExit as e:
            outcome, error = ("exit", e.code if isinstance(e.code, int) else 1), e
        except BaseException as e:  # noqa: BLE001 - the others must not wait for ever
            outcome, error = ("exit", 1), e
    kind, value = broadcast(outcome)
    if error is not None:
        raise error
    if kind == "exit":
        raise QuietExit(value)
    return value


def everyone(fn: Callable[[], T]) -> T:
    """``fn()`` run by every rank; when it fails on any of them, the main process reports the first failure
    (one line) and every rank stops with the same status."""
    if _dist() is None:
        return fn()
    result: Any = None
    error: BaseException | None = None
    try:
        result = fn()
    except BaseException as e:  # noqa: BLE001 - reported below, once
        error = e
    failures = [(r, f) for r, f in enumerate(gather(None if error is None else _failure(error))) if f is not None]
    if not failures:
        return result
    r, (code, message) = failures[0]
    if is_main():
        if error is not None:
            raise error
        raise FtkitError(f"process {r}: {message}")
    raise QuietExit(code)


def _failure(e: BaseException) -> tuple[int, str]:
    if isinstance(e, FtkitError):
        return e.exit_code, e.one_line()
    if isinstance(e, SystemExit):
        return (e.code if isinstance(e.code, int) else 1), "stopped"
    return 1, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    d = _dist()
    if d is None:
        return [value]
    out: list[Any] = [None] * d.get_world_size()
    d.all_gather_object(out, value)
    return out


def shard(n: int) -> tuple[range, int]:
    """This rank's contiguous share of ``n`` items and the padded share size every rank runs, so that all
    ranks make the same number of (collective) forward passes; padding is dropped by :func:`unshard`."""
    w, r = world_size(), rank()
    size = -(-n // w) if n else 0
    return range(min(r * size, n), min((r + 1) * size, n)), size


def unshard(parts: list[list[Any]], n: int) -> list[Any]:
    """The gathered shares of :func:`shard`, padding dropped: exactly ``n`` items in their original order."""
    size = -(-n // len(parts)) if n else 0
    out: list[Any] = []
    for r, part in enumerate(parts):
        out.extend(part[:max(0, min(size, n - r * size))])
    return out


def any_rank(value: int, device=None) -> int:
    """The largest ``value`` over all ranks (e.g. a signal one rank received)."""
    d = _dist()
    if d is None:
        return value
    import torch

    t = torch.tensor([int(value)], dtype=torch.int64, device=device)
    d.all_reduce(t, op=d.ReduceOp.MAX)
    return int(t.item())
