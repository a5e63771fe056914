"""Experiment tracking (--report-to) read back through each tracker's own reader, and the per-example
prediction rows every task writes for the report's error analysis."""

import json

import pytest
import yaml
from conftest import SAMPLES, facts
from typer.testing import CliRunner

from ftkit.cli import app


def _sentences(n, source="train.txt", skip=0):
    blocks = [b for b in (SAMPLES / source).read_text().split("\n\n") if b.strip() and "DOCSTART" not in b]
    return "\n\n".join(blocks[skip:skip + n]) + "\n"


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_tensorboard_and_mlflow_hold_the_losses_metrics_and_recipe(tiny_models, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    train.write_text(_sentences(32))
    dev.write_text(_sentences(16, "validation.txt"))
    run = tmp_path / "run"
    r = CliRunner().invoke(app, [
        "finetune", "--task", "ner", "--model", str(tiny_models("bert")), "--train", str(train),
        "--validation", str(dev), "--test", str(dev), "--max-steps", "6", "--batch-size", "8",
        "--learning-rate", "3e-3", "--report-to", "tensorboard,mlflow", "--output", str(run),
        "--set", "training.eval_strategy=steps", "--set", "training.eval_steps=2", "--set", "training.logging_steps=1"])
    assert r.exit_code == 0, r.stderr[-2000:]

    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    losses = {x["step"]: x["loss"] for x in log if "loss" in x}
    evals = [x for x in log if "eval_f1" in x]
    assert [x["step"] for x in evals] == [2, 4, 6]
    eval_keys = sorted(k for k in evals[0] if k.startswith("eval_") and isinstance(evals[0][k], (int, float)))
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_loss"} <= set(eval_keys)

    # tensorboard: event files under RUN/tensorboard, read back with tensorboard's own reader
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tb_loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert tb_loss.keys() == losses.keys() and len(losses) == 6
    assert all(tb_loss[s] == pytest.approx(v, rel=1e-5) for s, v in losses.items())
    for key in eval_keys:
        series = [(e.step, e.value) for e in events.Scalars("eval/" + key[len("eval_"):])]
        assert series == [(x["step"], pytest.approx(x[key], rel=1e-5)) for x in evals], key

    # mlflow: a SQLite store under RUN/mlflow; params = the resolved recipe, metrics = the eval metrics
    where = json.loads((run / "mlflow_run.json").read_text())
    assert where["tracking_uri"] == f"sqlite:///{(run / 'mlflow' / 'mlflow.db').resolve()}"
    client = MlflowClient(where["tracking_uri"])
    mrun = client.get_run(where["run_id"])
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "run"
    recipe = _flat(yaml.safe_load((run / "recipe.yaml").read_text()))
    assert "training.learning_rate" in recipe and "task_options.tag_scheme" in recipe
    for key, value in recipe.items():
        assert mrun.data.params[key] == (value if isinstance(value, str) else json.dumps(value)), key
    for key in eval_keys:
        history = sorted((m.step, m.value) for m in client.get_metric_history(where["run_id"], key))
        assert history == [(x["step"], pytest.approx(x[key], rel=1e-6)) for x in evals], key
    for split in ("validation", "test"):
        scores = json.loads((run / f"eval_{split}.json").read_text())
        assert mrun.data.metrics[f"{split}_f1"] == pytest.approx(scores["f1"])

    # run.json counts the parameters; plain transformers counts the same from the saved model
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(run / "model")
    n = sum(p.numel() for p in model.parameters())
    assert json.loads((run / "run.json").read_text())["parameters"] == {"trainable": n, "total": n}


@pytest.mark.parametrize("tracker", ["wandb", "trackio"])
def test_a_missing_tracker_package_is_one_line_naming_the_install(tracker, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["finetune", "--task", "ner", "--report-to", f"tensorboard,{tracker}",
                                 "--output", str(out)])
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert len(errors) == 1 and f"pip install 'ftkit[{tracker}]'" in errors[0], r.stderr
    assert not out.exists()


def test_an_unknown_tracker_is_rejected_by_name(tmp_path):
    r = CliRunner().invoke(app, ["finetune", "--task", "ner", "--report-to", "tensorboard,comet",
                                 "--output", str(tmp_path / "run")])
    assert r.exit_code == 2 and r.stderr.count("error:") == 1 and "Traceback" not in r.stderr
    assert "--report-to" in r.stderr and "'comet'" in r.stderr and "mlflow" in r.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------
# prediction rows (predictions_<split>.jsonl): one per example, per task


def _rows(task_name, examples, predictions, labels=(), options=None):
    from datasets import Dataset

    from ftkit.tasks import make_task

    task = make_task(task_name, options or {})
    rows = task.prediction_rows(Dataset.from_list(examples), predictions, facts(task, labels))
    json.dumps(rows)  # JSON-ready
    return rows


def _marked(field, source):
    return {(field["text"][s["start"]:s["end"]], s["label"]) for s in field["spans"] if s["source"] == source}


def test_ner_rows_mark_gold_and_predicted_entities_in_the_sentence():
    ex = {"tokens": ["Peter", "Blackburn", "visited", "Paris", "."], "tags": ["B-PER", "I-PER", "O", "B-LOC", "O"]}
    pred = [("B-PER", 0.9), ("I-PER", 0.8), ("O", 0.9), ("B-ORG", 0.6), ("O", 0.9)]
    right = [(t, 0.9) for t in ex["tags"]]
    rows = _rows("ner", [ex, ex], [pred, right], ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"])
    field = rows[0]["fields"][0]
    assert field["text"] == "Peter Blackburn visited Paris ."
    assert _marked(field, "gold") == {("Peter Blackburn", "PER"), ("Paris", "LOC")}
    assert _marked(field, "predicted") == {("Peter Blackburn", "PER"), ("Paris", "ORG")}
    assert rows[0]["severity"] == 2 and not rows[0]["correct"]  # LOC missed, ORG spurious
    assert rows[1]["correct"] and rows[1]["severity"] == 0


def test_classification_and_relation_rows_rank_mistakes_by_confidence():
    rows = _rows("classification", [{"text": "fine", "label": "pos"}, {"text": "awful", "label": "neg"}],
                 [{"label": "neg", "probabilities": {"neg": 0.93, "pos": 0.07}},
                  {"label": "neg", "probabilities": {"neg": 0.6, "pos": 0.4}}], ["neg", "pos"])
    assert [r["correct"] for r in rows] == [False, True]
    assert rows[0]["severity"] == pytest.approx(0.93) and (rows[0]["gold"], rows[0]["predicted"]) == ("pos", "neg")

    text = "The company fabricates plastic chairs ."
    ex = {"id": "1", "text": text, "head": [4, 11], "tail": [31, 37], "head_type": "", "tail_type": "",
          "label": "Product-Producer(e2,e1)", "source": "x:1"}
    rows = _rows("relation", [ex], [("Other", {"Other": 0.7, "Product-Producer(e2,e1)": 0.3})],
                 ["Other", "Product-Producer(e2,e1)"])
    assert _marked(rows[0]["fields"][0], "input") == {("company", "e1"), ("chairs", "e2")}
    assert rows[0]["severity"] == pytest.approx(0.7) and rows[0]["predicted"] == "Other"


def test_qa_rows_score_each_question_and_mark_spans_in_the_context():
    context = "The Denver Broncos won Super Bowl 50 ."
    ex = {"id": "q1", "title": "t", "question": "Who won?", "context": context,
          "answers": {"text": ["Broncos"], "answer_start": [11]}}
    rows = _rows("qa", [ex], [{"text": "Denver Broncos", "start": 4, "end": 18, "score": 0.5}])
    # official normalisation: prediction tokens [denver, broncos], gold [broncos]: P 1/2, R 1, F1 2/3
    assert rows[0]["severity"] == pytest.approx(1 - 2 / 3)
    assert _marked(rows[0]["fields"][1], "gold") == {("Broncos", "gold")}
    assert _marked(rows[0]["fields"][1], "predicted") == {("Denver Broncos", "predicted")}


def test_translation_rows_carry_sentence_chrf():
    from sacrebleu import sentence_chrf

    ex = [{"source": "A dog runs .", "target": "Ein Hund rennt ."}, {"source": "A cat .", "target": "Eine Katze ."}]
    hyps = ["Ein Hund läuft .", "Eine Katze ."]
    rows = _rows("translation", ex, hyps, options={"source_lang": "en", "target_lang": "de"})
    for row, e, h in zip(rows, ex, hyps):
        assert row["chrf"] == pytest.approx(sentence_chrf(h, [e["target"]]).score, abs=0.01)
        assert [f["name"] for f in row["fields"]] == ["source", "reference", "output"]
    assert rows[1]["correct"] and not rows[0]["correct"]
