"""kill -9 in the middle of an epoch, then --resume: the same final metrics as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import SAMPLES


def _args(model, train, out):
    return [sys.executable, "-m", "ftkit", "finetune", "--task", "ner", "--model", str(model),
            "--train", str(train), "--validation", str(train), "--output", str(out), "--epochs", "3",
            "--batch-size", "4", "--learning-rate", "2e-3", "--seed", "11",
            "--set", "data.test=null", "--set", "training.eval_strategy=steps", "--set", "training.eval_steps=7",
            "--set", "training.logging_steps=1", "--set", "training.save_total_limit=2"]


def test_kill_9_mid_epoch_then_resume_matches_uninterrupted(tiny_models, tmp_path):
    model = tiny_models("bert")
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join((SAMPLES / "train.txt").read_text().split("\n\n")[:80]) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    full = tmp_path / "full"
    r = subprocess.run(_args(model, train, full), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(_args(model, train, crashed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    target = crashed / "checkpoints" / "checkpoint-28" / "ftkit-complete"  # epoch 2, step 8 of 20
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.exists(), "the run never reached the mid-epoch checkpoint"
    assert not (crashed / "model").exists(), "killed before the end"

    r = subprocess.run([sys.executable, "-m", "ftkit", "finetune", "--output", str(crashed), "--resume"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stderr

    a = json.loads((full / "run.json").read_text())["metrics"]
    b = json.loads((crashed / "run.json").read_text())["metrics"]
    assert a["train_steps"] == b["train_steps"]
    assert 28 % (a["train_steps"] // 3) != 0, "the kill happened in the middle of an epoch"
    for key in ("f1", "precision", "recall", "accuracy"):
        assert round(a["validation"][key], 4) == round(b["validation"][key], 4), (key, a["validation"], b["validation"])

    def last_eval(run):
        rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
        return [r for r in rows if "eval_loss" in r][-1]

    assert last_eval(full)["eval_loss"] == pytest.approx(last_eval(crashed)["eval_loss"], abs=1e-4)


def test_incomplete_checkpoint_is_skipped_with_a_warning(tmp_path, capsys):
    from ftkit.engine.run_folder import last_complete_checkpoint

    ck = tmp_path / "checkpoints"
    for step, complete in ((5, True), (10, True), (15, False)):
        d = ck / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "ftkit-complete").write_text("ok\n")
    assert last_complete_checkpoint(ck).endswith("checkpoint-10")
    assert "incomplete checkpoint" in capsys.readouterr().err
    assert not (ck / "checkpoint-15").exists()


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tiny_models, tmp_path):
    model = tiny_models("bert")
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join((SAMPLES / "train.txt").read_text().split("\n\n")[:80]) + "\n")
    out = tmp_path / "run"
    args = _args(model, train, out)
    args[args.index("--epochs") + 1] = "200"  # far longer than the test waits
    proc = subprocess.Popen(args, env=dict(os.environ, HF_HUB_OFFLINE="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.time() + 300
    while (not log.exists() or log.read_text().count("\n") < 10) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and str(out) in err
    assert any((p / "ftkit-complete").exists() for p in (out / "checkpoints").glob("checkpoint-*"))
    assert not (out / "model").exists()


def test_export_interrupted_midway_leaves_nothing(tiny_models, tmp_path, monkeypatch):
    import shutil

    from ftkit.config import resolve
    from ftkit.engine.finetune import finetune
    from ftkit.export import export_run

    train = tmp_path / "train.txt"
    train.write_text("\n\n".join((SAMPLES / "train.txt").read_text().split("\n\n")[:12]) + "\n")
    cfg = resolve("ner", None, {"model": str(tiny_models("bert")), "data.train": str(train), "data.validation": None,
                                "training.max_steps": 1}, ["data.validation=null", "data.test=null"])[0]
    finetune(cfg, tmp_path / "run")
    copied = []
    real_copy = shutil.copy2

    def flaky_copy(src, dst, *a, **k):
        if len(copied) == 2:
            raise KeyboardInterrupt
        copied.append(src)
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copy2", flaky_copy)
    with pytest.raises(KeyboardInterrupt):
        export_run(tmp_path / "run", tmp_path / "export")
    assert not (tmp_path / "export").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []
    monkeypatch.setattr(shutil, "copy2", real_copy)
    assert (export_run(tmp_path / "run", tmp_path / "export") / "model.safetensors").exists()
