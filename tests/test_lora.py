"""LoRA adapters: every task trains with them, heads stay fully trainable, exports load with plain
transformers (merged) and with peft (adapter only), resume is exact; parameter counts; hub push; bad input."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

#: (task, family) -> the modules that must stay fully trainable (peft's modules_to_save)
CASES = {
    ("ner", "bert"): ["classifier"],
    ("classification", "bert"): ["classifier"],
    ("classification", "gpt2"): ["score"],
    ("classification", "t5"): ["classification_head"],
    ("qa", "bert"): ["qa_outputs"],
    ("relation", "bert"): ["classifier"],
    ("translation", "t5"): [],
}
AUTO = {"ner": "AutoModelForTokenClassification", "classification": "AutoModelForSequenceClassification",
        "qa": "AutoModelForQuestionAnswering", "relation": "AutoModelForTokenClassification",
        "translation": "AutoModelForSeq2SeqLM"}


def train(task, model, out, peft=True, sets=(), steps=3, epochs=None):
    import ftkit
    from ftkit.tasks import get_task_class

    overrides = ["data.validation=null", "data.test=null", "data.validation_fraction=null",
                 "data.max_train_examples=24", "training.logging_steps=1", *sets]
    return ftkit.finetune(task, recipe=get_task_class(task).demo_recipe, model=str(model), output=out,
                          max_steps=None if epochs else steps, epochs=epochs, batch_size=8, learning_rate=5e-3,
                          peft="lora" if peft else None, overrides=overrides)


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory):
    done = {}

    def get(task, family, peft=True):
        if (task, family, peft) not in done:
            out = tmp_path_factory.mktemp(f"{task}-{family}-{'lora' if peft else 'full'}") / "run"
            done[task, family, peft] = train(task, tiny_models(family), out, peft=peft)
        return done[task, family, peft]

    return get


def _checkpoint_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _base_value(tensors, name):
    """The base checkpoint's tensor for a task model's parameter name (prefixes differ)."""
    parts = name.split(".")
    for i in range(len(parts)):
        if ".".join(parts[i:]) in tensors:
            return tensors[".".join(parts[i:])]
    return None


@pytest.mark.parametrize("task,family", list(CASES))
def test_lora_trains_with_heads_trainable_and_exports_merged(task, family, runs, tiny_models, tmp_path):
    import transformers

    from ftkit.export import export_run

    run = runs(task, family)
    meta = json.loads((run.run_dir / "model" / "ftkit.json").read_text())
    peft = meta["peft"]
    assert peft["method"] == "lora" and peft["modules_to_save"] == CASES[task, family]
    assert run.meta["peft"]["method"] == "lora"

    # the merged model folder loads with plain transformers
    model = getattr(transformers, AUTO[task]).from_pretrained(run.run_dir / "model")
    hidden = model.config.d_model if family == "t5" else (model.config.n_embd if family == "gpt2"
                                                           else model.config.hidden_size)
    targets = set(peft["target_modules"])
    # the trainable count recomputed from the model's shapes: r*(in+out) per adapted layer, every
    # parameter of the fully trained modules, and one embedding row per added token
    lora = heads = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and not any(name.startswith(h) for h in peft["modules_to_save"]):
            w = module.weight
            lora += peft["r"] * (w.shape[0] + w.shape[1])
        if name in peft["modules_to_save"]:
            heads += sum(p.numel() for p in module.parameters())
    tokens = sum(len(v) for v in peft["trainable_token_indices"].values()) * hidden
    params = run.meta["parameters"]
    assert params["trainable"] == lora + heads + tokens, (params, lora, heads, tokens)
    assert params["trainable"] < 0.5 * params["total"]
    if task == "relation":
        assert tokens == 4 * hidden  # the four entity markers are new rows of the embedding matrix

    # only the adapted layers, the heads and the new token rows changed from the base checkpoint
    base = _checkpoint_tensors(tiny_models(family))
    changed, kept = [], []
    for name, p in model.named_parameters():
        ref = _base_value(base, name)
        if ref is None or ref.shape != p.shape:
            continue  # the head (not in the base) or the resized embedding matrix
        (changed if not torch.equal(ref, p.detach()) else kept).append(name)
    assert changed and kept
    for name in changed:
        assert name.rsplit(".", 2)[-2] in targets, f"{name} changed, but it had no adapter"

    # `ftkit export` merges by default: the folder loads with plain transformers as before
    out = export_run(run.run_dir, tmp_path / "export")
    assert not (out / "adapter").exists(), "the merged export is a plain transformers folder"
    again = getattr(transformers, AUTO[task]).from_pretrained(out)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert "LoRA" in (out / "README.md").read_text()


@pytest.mark.parametrize("task,family", [("ner", "bert"), ("relation", "bert"), ("classification", "gpt2")])
def test_adapter_only_export_loads_with_peft_as_the_card_says(task, family, runs, tmp_path):
    from ftkit.cli import app
    from ftkit.engine.inference import Predictor

    run = runs(task, family)
    out = tmp_path / "adapter"
    r = CliRunner().invoke(app, ["export", str(run.run_dir), "--output", str(out), "--adapter-only"])
    assert r.exit_code == 0, r.output
    names = {f.name for f in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer_config.json"} <= names
    assert "model.safetensors" not in names
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card
    code = re.search(r"```python\n(from peft import \w+\nmodel = .*?)\n```", card, re.S).group(1)
    assert len(code.splitlines()) == 2
    scope: dict = {}
    exec(code.replace("PATH/TO/THIS/FOLDER", str(out)), scope)  # the card's two lines, as a user runs them
    loaded = scope["model"].eval()

    # the same logits as the merged model the run scores with
    merged = Predictor.load(run.run_dir)
    enc = merged.tokenizer(["Peter Blackburn of the <e1>EU</e1> met <e2>Bob</e2> in Brussels ."],
                           return_tensors="pt")
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        a = merged.model(**enc).logits
        b = loaded(**enc).logits
    if task == "relation":  # the adapter folder loads the token-classification class: apply the pooling
        from ftkit.tasks.relation import entity_start_logits

        b = entity_start_logits(b, enc["input_ids"], *merged.model.config.entity_start_token_ids)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_lora_resume_gives_the_same_metrics_as_uninterrupted(tiny_models, tmp_path):
    """A run stopped in the middle of an epoch (after its checkpoint at step 3 of 4 per epoch) and
    resumed ends as the run that never stopped."""
    from ftkit.cli import app

    sets = ["data.validation=ftkit:samples/sst2/validation.txt", "data.max_train_examples=32",
            "training.save_total_limit=4", "training.eval_strategy=steps", "training.eval_steps=3"]
    full = train("classification", tiny_models("bert"), tmp_path / "full", sets=sets, epochs=2)
    assert full.train_steps == 8
    crashed = tmp_path / "crashed"
    shutil.copytree(full.run_dir, crashed)
    for p in [crashed / "model", crashed / "run.json", *crashed.glob("eval_*.json"), crashed / "train_log.jsonl"]:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    ckpts = sorted((crashed / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in ckpts][:2] == ["checkpoint-3", "checkpoint-6"]
    for later in ckpts[1:]:
        shutil.rmtree(later)  # as if stopped right after the checkpoint at step 3, mid-epoch
    assert (ckpts[0] / "adapter_model.safetensors").exists() and not (ckpts[0] / "model.safetensors").exists()

    r = CliRunner().invoke(app, ["finetune", "--output", str(crashed), "--resume"])
    assert r.exit_code == 0, r.output
    assert "resuming from" in r.stderr and "checkpoint-3" in r.stderr
    a = full.meta["metrics"]
    b = json.loads((crashed / "run.json").read_text())["metrics"]
    assert a["train_steps"] == b["train_steps"]
    for key in ("accuracy", "f1"):
        assert a["validation"][key] == b["validation"][key]
    last = [json.loads(x) for x in (crashed / "train_log.jsonl").read_text().splitlines() if "eval_loss" in x][-1]
    ref = [json.loads(x) for x in (full.run_dir / "train_log.jsonl").read_text().splitlines() if "eval_loss" in x][-1]
    assert last["eval_loss"] == pytest.approx(ref["eval_loss"], abs=1e-6)


def test_full_fine_tuning_reports_every_parameter_trainable(runs):
    import transformers

    run = runs("ner", "bert", peft=False)
    model = transformers.AutoModelForTokenClassification.from_pretrained(run.run_dir / "model")
    n = sum(p.numel() for p in model.parameters())
    assert run.meta["parameters"] == {"trainable": n, "total": n}
    assert run.meta["peft"]["method"] == "none"


def test_push_to_hub_uploads_the_export_and_never_writes_the_token(runs, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    from ftkit.cli import app

    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create", repo_id, kw.get("private"), self.token))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kw):
        files = {p.relative_to(folder_path).as_posix(): p.read_bytes() for p in Path(folder_path).rglob("*")
                 if p.is_file()}
        calls.append(("upload", repo_id, folder_path, files))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    secret = "hf_fake_token_0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    run = runs("ner", "bert")

    r = CliRunner().invoke(app, ["export", str(run.run_dir), "--push-to-hub", "me/ner-tiny", "--private"])
    assert r.exit_code == 0, r.output
    (_, repo, private, token), (_, repo2, folder, files) = calls
    assert repo == repo2 == "me/ner-tiny" and private is True and token == secret
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "ftkit.json"} <= set(files)
    assert not any(secret.encode() in data for data in files.values())
    assert not Path(folder).exists(), "the temporary export folder is removed after the push"
    assert "library_name: transformers" in files["README.md"].decode()

    calls.clear()
    out = tmp_path / "adapter"
    r = CliRunner().invoke(app, ["export", str(run.run_dir), "--output", str(out), "--adapter-only",
                                 "--push-to-hub", "me/ner-tiny-lora"])
    assert r.exit_code == 0, r.output
    files = calls[1][3]
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(files)
    assert set(files) == {p.name for p in out.iterdir()}
    assert not any(secret.encode() in p.read_bytes() for p in out.iterdir())

    def failing_upload(self, **kw):
        raise OSError("403 Forbidden: you cannot write to me/ner-tiny")

    monkeypatch.setattr(HfApi, "upload_folder", failing_upload)
    r = CliRunner().invoke(app, ["export", str(run.run_dir), "--output", str(tmp_path / "x"),
                                 "--push-to-hub", "me/ner-tiny"])
    assert r.exit_code == 2 and "403 Forbidden" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def _fake_model_folder(path: Path, task: str, family: str) -> Path:
    """A model folder as far as the checks before an export read it (its ftkit.json)."""
    path.mkdir(parents=True)
    (path / "ftkit.json").write_text(json.dumps({"task": task, "labels": ["a", "b"], "family": family,
                                                 "max_length": 32, "task_options": {}}))
    return path


@pytest.mark.parametrize("case", ["unknown method", "unknown target module", "onnx translation", "onnx gpt",
                                  "onnx t5", "quantize without onnx", "adapter-only without adapter",
                                  "malformed repo id", "repo id without owner", "no token"])
def test_bad_input_is_one_line_exit_2_and_no_folder(case, tiny_models, tmp_path, monkeypatch):
    from ftkit.cli import app

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no login cache either
    out = tmp_path / "out"
    model = str(tiny_models("bert"))
    sample = "ftkit:samples/conll2003/train.txt"
    args, expect = {
        "unknown method": (["finetune", "--task", "ner", "--model", model, "--train", sample, "--peft", "qlora"],
                           "--peft: 'peft.method'"),
        "unknown target module": (["finetune", "--task", "ner", "--model", model, "--train", sample, "--peft", "lora",
                                   "--set", "peft.target_modules=[qkv]"], "no module 'qkv'"),
        "onnx translation": (["export", "@translation/encoder", "--output", str(out), "--format", "onnx"],
                             "translation/encoder cannot be exported to ONNX"),
        "onnx gpt": (["export", "@classification/gpt", "--output", str(out), "--format", "onnx"],
                     "classification/gpt cannot be exported to ONNX"),
        "onnx t5": (["export", "@qa/t5", "--output", str(out), "--format", "onnx"], "qa/t5 cannot be exported"),
        "quantize without onnx": (["export", "@ner/encoder", "--output", str(out), "--quantize", "int8"],
                                  "needs --format onnx"),
        "adapter-only without adapter": (["export", "@ner/encoder", "--output", str(out), "--adapter-only"],
                                         "trained no adapter"),
        "malformed repo id": (["export", "@ner/encoder", "--push-to-hub", "me/ner/x"], "malformed hub repo id"),
        "repo id without owner": (["export", "@ner/encoder", "--output", str(out), "--push-to-hub", "ner"],
                                  "expected OWNER/NAME"),
        "no token": (["export", "@ner/encoder", "--output", str(out), "--push-to-hub", "me/ner"],
                     "no Hugging Face token"),
    }[case]
    for i, a in enumerate(args):
        if a.startswith("@"):
            task, family = a[1:].split("/")
            args[i] = str(_fake_model_folder(tmp_path / "model", task, family))
    if args[0] == "finetune":
        args += ["--output", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error")]  # (finetune logs progress too)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.stderr
    if case == "unknown target module":
        assert "query" in lines[0] and "value" in lines[0], "the error lists the module names the model has"
    if case.startswith("onnx"):
        assert "encoder family" in lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "no temporary folder left"
