"""Export a run's best model, with a model card: a folder plain ``transformers`` loads (a LoRA run's
adapter merged in), the LoRA adapter alone as ``peft`` saves it, or an ONNX graph (fp32 or int8);
optionally pushed to the Hugging Face hub."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ftkit.engine.run_folder import META_FILE, RECIPE_FILE, RUN_FILE, find_model_dir, no_space_error, task_of
from ftkit.errors import FtkitError
from ftkit.log import log


def _card(meta: dict[str, Any], model_meta: dict[str, Any], recipe: str, evals: dict[str, Any], task,
          kind: str = "transformers", usage: list[str] | None = None) -> str:
    labels = model_meta["labels"]
    # the loading class and pipeline are recorded per model (they may depend on the family)
    pipe = model_meta.get("pipeline_task", task.pipeline_task)
    auto_class = model_meta.get("auto_class", task.auto_class)
    library = {"adapter": "peft", "onnx": "onnx"}.get(kind, "transformers")
    lines = [
        "---",
        f"library_name: {library}",
        f"pipeline_tag: {pipe}",
        f"tags: [ftkit{', lora' if model_meta.get('peft') else ''}{', onnx' if kind == 'onnx' else ''}]",
        "---",
        f"# {task.name} model fine-tuned with ftkit",
        "",
        f"- **Task:** {task.name} (`{auto_class}`, pipeline tag `{pipe}`)",
        f"- **Base model:** `{model_meta.get('base_model')}` ({model_meta.get('model_type')}, family {model_meta.get('family')})",
    ]
    if labels:
        lines.append(f"- **Labels ({len(labels)}):** {', '.join(labels)}")
    lines += [
        f"- **Window:** {model_meta.get('max_length')} sub-tokens",
        "",
        "## Data",
    ]
    for split, summary in (meta.get("data") or {}).items():
        lines.append(f"- {split}: {json.dumps(summary)}")
    lines += ["", "## Evaluation"]
    if not evals:
        lines.append("No evaluation was run.")
    for split, m in evals.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
        lines.append(f"- {split} (`{m.get('data')}`): {shown}")
    peft = model_meta.get("peft")
    if peft:
        params = (meta.get("parameters") or {})
        share = (f" ({params['trainable']:,} of {params['total']:,} parameters trainable)" if params else "")
        lines.append(f"- **LoRA:** r={peft['r']}, alpha={peft['alpha']:g}, dropout={peft['dropout']:g} on "
                     f"{', '.join(peft['target_modules'])}; fully trained: "
                     f"{', '.join(peft['modules_to_save']) or 'none'}{share}"
                     + ("" if kind == "adapter" else "; merged into the weights of this folder"))
    lines += [
        "",
        "## Usage",
        *(usage if usage is not None else [*task.card_usage(model_meta),
                                           "or `ftkit predict PATH/TO/THIS/FOLDER --input FILE`."]),
        "",
        "## Training recipe (resolved)",
        "```yaml",
        recipe.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


#: ``--format`` values: a folder plain transformers loads, or an ONNX graph run with onnxruntime
FORMATS = ("transformers", "onnx")
QUANTIZE = ("int8",)
#: model-folder files that are weights (not copied into an adapter-only export)
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json", META_FILE)


def export_run(run_dir: Path, output: Path | None, overwrite: bool = False, *, fmt: str = "transformers",
               quantize: str | None = None, adapter_only: bool = False, push_to_hub: str | None = None,
               private: bool = False) -> Path | None:
    """Write the run's best model to ``output`` (and/or push it to the hub repo ``push_to_hub``).

    Everything a user can get wrong is checked before anything is written; the folder is built in a
    temporary folder and renamed, so a failure leaves no partial export behind.
    """
    from ftkit.engine.adapters import ADAPTER_SUBDIR

    if fmt not in FORMATS:
        raise FtkitError(f"unknown export format '{fmt}'", hint=f"choose one of: {', '.join(FORMATS)}")
    if quantize is not None:
        if fmt != "onnx":
            raise FtkitError(f"--quantize {quantize} quantizes the ONNX graph: it needs --format onnx")
        if quantize not in QUANTIZE:
            raise FtkitError(f"unknown quantization '{quantize}'", hint=f"choose one of: {', '.join(QUANTIZE)}")
    if adapter_only and fmt != "transformers":
        raise FtkitError("--adapter-only writes a peft adapter, not an ONNX graph: pass one of them")
    if output is None and push_to_hub is None:
        raise FtkitError("nowhere to export to", hint="pass --output DIR and/or --push-to-hub OWNER/NAME")
    mdir = find_model_dir(run_dir)
    task, facts, model_meta = task_of(mdir)
    if model_meta.get("format") == "onnx" and (fmt == "onnx" or adapter_only):
        raise FtkitError("this folder is an ONNX export already", file=run_dir,
                         hint="export the run folder it came from")
    if adapter_only and not (mdir / ADAPTER_SUBDIR / "adapter_config.json").exists():
        raise FtkitError("this run trained no adapter (every weight was fine-tuned)", file=run_dir,
                         hint="--adapter-only is for runs trained with --peft lora")
    if fmt == "onnx":
        from ftkit.engine.onnx_backend import EXPORTABLE, not_exportable

        why = not_exportable(task, facts)
        if why:
            raise FtkitError(f"{task.name}/{facts.family} cannot be exported to ONNX: {why}", hint=EXPORTABLE)
    token = None
    if push_to_hub is not None:
        from ftkit.hub import check_push

        token = check_push(push_to_hub)
    if output is not None and output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise FtkitError("export folder exists and is not empty", file=output, hint="pass --overwrite to replace it")

    run_meta = {}
    if (run_dir / RUN_FILE).exists():
        run_meta = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    recipe = (run_dir / RECIPE_FILE).read_text(encoding="utf-8") if (run_dir / RECIPE_FILE).exists() else ""
    evals = {}
    for f in sorted(run_dir.glob("eval_*.json")):
        evals[f.stem[5:]] = json.loads(f.read_text(encoding="utf-8"))

    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="ftkit-export-"))
    try:
        if adapter_only:
            _write_adapter(mdir, tmp, model_meta)
            usage = _adapter_usage(mdir, model_meta, task)
        elif fmt == "onnx":
            _write_onnx(mdir, tmp, model_meta, quantize)
            usage = _onnx_usage(model_meta, json.loads((tmp / META_FILE).read_text(encoding="utf-8"))["onnx"])
        else:
            for f in mdir.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
            usage = None
        if recipe:
            (tmp / "recipe.yaml").write_text(recipe, encoding="utf-8")
        if evals:
            (tmp / "eval_results.json").write_text(json.dumps(evals, indent=2) + "\n", encoding="utf-8")
        kind = "adapter" if adapter_only else fmt
        (tmp / "README.md").write_text(_card(run_meta, model_meta, recipe, evals, task, kind, usage), encoding="utf-8")
        if push_to_hub is not None:
            from ftkit.hub import push_folder

            url = push_folder(tmp, push_to_hub, token, private,
                              f"ftkit export: {task.name} model ({kind}) from {model_meta.get('base_model')}")
            log(f"pushed to {url}")
        if output is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise no_space_error(output or tmp.parent, sum(f.stat().st_size for f in mdir.iterdir() if f.is_file())) from None
        raise
    return output


def _write_onnx(mdir: Path, out: Path, model_meta: dict[str, Any], quantize: str | None) -> None:
    """model.onnx, the tokenizer, config.json and ftkit.json (``format: onnx``) in ``out``."""
    from ftkit.engine.models import load_trained
    from ftkit.engine.onnx_backend import export_onnx
    from ftkit.engine.run_folder import write_json

    _, _, model, tokenizer, _ = load_trained(mdir)
    info = export_onnx(model, tokenizer, out, quantize)
    tokenizer.save_pretrained(str(out))
    if (mdir / "config.json").exists():
        shutil.copy2(mdir / "config.json", out / "config.json")  # labels and sizes, for reference
    meta = {k: v for k, v in model_meta.items() if k != "peft"}
    write_json(out / META_FILE, {**meta, "format": "onnx", "onnx": info})


def _write_adapter(mdir: Path, out: Path, model_meta: dict[str, Any]) -> None:
    """The adapter as peft saved it (adapter_config.json, adapter_model.safetensors with the fully
    trained modules inside) and the tokenizer: what ``AutoPeftModel*.from_pretrained`` reads."""
    from ftkit.engine.adapters import ADAPTER_SUBDIR

    for f in (mdir / ADAPTER_SUBDIR).iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    for f in mdir.iterdir():  # the tokenizer files
        if f.is_file() and f.name not in _WEIGHTS:
            shutil.copy2(f, out / f.name)


def _adapter_usage(mdir: Path, model_meta: dict[str, Any], task) -> list[str]:
    """The two-line peft load: the AutoPeftModel class of the task's Auto class, with the config values
    the trained head needs that the base checkpoint's config lacks (labels, the relation markers...)."""
    from ftkit.engine.adapters import ADAPTER_SUBDIR, peft_load_kwargs

    auto = model_meta.get("auto_class", task.auto_class)
    base = (model_meta.get("peft") or {}).get("base_model_name_or_path")
    lines = [
        f"LoRA adapter (peft) for the base model `{base}` (as `base_model_name_or_path` in adapter_config.json",
        "names it; the fully trained modules -- the task head, new token rows -- are saved inside the adapter).",
    ]
    merged = ["`model.merge_and_unload()` gives a plain transformers model; `ftkit export RUN --output DIR` "
              "(without", "`--adapter-only`) writes that merged model directly."]
    if not auto.startswith("AutoModelFor"):  # e.g. a BERT2BERT warm start: peft has no Auto class for it
        return lines + [
            "```python",
            "from peft import PeftModel",
            f"from transformers import {auto}",
            f"base = {auto}.from_encoder_decoder_pretrained(\"{base}\", \"{base}\")" if auto == "EncoderDecoderModel"
            else f"base = {auto}.from_pretrained(\"{base}\")",
            "model = PeftModel.from_pretrained(base, \"PATH/TO/THIS/FOLDER\")",
            "```",
            "Generation settings (decoder start, EOS and pad ids) are those of the merged export's config.json.",
            *merged]
    peft_class = "AutoPeftModelFor" + auto.removeprefix("AutoModelFor")
    kwargs = peft_load_kwargs(mdir, mdir / ADAPTER_SUBDIR)
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return lines + [
        "peft loads the base model, adds the adapter and the tokenizer's extra tokens:",
        "```python",
        f"from peft import {peft_class}",
        f"model = {peft_class}.from_pretrained(\"PATH/TO/THIS/FOLDER\"{args})",
        "```",
        *merged,
    ]


def _onnx_usage(model_meta: dict[str, Any], onnx: dict[str, Any]) -> list[str]:
    inputs = ", ".join(f'"{k}"' for k in onnx["inputs"])
    quant = " (weights quantized to int8 by onnxruntime dynamic quantization)" if onnx.get("quantized") else ""
    return [
        f"`model.onnx`{quant}: inputs {', '.join(onnx['inputs'])} (dynamic batch and sequence axes), outputs "
        f"{', '.join(onnx['outputs'])}. ftkit runs it with onnxruntime and the task's own pre- and post-processing:",
        "```bash",
        "ftkit predict PATH/TO/THIS/FOLDER --input FILE        # JSONL out, as for the PyTorch model",
        "ftkit eval PATH/TO/THIS/FOLDER --data FILE            # scores",
        "```",
        "or with onnxruntime directly:",
        "```python",
        "import onnxruntime as ort",
        "from transformers import AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(\"PATH/TO/THIS/FOLDER\")",
        "session = ort.InferenceSession(\"PATH/TO/THIS/FOLDER/model.onnx\")",
        "enc = tok([\"some text\"], return_tensors=\"np\")",
        f"outputs = session.run(None, {{k: enc[k] for k in ({inputs},)}})",
        "```",
    ]
