"""ONNX export: parity with PyTorch for every exportable task, through the CLI and Predictor.

Each exportable task/head is trained for two steps, exported with `ftkit export RUN --output DIR
--format onnx`, and run on 64 real inputs from the bundled samples by both backends: raw logits agree
to 1e-4 and the predictions (labels, spans, QA answers) are identical. Token-level heads use a tiny
random BERT (its token states differ from input to input); sentence classification uses MiniLM, since a
tiny random BERT gives almost the same [CLS] state for every input, and so the same label.
"""

import json

import numpy as np
import pytest
from conftest import REPO
from typer.testing import CliRunner

SAMPLES = REPO / "src" / "ftkit" / "samples"
CASES = [("ner", None), ("classification", None), ("qa", None), ("relation", "entity_start"), ("relation", "cls")]
#: the checkpoint per case: a tiny random BERT, or MiniLM where a tiny one predicts one label for everything
MODEL = {("classification", None): "minilm"}


def real_inputs(task: str, n: int = 64) -> list[dict]:
    """n inputs as a user gives them to `ftkit predict`, from the bundled test samples."""
    if task == "ner":
        blocks = (SAMPLES / "conll2003" / "test.txt").read_text().split("\n\n")
        lines = [" ".join(w.split()[0] for w in b.splitlines() if w.strip() and not w.startswith("-DOCSTART"))
                 for b in blocks]
        return [{"text": t} for t in lines if t][:n]
    if task == "classification":
        return [{"text": line.split(" ", 1)[1]} for line in (SAMPLES / "sst2" / "test.txt").read_text().splitlines()][:n]
    if task == "relation":
        lines = (SAMPLES / "semeval2010" / "test.txt").read_text().splitlines()
        return [{"text": line} for line in lines if "\t" in line][:n]
    squad = json.loads((SAMPLES / "squad" / "test.json").read_text())
    return [{"question": qa["question"], "context": p["context"]}
            for a in squad["data"] for p in a["paragraphs"] for qa in p["qas"]][:n]


def train_tiny(task, pooling, model, out):
    from ftkit.config import resolve
    from ftkit.engine.finetune import finetune
    from ftkit.tasks import get_task_class

    flags = {"model": str(model), "training.max_steps": 2, "training.batch_size": 8,
             "training.learning_rate": 1e-5, "data.max_train_examples": 32}
    sets = ["data.validation=null", "data.test=null", "data.validation_fraction=null"]
    if pooling:
        sets.append(f"task_options.pooling={pooling}")
    cfg, _ = resolve(task, get_task_class(task).demo_recipe, flags, sets)  # the bundled sample data
    finetune(cfg, out)
    return out


@pytest.fixture(scope="module")
def exported(tiny_models, tmp_path_factory):
    """(run folder, ONNX export folder) per case, trained and exported once for the module."""
    from ftkit.cli import app

    done = {}

    def get(task, pooling):
        if (task, pooling) not in done:
            root = tmp_path_factory.mktemp(f"onnx-{task}-{pooling}")
            run = train_tiny(task, pooling, MODEL.get((task, pooling)) or tiny_models("bert"), root / "run")
            out = root / "onnx"
            r = CliRunner().invoke(app, ["export", str(run), "--output", str(out), "--format", "onnx"])
            assert r.exit_code == 0, r.output
            done[task, pooling] = run, out
        return done[task, pooling]

    return get


@pytest.mark.parametrize("task,pooling", CASES)
def test_onnx_matches_pytorch_logits_and_predictions(task, pooling, exported):
    import torch

    from ftkit.engine.inference import Predictor, model_outputs

    run, out = exported(task, pooling)
    meta = json.loads((out / "ftkit.json").read_text())
    assert meta["format"] == "onnx" and meta["onnx"]["dynamic_axes"] == {"0": "batch", "1": "sequence"}
    assert {"model.onnx", "tokenizer.json", "ftkit.json", "README.md"} <= {f.name for f in out.iterdir()}

    eager, onnx = Predictor.load(run), Predictor.load(out)
    assert getattr(onnx.model, "is_onnx", False) and not getattr(eager.model, "is_onnx", False)
    records = real_inputs(task)
    assert len(records) == 64

    # raw graph outputs vs the PyTorch model's, batch by batch (varied batch sizes and lengths)
    examples = eager.task.predict_examples(records)
    features = eager.task.encode(examples, eager.tokenizer, eager.facts, train=False)
    collate = eager.task.collator(eager.tokenizer, eager.facts)
    names = meta["onnx"]["outputs"]
    worst = 0.0
    for start, size in ((0, 1), (1, 7), (8, 32), (40, len(features))):
        rows = [features[i] for i in range(start, min(start + size, len(features)))]
        batch = collate(rows)
        with torch.no_grad():
            ref = eager.model(**{k: batch[k] for k in meta["onnx"]["inputs"]})
        got = onnx.model.run(batch)
        for name, value in zip(names, got):
            assert value.shape == tuple(ref[name].shape)
            worst = max(worst, float(np.abs(value - ref[name].numpy()).max()))
    assert worst <= 1e-4, worst

    # the engine's reduced outputs (what decode reads) and the decoded predictions
    a = model_outputs(eager.task, eager.facts, eager.model, eager.tokenizer, features, batch_size=16)
    b = model_outputs(onnx.task, onnx.facts, onnx.model, onnx.tokenizer, features, batch_size=16)
    assert a.shape == b.shape
    if a.ndim == 3:  # per sub-token: each feature's own positions (beyond them, whatever its pass left there)
        from ftkit.engine.batched import feature_lengths

        assert max(np.abs(a[i, :n] - b[i, :n]).max() for i, n in enumerate(feature_lengths(features))) <= 1e-4
    else:
        assert np.abs(a - b).max() <= 1e-4
    pa, pb = eager.predict(records, batch_size=16), onnx.predict(records, batch_size=16)
    assert _labels(task, pa) == _labels(task, pb)
    if (task, pooling) != ("relation", "cls"):  # (a tiny random BERT's [CLS] head: one label for all)
        assert len({json.dumps(x) for x in _labels(task, pa)}) > 1, "the comparison must not be trivial"
    if task == "qa":
        assert len(features) > len(records), "some contexts span several windows"


def _labels(task, predictions):
    """What must be identical across backends: labels and spans (scores may differ in the last digit)."""
    if task == "ner":
        return [[(e["label"], e["start"], e["end"]) for e in p["entities"]] for p in predictions]
    if task == "qa":
        return [(p.get("answer"), p.get("start"), p.get("end")) for p in predictions]
    return [p["label"] for p in predictions]


def test_predict_and_eval_commands_run_the_onnx_folder(exported, tmp_path):
    from ftkit.cli import app

    run, out = exported("ner", None)
    data = SAMPLES / "conll2003" / "test.txt"
    lines = "\n".join(r["text"] for r in real_inputs("ner", 20)) + "\n"
    a = CliRunner().invoke(app, ["predict", str(run), "--input", "-"], input=lines)
    b = CliRunner().invoke(app, ["predict", str(out), "--input", "-"], input=lines)
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert [_labels("ner", [json.loads(x)]) for x in a.stdout.splitlines()] == \
           [_labels("ner", [json.loads(x)]) for x in b.stdout.splitlines()]
    ea = CliRunner().invoke(app, ["eval", str(run), "--data", str(data), "--json"])
    eb = CliRunner().invoke(app, ["eval", str(out), "--data", str(data), "--json"])
    assert ea.exit_code == 0 and eb.exit_code == 0, eb.output
    sa, sb = json.loads(ea.stdout), json.loads(eb.stdout)
    for key in ("f1", "precision", "recall", "accuracy"):
        assert sa[key] == pytest.approx(sb[key], abs=1e-9)
    assert "ftkit predict" in (out / "README.md").read_text() and "onnxruntime" in (out / "README.md").read_text()


def test_int8_quantized_export(exported, tmp_path):
    import onnx

    from ftkit.cli import app
    from ftkit.engine.inference import Predictor, model_outputs

    run, fp32 = exported("ner", None)
    out = tmp_path / "int8"
    r = CliRunner().invoke(app, ["export", str(run), "--output", str(out), "--format", "onnx", "--quantize", "int8"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "ftkit.json").read_text())["onnx"]["quantized"] == "int8"
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, ops
    assert (out / "model.onnx").stat().st_size < (fp32 / "model.onnx").stat().st_size
    q, f = Predictor.load(out), Predictor.load(fp32)
    records = real_inputs("ner")
    assert len(q.predict(records)) == 64
    features = f.task.encode(f.task.predict_examples(records), f.tokenizer, f.facts, train=False)
    a = model_outputs(q.task, q.facts, q.model, q.tokenizer, features)  # per token: (tag id, probability)
    b = model_outputs(f.task, f.facts, f.model, f.tokenizer, features)
    real = b[..., 1] > 0  # not padding
    # int8 weights move the probabilities a little and flip only near-ties
    assert abs(a[..., 1][real] - b[..., 1][real]).max() < 0.05
    assert (a[..., 0][real] == b[..., 0][real]).mean() > 0.9
