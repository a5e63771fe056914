"""Task plugins: a third-party task registered through the `ftkit.tasks` entry point group runs through
the real CLI -- finetune -> eval -> export -> predict -- without a line of ftkit changed.

The plugin is tests/plugins/ftkit-pairreg (sentence-pair regression, Pearson/Spearman/MSE); it is
installed with pip into a temporary folder, as a user would install it.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

PLUGIN = Path(__file__).parent / "plugins" / "ftkit-pairreg"
GROUPS = {"animal": ["dog", "cat", "horse"], "city": ["Paris", "Berlin", "Rome"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(PLUGIN)], check=True, capture_output=True, timeout=300)
    assert list(target.glob("ftkit_pairreg-*.dist-info"))
    return target


def ftkit(site, *args, check=True):
    """``python -m ftkit ARGS`` with the plugin's install folder on the path (``site=None``: without it)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-m", "ftkit", *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def pairs(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        g1 = rng.choice(list(GROUPS))
        g2 = g1 if i % 2 else rng.choice(list(GROUPS))
        a, b = rng.choice(GROUPS[g1]), rng.choice(GROUPS[g2])
        # an additive target a tiny model can learn in a few steps: 2.5 per animal in the pair
        rows.append({"sentence1": f"the {a} is here", "sentence2": f"a {b} was there",
                     "score": 2.5 * ((g1 == "animal") + (g2 == "animal"))})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_plugin_task_end_to_end_through_the_cli(site, tiny_models, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from scipy.stats import pearsonr

    # the registry lists it, and --task help is built from the registry
    assert "pair_regression" in ftkit(site, "finetune", "--help").stdout

    train = write_jsonl(tmp_path / "train.jsonl", pairs(48, 0))
    dev = write_jsonl(tmp_path / "dev.jsonl", pairs(16, 1))
    test = write_jsonl(tmp_path / "test.jsonl", pairs(16, 2))
    run = tmp_path / "run"
    r = ftkit(site, "finetune", "--task", "pair_regression", "--model", tiny_models("bert"), "--train", train,
              "--validation", dev, "--test", test, "--output", run, "--epochs", 20, "--batch-size", 8,
              "--learning-rate", 3e-3, "--set", "training.logging_steps=6")
    assert "test: pearson" in r.stdout
    meta = json.loads((run / "run.json").read_text())
    assert meta["task"] == "pair_regression" and meta["data"]["train"]["pairs"] == 48
    losses = [json.loads(x)["loss"] for x in (run / "train_log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses[-1] < losses[0]

    scores = json.loads(ftkit(site, "eval", run, "--split", "test", "--json").stdout)
    assert scores["pearson"] > 0.8, scores  # it learnt: the score is 2.5 per animal in the pair
    assert scores["examples"] == 16 and scores == {**meta["metrics"]["test"], "split": "test", "data": str(test)}

    export = tmp_path / "export"
    ftkit(site, "export", run, "--output", export)
    # plain transformers on the export, scored here with scipy: the same numbers as `ftkit eval`
    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForSequenceClassification.from_pretrained(export).eval()
    rows = [json.loads(x) for x in test.read_text().splitlines()]
    enc = tok([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], padding=True, return_tensors="pt")
    import torch

    with torch.no_grad():
        plain = model(**enc).logits[:, 0].double().numpy()  # float64, as ftkit scores (scipy keeps float32)
    gold = np.array([r["score"] for r in rows])
    assert scores["pearson"] == pytest.approx(pearsonr(gold, plain)[0], abs=1e-5)
    assert scores["mse"] == pytest.approx(float(np.mean((gold - plain) ** 2)), abs=1e-5)

    inputs = "".join(json.dumps({"text": r["sentence1"], "text_pair": r["sentence2"]}) + "\n" for r in rows[:3])
    (tmp_path / "in.jsonl").write_text(inputs)
    out = [json.loads(x) for x in ftkit(site, "predict", export, "--input", tmp_path / "in.jsonl").stdout.splitlines()]
    assert [o["score"] for o in out] == pytest.approx(plain[:3].tolist(), abs=1e-5)

    # bad input through the plugin's reader: one line naming file and line, exit 2, no run folder
    bad = write_jsonl(tmp_path / "bad.jsonl", [pairs(1, 0)[0], {"sentence1": "a", "sentence2": "b", "score": "high"}])
    r = ftkit(site, "finetune", "--task", "pair_regression", "--model", tiny_models("bert"), "--train", bad,
              "--output", tmp_path / "bad-run", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"error: {bad}:2: 'score' must be a number, got 'high'")
    assert not (tmp_path / "bad-run").exists()


def test_the_plugin_touched_nothing_outside_its_package():
    """The measure of a plugin architecture: ftkit's own code never names the plugin's task."""
    hits = [p for p in (REPO / "src").rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".toml", ".md")
            and "pair_regression" in p.read_text(errors="ignore")]
    assert hits == []
    assert sorted(p.name for p in PLUGIN.iterdir() if not p.name.startswith((".", "build"))) == [
        "ftkit_pairreg", "pyproject.toml"]
