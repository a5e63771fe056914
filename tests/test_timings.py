"""run.json's "timings": every second of `ftkit finetune` charged to one phase, summing to the wall time."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import SAMPLES

from ftkit.timing import Clock, one_line

SST2 = SAMPLES.parent / "sst2"
PHASES = {"startup", "read", "encode", "model_load", "train", "eval_during_training", "eval_test", "save", "plot"}


def first_blocks(text: str, n: int) -> str:
    """The first ``n`` blank-line separated blocks (CoNLL sentences)."""
    return "\n\n".join(text.strip().split("\n\n")[:n]) + "\n"


TASKS = {  # task -> (sample folder, how to cut a file, extra flags, metric)
    "classification": (SST2, lambda t, n: "".join(t.splitlines(True)[:n]),
                       ["--set", "task_options.line_format=label_text"], "accuracy"),
    "ner": (SAMPLES, first_blocks, [], "f1"),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_the_breakdown_of_a_tiny_cli_run_sums_to_its_wall_time(tiny_models, tmp_path, task):
    folder, cut, extra, metric = TASKS[task]
    for name, n in (("train", 48), ("validation", 20), ("test", 20)):
        (tmp_path / f"{name}.txt").write_text(cut((folder / f"{name}.txt").read_text(), n))
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "ftkit", "finetune", "--task", task, "--model", str(tiny_models("bert")),
            "--train", str(tmp_path / "train.txt"), "--validation", str(tmp_path / "validation.txt"),
            "--test", str(tmp_path / "test.txt"), "--output", str(out), "--max-steps", "4", "--batch-size", "8",
            "--learning-rate", "1e-3", "--set", "training.eval_strategy=steps", "--set", "training.eval_steps=2",
            *extra]
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    wall = time.time() - t0  # measured from outside: process start to exit
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    t = meta["timings"]
    assert PHASES <= set(t), t
    parts = sum(v for k, v in t.items() if k != "total")
    assert parts == pytest.approx(t["total"], rel=0.02)
    # the run's own total is the command's wall time, less the interpreter's exit after run.json is written
    assert 0.85 * wall - 1.0 <= t["total"] <= wall
    assert meta["wall_time_s"] == pytest.approx(t["total"], abs=0.1)
    assert t.get("other", 0.0) <= 0.05 * t["total"] + 0.2, t  # nearly every second has a name
    assert all(v >= 0 for v in t.values()) and t["train"] > 0 and t["eval_during_training"] > 0
    # validation was scored during training at the step training ended with: not scored again, same scores
    assert "eval_validation" not in t and "validation: scored at step" in r.stderr
    best = int(meta["metrics"]["best_checkpoint"].rsplit("-", 1)[1])
    logged = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    at_best = next(x for x in logged if x.get("step") == best and f"eval_{metric}" in x)
    assert meta["metrics"]["validation"][metric] == pytest.approx(at_best[f"eval_{metric}"])
    import ftkit

    # the saved model scored from scratch (evaluation during training ran longest first and put the outputs back
    # in order; this runs the batched loop): the same scores
    again = ftkit.evaluate(out, "validation", write=False)
    assert again.metrics[metric] == pytest.approx(meta["metrics"]["validation"][metric], abs=1e-6)
    assert again.metrics[metric] > 0 or task == "classification"
    assert (out / "predictions_validation.jsonl").exists() and (out / "eval_validation.json").exists()
    # the one line at the end names the phases and the total
    last = [line for line in r.stderr.splitlines() if line.startswith("time ")]
    assert len(last) == 1 and last[0] == one_line(t) and "train" in last[0] and "startup" in last[0]


def test_nested_phases_charge_the_innermost_and_sum_to_the_total():
    c = Clock(origin=time.time())
    c.charge("startup")
    with c.phase("train"):
        time.sleep(0.02)
        with c.phase("eval_during_training"):
            time.sleep(0.03)
        time.sleep(0.02)
    time.sleep(0.01)
    t = c.report()
    assert t["eval_during_training"] >= 0.03 and 0.04 <= t["train"] < 0.04 + 0.03
    assert sum(v for k, v in t.items() if k != "total") == pytest.approx(t["total"], abs=0.03)
    assert list(t)[:3] == ["startup", "train", "eval_during_training"] and t["other"] >= 0.01
