"""The data of a run, read and encoded once: splits, Facts, tokenizer, features and the data summary.

One process prepares (``prepare``: reading, validating, encoding through the feature cache); under N
processes it writes what it prepared to a folder (``save``) that the other processes map (``load``),
so they neither read nor encode again. ``ftkit finetune --processes N`` prepares in the launcher,
before any worker starts; under ``torchrun``/``accelerate launch`` the main process does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit import timing
from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.tasks.base import Facts

#: the prepared-data folder ``ftkit finetune --processes N`` hands its workers
EXCHANGE_ENV = "FTKIT_PREPARED"
_META = "prepared.json"


@dataclass
class Prepared:
    task: Any
    facts: Facts
    info: Any
    tokenizer: Any
    splits: dict[str, Any]
    features: dict[str, Any]
    summary: dict[str, Any]


def prepare(cfg: RunConfig, task, *, show: bool = True, allow_pickle: bool = False,
            trust_remote_code: bool = False) -> Prepared:
    """Read and check every split, resolve the Facts against the checkpoint and encode (feature cache)."""
    from ftkit.engine.feature_cache import encode_cached
    from ftkit.engine.models import load_facts
    from ftkit.engine.splits import describe, read_splits, workers_of

    read_started = time.time()
    with timing.phase("read"):
        task, splits, labels = read_splits(task, cfg)
        summary, _ = describe(task, splits, show=show)
    if show:
        log(f"  data read and checked in {time.time() - read_started:.1f}s")
    with timing.phase("model_load"):
        info, task, facts, tokenizer = load_facts(cfg, task, splits["train"], labels, allow_pickle=allow_pickle,
                                                  trust_remote_code=trust_remote_code)
    if show:
        log(f"  model: {info.path} (family {info.family}, {info.model_type}); window {facts.max_length} sub-tokens")
    workers = workers_of(cfg)
    encode_started = time.time()
    with timing.phase("encode"):
        features = {name: encode_cached(task, facts, ds, tokenizer, train=(name == "train"), workers=workers)
                    for name, ds in splits.items()}
    if show:
        log(f"  features ready in {time.time() - encode_started:.1f}s (--workers {workers}"
            f"{'; streamed: tokenized while training' if cfg.data.streaming else ''})")
    for name in ("validation", "test"):
        if show and name in features and len(features[name]) > len(splits[name]):
            log(f"  {name}: {len(features[name]) - len(splits[name])} extra windows for long inputs")
    return Prepared(task, facts, info, tokenizer, splits, features, summary)


def save(p: Prepared, folder: Path) -> None:
    """Examples, features and Facts as ``datasets`` folders the other processes memory-map."""
    from ftkit.engine.run_folder import write_json

    folder = Path(folder)
    with timing.phase("launch"):
        for kind, sets in (("examples", p.splits), ("features", p.features)):
            for name, ds in sets.items():
                ds.save_to_disk(str(folder / kind / name))
    write_json(folder / _META, {"facts": p.facts.to_meta(), "summary": p.summary, "splits": list(p.splits)})


def load(cfg: RunConfig, folder: Path, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> Prepared:
    """What :func:`save` wrote; the tokenizer and Facts are resolved again (cheap) and must agree."""
    from datasets import load_from_disk

    from ftkit.engine.models import load_facts
    from ftkit.engine.run_folder import read_json
    from ftkit.tasks import make_task

    folder = Path(folder)
    with timing.phase("launch"):  # the prepared data handed over: mapped, not read again
        meta = read_json(folder / _META)
        splits = {n: load_from_disk(str(folder / "examples" / n)) for n in meta["splits"]}
        features = {n: load_from_disk(str(folder / "features" / n)) for n in meta["splits"]}
    saved = meta["facts"]
    task = make_task(cfg.task, saved["task_options"], source=str(folder / _META))
    with timing.phase("model_load"):
        info, task, facts, tokenizer = load_facts(cfg, task, splits["train"], saved["labels"],
                                                  allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    if facts.to_meta() != saved:
        raise FtkitError("this process resolved other Facts than the process that prepared the data",
                         file=folder / _META, hint="every process must see the same model and ftkit version")
    return Prepared(task, facts, info, tokenizer, splits, features, meta["summary"])
