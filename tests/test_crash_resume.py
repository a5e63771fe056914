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


def _signal_after(proc, log, marker: str, count: int, signum) -> str:
    """Send ``signum`` once ``log`` holds ``count`` occurrences of ``marker``; the process's stderr."""
    deadline = time.time() + 300
    while (not log.exists() or log.read_text().count(marker) < count) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    return proc.communicate(timeout=300)[1]


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
    err = _signal_after(proc, out / "train_log.jsonl", "\n", 10, signal.SIGINT)
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


# ---------------------------------------------------------------------------
# preemption: SIGTERM, --auto-resume, a full disk, a damaged checkpoint


def test_sigterm_mid_epoch_then_the_same_command_matches_uninterrupted(tiny_models, tmp_path):
    """A scheduler's SIGTERM saves a complete checkpoint and exits 143; the *same* command, run again with
    --auto-resume, continues from it and ends with the metrics of an uninterrupted run."""
    model = tiny_models("bert")
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join((SAMPLES / "train.txt").read_text().split("\n\n")[:80]) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    full = tmp_path / "full"
    r = subprocess.run(_args(model, train, full) + ["--auto-resume"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]

    out = tmp_path / "preempted"
    cmd = _args(model, train, out) + ["--auto-resume"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = _signal_after(proc, out / "train_log.jsonl", '"loss"', 24, signal.SIGTERM)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "same command again" in err
    saved = [p for p in (out / "checkpoints").glob("checkpoint-*") if (p / "ftkit-complete").exists()]
    newest = max(int(p.name.split("-")[1]) for p in saved)
    assert newest % 20 != 0, "the checkpoint on SIGTERM is mid-epoch (20 steps an epoch)"
    assert not (out / "model").exists()

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # the requeued job
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming from {out / 'checkpoints' / f'checkpoint-{newest}'}" in r.stderr
    a = json.loads((full / "run.json").read_text())["metrics"]
    b = json.loads((out / "run.json").read_text())["metrics"]
    assert a["train_steps"] == b["train_steps"]
    for key in ("f1", "precision", "recall", "accuracy"):
        assert round(a["validation"][key], 4) == round(b["validation"][key], 4), key

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # requeued once more: nothing to do
    assert r.returncode == 0 and "already complete" in r.stderr


def _small_cfg(tiny_models, tmp_path, **training):
    from ftkit.config import resolve

    train = tmp_path / "train.txt"
    train.write_text("\n\n".join((SAMPLES / "train.txt").read_text().split("\n\n")[:24]) + "\n")
    flags = {"model": str(tiny_models("bert")), "data.train": str(train), "data.validation": str(train),
             "training.batch_size": 8, "training.save_total_limit": 1,
             **{f"training.{k}": v for k, v in training.items()}}
    return resolve("ner", None, flags, [])[0]


def test_auto_resume_refuses_a_folder_of_another_recipe(tiny_models, tmp_path):
    from ftkit.engine.finetune import finetune
    from ftkit.errors import FtkitError

    finetune(_small_cfg(tiny_models, tmp_path, max_steps=1, auto_resume=True), tmp_path / "run")
    with pytest.raises(FtkitError, match=r"started with another recipe \(differs in training.learning_rate\)"):
        finetune(_small_cfg(tiny_models, tmp_path, max_steps=1, auto_resume=True, learning_rate=1e-3), tmp_path / "run")


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tiny_models, tmp_path, monkeypatch):
    import errno

    from ftkit.engine.finetune import finetune
    from ftkit.engine.trainer import FtkitTrainer
    from ftkit.errors import FtkitError
    from ftkit.export import export_run

    calls = []
    real = FtkitTrainer._save_optimizer_and_scheduler

    def full_disk(self, output_dir):
        calls.append(output_dir)
        if len(calls) == 2:  # the second checkpoint: its model is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", output_dir)
        return real(self, output_dir)

    monkeypatch.setattr(FtkitTrainer, "_save_optimizer_and_scheduler", full_disk)
    cfg = _small_cfg(tiny_models, tmp_path, epochs=3)
    run = tmp_path / "run"
    with pytest.raises(FtkitError) as e:
        finetune(cfg, run)
    msg = e.value.one_line()
    assert f"no space left on the device while writing {run / 'checkpoints' / 'checkpoint-6'}" in msg
    assert "MB are free" in msg and "needs about" in msg
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-3"] and (run / "checkpoints" / "checkpoint-3" / "ftkit-complete").exists()

    monkeypatch.setattr(FtkitTrainer, "_save_optimizer_and_scheduler", real)
    done = finetune(cfg, run, resume=True)  # the previous complete checkpoint resumes
    assert done["metrics"]["train_steps"] == 9

    import shutil

    def no_room(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(shutil, "copy2", no_room)
    with pytest.raises(FtkitError, match=r"no space left on the device while writing .*export: it needs about"):
        export_run(run, tmp_path / "export")
    assert not (tmp_path / "export").exists() and not list(tmp_path.glob(".export*"))


def test_truncated_weights_in_the_newest_checkpoint_are_detected(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from ftkit.engine.run_folder import last_complete_checkpoint

    ck = tmp_path / "checkpoints"
    for step in (5, 10, 15):
        d = ck / f"checkpoint-{step}"
        d.mkdir(parents=True)
        save_file({"w": torch.zeros(64, 64)}, str(d / "model.safetensors"))
        torch.save({"state": torch.ones(16)}, d / "optimizer.pt")
        (d / "ftkit-complete").write_text("ok\n")
    newest = ck / "checkpoint-15" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # the marker is there, the weights are cut short
    middle = ck / "checkpoint-10" / "optimizer.pt"
    middle.write_bytes(middle.read_bytes()[:-50])
    assert last_complete_checkpoint(ck).endswith("checkpoint-5")
    err = capsys.readouterr().err
    assert "damaged checkpoint" in err and "model.safetensors is truncated (16356 of 16456 bytes)" in err
    assert "optimizer.pt is truncated or damaged" in err
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint-5"]
