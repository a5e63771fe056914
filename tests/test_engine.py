"""Engine behaviour: resume from a checkpoint, seeds, overwrite protection, feature cache."""

import json
import shutil

import pytest
from conftest import SAMPLES

from ftkit.config import resolve
from ftkit.engine.finetune import finetune
from ftkit.errors import FtkitError


def _cfg(model_dir, tmp_path, **training):
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join((SAMPLES / "train.txt").read_text().split("\n\n")[:40]) + "\n")
    flags = {"model": str(model_dir), "data.train": str(train), "data.validation": str(train), "data.test": None,
             "training.batch_size": 8, "training.learning_rate": 3e-3, "training.logging_steps": 1,
             "training.save_total_limit": 3, "training.group_by_length": False}
    flags.update({f"training.{k}": v for k, v in training.items()})
    return resolve("ner", None, flags, [])[0]


def test_resume_continues_from_the_last_checkpoint(tiny_models, tmp_path):
    cfg = _cfg(tiny_models("bert"), tmp_path, epochs=3)
    full = finetune(cfg, tmp_path / "full")

    # a run that "died" after its second epoch: drop the last checkpoint and everything after it
    run = tmp_path / "run"
    shutil.copytree(tmp_path / "full", run)
    ckpts = sorted((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    shutil.rmtree(ckpts[-1])
    shutil.rmtree(run / "model")
    resumed = finetune(cfg, run, resume=True)
    assert resumed["metrics"]["train_steps"] == full["metrics"]["train_steps"]
    assert resumed["metrics"]["validation"]["f1"] == pytest.approx(full["metrics"]["validation"]["f1"], abs=1e-4)
    logs = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert any(r["step"] > int(ckpts[-2].name.split("-")[1]) for r in logs)


def test_same_seed_same_metrics(tiny_models, tmp_path):
    cfg = _cfg(tiny_models("bert"), tmp_path, epochs=1)
    a = finetune(cfg, tmp_path / "a")["metrics"]
    b = finetune(cfg, tmp_path / "b")["metrics"]
    assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    assert a["validation"]["f1"] == b["validation"]["f1"]


def test_overwrite_replaces_and_cache_is_reused(tiny_models, tmp_path, monkeypatch):
    import ftkit.engine.feature_cache as feature_cache
    from ftkit.tasks import make_task

    cfg = _cfg(tiny_models("bert"), tmp_path, max_steps=2)
    run = tmp_path / "run"
    finetune(cfg, run)
    with pytest.raises(FtkitError, match="exists and is not empty"):
        finetune(cfg, run)
    calls = []
    task_cls = type(make_task("ner", {}))
    orig_encode = task_cls.encode
    monkeypatch.setattr(task_cls, "encode", lambda self, *a, **k: calls.append(1) or orig_encode(self, *a, **k))
    finetune(cfg, run, overwrite=True)
    assert calls == [], "features of unchanged data come from the cache"
    assert (run / "model" / "model.safetensors").exists()
    # an edited task module (a development install) re-encodes instead of reusing stale features
    monkeypatch.setenv("FTKIT_NO_CACHE", "1")
    finetune(cfg, run, overwrite=True)
    uncached, calls[:] = len(calls), []
    assert uncached > 0
    monkeypatch.delenv("FTKIT_NO_CACHE")
    monkeypatch.setattr(feature_cache, "code_fingerprint", lambda cls: "edited")
    finetune(cfg, run, overwrite=True)
    assert len(calls) == uncached, "every encoding happened again, as without a cache"


def test_out_of_memory_suggests_smaller_batches(tiny_models, tmp_path, monkeypatch):
    import torch
    from transformers import Trainer

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", oom)
    cfg = _cfg(tiny_models("bert"), tmp_path, max_steps=2, batch_size=32, gradient_accumulation=1)
    with pytest.raises(FtkitError) as e:
        finetune(cfg, tmp_path / "run")
    msg = e.value.one_line()
    assert "batch size 32" in msg and "--batch-size 16 --gradient-accumulation 2" in msg and "--auto-batch-size" in msg
    assert not (tmp_path / "run").exists()


def test_validation_fraction_of_a_tiny_file_is_a_clear_error(tmp_path):
    from ftkit.engine.splits import read_splits
    from ftkit.tasks import make_task

    train = tmp_path / "one.conll"
    train.write_text("Paris B-LOC\n")
    cfg = resolve("ner", None, {"data.train": str(train), "data.validation": None, "data.test": None},
                  ["data.validation=null", "data.test=null", "data.validation_fraction=0.1"])[0]
    with pytest.raises(FtkitError, match="leaves an empty split"):
        read_splits(make_task("ner", {}), cfg)


def test_confusion_png_only_for_square_single_label_matrices(tmp_path):
    from ftkit.engine.run_folder import write_eval

    m = {"split": "test", "confusion_matrix": {"labels": ["a", "b", "c"], "matrix": [[3, 1, 0], [0, 2, 0], [1, 0, 5]]}}
    write_eval(tmp_path, m)
    assert json.loads((tmp_path / "eval_test.json").read_text()) == m
    assert (tmp_path / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"
    # NER/QA/translation metrics and multi-label per-label matrices: JSON only, no picture
    for other in ({"split": "validation", "f1": 0.5},
                  {"split": "validation", "confusion_matrix": {"labels": ["a"], "matrices": {"a": [[1, 0], [0, 1]]}}},
                  {"split": "validation", "confusion_matrix": {"labels": ["a", "b"], "matrix": [[1, 0]]}}):
        write_eval(tmp_path, other)
        assert not (tmp_path / "confusion_validation.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_test.png", "eval_test.json", "eval_validation.json"]


def test_length_grouped_batches_come_in_random_order():
    """Padding-saving batches of similar length, the longest first, then the rest shuffled: not the
    long-to-short sweep transformers' LengthGroupedSampler makes within every 50 batches."""
    import random

    from ftkit.engine.trainer import EpochSeededSampler

    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(1000)]
    sampler = EpochSeededSampler(len(lengths), 8, seed=7, lengths=lengths)
    order = list(sampler)
    assert sorted(order) == list(range(1000))
    assert order == list(sampler), "one epoch's order depends on seed and epoch alone"
    batches = [order[i:i + 8] for i in range(0, 1000, 8)]
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 5, "batches hold similar lengths"
    means = [sum(lengths[i] for i in b) / len(b) for b in batches[1:51]]
    falls = sum(a > b for a, b in zip(means, means[1:]))
    assert 15 < falls < 35, "batch lengths neither sorted nor reverse-sorted within 50 steps"
    sampler.set_epoch(1)
    assert list(sampler) != order
    unsorted = EpochSeededSampler(10, 4, seed=7)
    assert sorted(unsorted) == list(range(10))
