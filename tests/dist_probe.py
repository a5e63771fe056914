"""Scores of the five tasks' evaluation splits through ftkit's prediction path, for the distributed tests.

``torchrun --nproc_per_node 2 tests/dist_probe.py OUT.json MODELS.json LIMIT`` runs it in two processes
(the main one writes OUT.json, with the process group it saw); the test calls :func:`score_all` in one
process and compares.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def evaluation_setup(name: str, model_path: str, limit: int):
    """``(task, facts, tokenizer, examples, features, model)``: the task's demo evaluation split (its first
    ``limit`` examples) encoded for ``model_path``, and the model built for it (seeded: the same every time)."""
    from ftkit.api import resolve_config
    from ftkit.engine.models import build_model, load_facts
    from ftkit.engine.splits import read_splits
    from ftkit.tasks import make_task

    cfg, source = resolve_config(name, model=model_path)
    task, splits, labels = read_splits(make_task(cfg.task, cfg.task_options, source), cfg)
    info, task, facts, tokenizer = load_facts(cfg, task, splits["train"], labels)
    split = "validation" if "validation" in splits else "test"
    examples = splits[split].select(range(min(limit, len(splits[split]))))
    features = task.encode(examples, tokenizer, facts, train=False)
    return task, facts, tokenizer, examples, features, build_model(cfg, task, info, facts, tokenizer)


def score_all(models: dict[str, str], limit: int) -> dict[str, Any]:
    from ftkit.engine.inference import model_outputs

    out: dict[str, Any] = {}
    for name, model_path in models.items():
        task, facts, tokenizer, examples, features, model = evaluation_setup(name, model_path, limit)
        outputs = model_outputs(task, facts, model, tokenizer, features, batch_size=4, device="cpu")
        predictions = task.decode(examples, features, outputs, facts)
        scores = task.score(examples, predictions, facts)
        out[name] = {"examples": len(examples), "features": len(features), "outputs": len(outputs),
                     "scores": {k: v for k, v in scores.items() if isinstance(v, (int, float))}}
    return out


if __name__ == "__main__":
    import torch.distributed as dist

    from ftkit.engine import distributed

    target, models, limit = sys.argv[1], json.loads(open(sys.argv[2]).read()), int(sys.argv[3])
    group = distributed.setup("cpu")
    result = {"group": {**group, "initialized": dist.is_initialized(),
                        "world_size_seen": dist.get_world_size() if dist.is_initialized() else 1},
              "tasks": score_all(models, limit)}
    if distributed.is_main():
        with open(target, "w") as f:
            json.dump(result, f)
