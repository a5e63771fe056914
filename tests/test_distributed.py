"""N processes train one model: 2 CPU processes over gloo (torchrun and `ftkit finetune --processes 2`)
against one process, kill -9 and resume, evaluation of every example exactly once, bad input before launch."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

SST2 = SAMPLES.parent / "sst2"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def ftkit(*args, check=True, timeout=300):
    r = subprocess.run([sys.executable, "-m", "ftkit", *map(str, args)], env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    """A tiny BERT without dropout (runs of different process counts must compute the same thing) and an SST-2
    sample whose dev split is not a multiple of the evaluation batch x 2 processes (padding is exercised)."""
    root = tmp_path_factory.mktemp("dist")
    model = root / "bert-nodrop"
    shutil.copytree(tiny_models("bert"), model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    train = root / "train.txt"
    train.write_text("".join((SST2 / "train.txt").read_text().splitlines(True)[:96]))
    dev = root / "dev.txt"
    dev.write_text("".join((SST2 / "validation.txt").read_text().splitlines(True)[:50]))
    return root, model, train, dev


def args(model, train, dev, out, batch):
    # 96 examples, global batch 8: 12 steps per epoch; checkpoints every 5 steps (mid-epoch)
    return ["finetune", "--task", "classification", "--model", model, "--train", train, "--validation", dev,
            "--output", out, "--epochs", "2", "--batch-size", batch, "--learning-rate", "1e-3", "--seed", "3",
            "--set", "task_options.line_format=label_text", "--set", "training.eval_strategy=steps",
            "--set", "training.eval_steps=5", "--set", "training.logging_steps=1"]


def meta(run):
    return json.loads((Path(run) / "run.json").read_text())


def scalars(metrics):
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def losses(run):
    """step -> logged training loss."""
    rows = [json.loads(x) for x in (Path(run) / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def evals(run):
    rows = [json.loads(x) for x in (Path(run) / "train_log.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval_loss" in r]


@pytest.fixture(scope="module")
def baseline(setup):
    """One process at batch 8 (in this process) and `ftkit finetune --processes 2` at batch 4 each."""
    import ftkit

    root, model, train, dev = setup
    one = ftkit.finetune("classification", model=str(model), train=str(train), validation=str(dev),
                         output=root / "one", epochs=2, batch_size=8, learning_rate=1e-3, seed=3,
                         overrides={"task_options.line_format": "label_text", "training.eval_strategy": "steps",
                                    "training.eval_steps": 5, "training.logging_steps": 1})
    r = ftkit_cli(args(model, train, dev, root / "two", 4) + ["--processes", "2"])
    return one.run_dir, root / "two", r


def ftkit_cli(argv):
    return ftkit(*argv)


def invoke(argv):
    """The CLI in this process (checks that end before any worker starts need no interpreter of their own)."""
    from typer.testing import CliRunner

    from ftkit.cli import app

    r = CliRunner().invoke(app, [str(a) for a in argv])
    return r.exit_code, r.stderr


def test_two_processes_of_batch_4_train_what_one_process_of_batch_8_trains(baseline):
    one, two, r = baseline
    a, b = meta(one), meta(two)
    assert a["distributed"]["world_size"] == 1
    # the process group really formed (world size read from torch.distributed in the workers)
    assert b["distributed"] == {"world_size": 2, "backend": "gloo", "launcher": "ftkit", "per_device_batch": 4,
                                "gradient_accumulation": 1, "global_batch": 8}
    assert a["metrics"]["train_steps"] == b["metrics"]["train_steps"] == 2 * 96 // 8  # half of 96 / 4 per epoch
    assert b["metrics"]["train_loss"] == pytest.approx(a["metrics"]["train_loss"], rel=1e-3)
    for key in ("accuracy", "f1", "precision", "recall"):
        assert b["metrics"]["validation"][key] == pytest.approx(a["metrics"]["validation"][key], abs=1e-9), key
    # every evaluation during training scored each dev example once (not the padded repeats)
    assert evals(two) and all(e["eval_examples"] == 50 for e in evals(two))
    assert [e["eval_accuracy"] for e in evals(one)] == [e["eval_accuracy"] for e in evals(two)]
    # the loss of every optimizer step is the one-process loss of the same 8 examples
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
    # one set of outputs: one summary, one start line, one result line, one log line per event
    assert r.stderr.count("  train: {") == 1 and r.stderr.count("  training: 2 processes (gloo") == 1
    assert r.stdout.count("validation: accuracy") == 1
    steps = [json.loads(x)["step"] for x in (two / "train_log.jsonl").read_text().splitlines()]
    assert len(steps) == len(set((s, i) for i, s in enumerate(steps))) and steps.count(1) == 1
    ckpt = sorted((two / "checkpoints").glob("checkpoint-*"))[-1]
    assert {"rng_state_0.pth", "rng_state_1.pth", "ftkit-distributed.json"} <= {f.name for f in ckpt.iterdir()}


def test_the_launcher_and_its_workers_share_one_timeline(baseline):
    """--processes: the launcher's start-up, reading and encoding, the workers' start (launch) and the main
    worker's phases make one timeline that sums to the wall time (the other worker writes nothing)."""
    _, two, r = baseline
    t = meta(two)["timings"]
    assert {"startup", "launch", "read", "encode", "model_load", "train", "eval_during_training", "save"} <= set(t), t
    # validation was scored at the best checkpoint during training: not again (on either process)
    assert "eval_validation" not in t and r.stderr.count("validation: scored at step") == 1
    assert sum(v for k, v in t.items() if k != "total") == pytest.approx(t["total"], rel=0.02)
    assert meta(two)["wall_time_s"] == pytest.approx(t["total"], abs=0.1)
    assert sum(line.startswith("time ") for line in r.stderr.splitlines()) == 1


def test_eval_of_the_saved_model_in_one_process_matches(baseline):
    import ftkit

    _, two, _ = baseline
    saved = json.loads((two / "eval_validation.json").read_text())
    again = ftkit.evaluate(two, split="validation", write=False).metrics
    assert saved["examples"] == again["examples"] == 50
    for key in ("accuracy", "f1", "precision", "recall"):
        assert saved[key] == pytest.approx(again[key], abs=1e-9), key


def _kill_tree(pid):
    import psutil

    root = psutil.Process(pid)
    procs = root.children(recursive=True) + [root]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def test_kill_9_of_the_whole_job_then_resume(setup, baseline, capfd):
    root, model, train, dev = setup
    crashed = root / "crashed"
    proc = subprocess.Popen([sys.executable, "-m", "ftkit", *map(str, args(model, train, dev, crashed, 4)),
                             "--processes", "2"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = crashed / "checkpoints" / "checkpoint-15" / "ftkit-complete"  # epoch 2, step 3 of 12
    deadline = time.time() + 240
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    _kill_tree(proc.pid)
    assert target.exists(), "the run never reached the mid-epoch checkpoint"
    assert not (crashed / "model").exists(), "killed before the end"
    alone = root / "crashed-1"
    shutil.copytree(crashed, alone)

    # resumed under torchrun: one process group of 2, one set of outputs, the uninterrupted run's results
    b = meta(baseline[1])["metrics"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ftkit",
                        "finetune", "--output", str(crashed), "--resume"], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("resuming from") == 1 and r.stdout.count("validation: accuracy") == 1
    m = meta(crashed)
    assert m["distributed"]["world_size"] == 2 and m["distributed"]["launcher"] == "torchrun"
    assert m["metrics"]["train_steps"] == b["train_steps"]
    assert scalars(m["metrics"]["validation"]) == pytest.approx(scalars(b["validation"]))
    assert evals(crashed)[-1]["eval_loss"] == pytest.approx(evals(baseline[1])[-1]["eval_loss"], abs=1e-5)
    after = {s: v for s, v in losses(baseline[1]).items() if s > 20}  # steps the resumed run made again
    assert {s: losses(crashed)[s] for s in after} == pytest.approx(after, rel=1e-4)
    # ... and a one-process `ftkit eval` of the model it saved agrees with what it scored
    from ftkit.api import evaluate

    again = evaluate(crashed, split="validation", write=False).metrics
    assert scalars(again) == pytest.approx(scalars(m["metrics"]["validation"]), abs=1e-9)

    # the same checkpoint resumed by one process: twice the accumulation keeps the global batch of 8
    from ftkit.api import finetune

    capfd.readouterr()
    finetune(output=alone, resume=True)
    assert "gradient accumulation 2 keeps its global batch of 8" in capfd.readouterr().err
    m1 = meta(alone)
    assert m1["distributed"]["world_size"] == 1 and m1["distributed"]["global_batch"] == 8
    assert m1["metrics"]["train_steps"] == b["train_steps"]
    assert m1["metrics"]["validation"]["accuracy"] == pytest.approx(b["validation"]["accuracy"])
    assert {s: losses(alone)[s] for s in after} == pytest.approx(after, rel=1e-3)


def test_resume_that_cannot_keep_the_global_batch_is_refused_in_one_line(tmp_path):
    from ftkit.engine.finetune import resume_accumulation
    from ftkit.errors import FtkitError

    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / "ftkit-distributed.json").write_text(json.dumps(
        {"world_size": 1, "per_device_batch": 8, "gradient_accumulation": 1, "global_batch": 8}))
    assert resume_accumulation(str(ckpt), 1, 8, 1) == 1
    with pytest.raises(FtkitError) as e:
        resume_accumulation(str(ckpt), 2, 8, 1)  # 2 x 8 = 16 cannot make 8
    assert "global batch of 8" in str(e.value) and "--processes 1" in str(e.value) and "\n" not in str(e.value)


def test_every_task_scores_each_example_once_under_two_processes(tiny_models, tmp_path):
    """Prediction under 2 processes (sharded, gathered, padding dropped; generation and QA post-processing
    included) gives the one-process scores for all five tasks."""
    from dist_probe import score_all

    models = {"ner": "bert", "classification": "bert", "relation": "bert", "qa": "bert", "translation": "t5"}
    models = {task: str(tiny_models(family)) for task, family in models.items()}
    (tmp_path / "models.json").write_text(json.dumps(models))
    out = tmp_path / "out.json"
    env = dict(ENV, FTKIT_NO_CACHE="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        str(REPO / "tests" / "dist_probe.py"), out, tmp_path / "models.json", "25"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["group"]["initialized"] and got["group"]["world_size_seen"] == 2
    assert got["group"]["backend"] == "gloo"
    one = score_all(models, 25)
    for task, res in one.items():
        two = got["tasks"][task]
        assert two["examples"] == res["examples"] == 25, task
        assert two["outputs"] == two["features"] == res["features"], task  # each feature's output exactly once
        assert two["scores"] == pytest.approx(res["scores"], abs=1e-6), task


@pytest.mark.parametrize("extra, message", [
    (["--processes", "0"], "--processes must be at least 1, got 0"),
    (["--processes", "2", "--accelerate-config", "no-such.yaml"], "accelerate config not found"),
    (["--processes", "2", "--accelerate-config", "{bad"], "accelerate config"),
    (["--processes", "2", "--accelerate-config", "fsdp"], "needs CUDA devices"),
    (["--processes", "2", "--max-steps", "2", "--set", "data.streaming=true"], "data.streaming trains on one process"),
])
def test_bad_launch_input_is_one_line_before_any_worker(setup, tmp_path, extra, message):
    root, model, train, dev = setup
    if extra[-1] == "{bad":
        bad = tmp_path / "bad.yaml"
        bad.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: [MULTI_GPU\n")
        extra = extra[:-1] + [bad]
    out = tmp_path / "run"
    code, err = invoke(args(model, train, dev, out, 4) + extra)
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and "training:" not in err and not out.exists()


def test_more_processes_than_cores_needs_an_explicit_cpu_request(setup, tmp_path):
    import torch

    from ftkit.launch import cpu_cores, worker_device
    from ftkit.errors import FtkitError

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine")
    n = cpu_cores() + 1
    with pytest.raises(FtkitError, match=f"--processes {n} on a machine without CUDA") as e:
        worker_device(n, "auto")
    assert "--device cpu" in str(e.value)
    assert worker_device(n, "cpu") == "cpu"
    root, model, train, dev = setup
    code, err = invoke(args(model, train, dev, tmp_path / "run", 4) + ["--processes", n])
    assert code == 2 and err.count("error:") == 1 and "--device cpu" in err and not (tmp_path / "run").exists()


def test_a_data_error_is_found_by_the_launcher(setup, tmp_path):
    root, model, _, dev = setup
    bad = tmp_path / "train.txt"
    bad.write_text("1 fine sentence\nnot-a-label oops\n")
    code, err = invoke(args(model, bad, dev, tmp_path / "run", 4) + ["--processes", "2"])
    assert code == 2
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and str(bad) in lines[0] and "label" in lines[0], err
    assert "Traceback" not in err and "training:" not in err and not (tmp_path / "run").exists()


def test_accelerate_configs_are_listed_and_well_formed():
    """The shipped configs load with accelerate's own loader and ask for what their names say. DeepSpeed and
    FSDP need CUDA devices, so here their structure is what is checked."""
    from accelerate.commands.config.config_args import load_config_from_file

    from ftkit.launch import accelerate_configs

    configs = accelerate_configs()
    assert set(configs) == {"ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3", "deepspeed-zero3-offload"}
    loaded = {name: load_config_from_file(str(path)) for name, path in configs.items()}
    assert loaded["ddp"].distributed_type.value == "MULTI_GPU"
    fsdp = loaded["fsdp"]
    assert fsdp.distributed_type.value == "FSDP"
    assert fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp.fsdp_config["fsdp_reshard_after_forward"] is True  # FSDP2's full shard
    for name, stage, offload in (("deepspeed-zero2", 2, "none"), ("deepspeed-zero3", 3, "none"),
                                 ("deepspeed-zero3-offload", 3, "cpu")):
        ds = loaded[name]
        assert ds.distributed_type.value == "DEEPSPEED"
        assert ds.deepspeed_config["zero_stage"] == stage
        assert ds.deepspeed_config["offload_optimizer_device"] == offload
        assert ds.deepspeed_config["offload_param_device"] == offload
        if stage == 3:
            assert ds.deepspeed_config["zero3_save_16bit_model"] is True  # full weights on save (export)
    r = ftkit("recipes")
    for name in configs:
        assert f"\n{name} " in r.stdout


def test_sigterm_to_one_worker_stops_every_worker_after_the_same_step(setup, tmp_path):
    """A scheduler's SIGTERM reaching one rank only: both ranks stop after the same step, the main process writes
    one complete checkpoint (both ranks' RNG states in it), and the job ends with 143."""
    import psutil

    root, model, _, dev = setup
    train = tmp_path / "train.txt"
    train.write_text("".join((SST2 / "train.txt").read_text().splitlines(True)[:400]))  # 50 steps per epoch
    out = tmp_path / "run"
    # 20 epochs (1,000 steps): long enough that the signal lands in training even on a busy machine; the run
    # stops shortly after it
    argv = args(model, train, dev, out, 4) + ["--processes", "2", "--set", "training.eval_steps=20",
                                              "--epochs", "20"]
    proc = subprocess.Popen([sys.executable, "-m", "ftkit", *map(str, argv)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "checkpoint-20" / "ftkit-complete").exists() and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.02)
    # the workers are the launcher's own children (their children, if any, inherit RANK too)
    workers = [p for p in psutil.Process(proc.pid).children() if "ftkit" in " ".join(p.cmdline())]
    rank1 = next(p for p in workers if p.environ().get("RANK") == "1")
    rank1.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err[-3000:]
    assert err.count("stopped by SIGTERM after step") == 1
    step = int(err.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert 20 < step < 1000 and not (out / "model").exists()
    ckpt = out / "checkpoints" / f"checkpoint-{step}"
    assert {"ftkit-complete", "rng_state_0.pth", "rng_state_1.pth", "optimizer.pt"} <= {f.name for f in ckpt.iterdir()}


def test_lora_under_two_processes_trains_what_one_process_trains(setup, tmp_path):
    """--peft lora with --processes 2 (batch 4 each) = one process at batch 8: same losses and scores; the
    adapter is merged on both ranks and written once, and the merged model loads with plain transformers."""
    import ftkit

    root, model, train, dev = setup
    common = {"task_options.line_format": "label_text", "training.eval_strategy": "no", "training.logging_steps": 1}
    one = ftkit.finetune("classification", model=str(model), train=str(train), validation=str(dev),
                         output=tmp_path / "one", max_steps=4, batch_size=8, learning_rate=1e-3, seed=3, peft="lora",
                         overrides=common)
    argv = ["finetune", "--task", "classification", "--model", model, "--train", train, "--validation", dev,
            "--output", tmp_path / "two", "--max-steps", "4", "--batch-size", "4", "--learning-rate", "1e-3",
            "--seed", "3", "--peft", "lora", "--processes", "2"] + [x for k, v in common.items()
                                                                    for x in ("--set", f"{k}={v}")]
    r = ftkit_cli(argv)
    a, b = meta(one.run_dir), meta(tmp_path / "two")
    assert b["distributed"]["world_size"] == 2 and b["peft"]["method"] == a["peft"]["method"] == "lora"
    assert b["parameters"] == a["parameters"] and 0 < a["parameters"]["trainable"] < a["parameters"]["total"]
    assert losses(tmp_path / "two") == pytest.approx(losses(one.run_dir), rel=1e-4)
    assert b["metrics"]["validation"]["accuracy"] == pytest.approx(a["metrics"]["validation"]["accuracy"], abs=1e-9)
    assert r.stderr.count("parameters: ") == 1
    from transformers import AutoModelForSequenceClassification

    m = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "two" / "model"))
    assert not any("lora" in n for n, _ in m.named_parameters())
    assert (tmp_path / "two" / "model" / "adapter" / "adapter_config.json").exists()
