"""LoRA adapters (the ``peft`` package) around a task model, and parameter counts.

What stays fully trainable under adapters is decided from the checkpoint itself, not from a list of
head names: every module whose parameters the base checkpoint does not provide (the task head --
token, sequence, QA span or relation entity-start classifier -- or the cross-attention of a
BERT2BERT warm start) goes to peft's ``modules_to_save``; the embedding rows of tokens a task adds
(relation markers) are trained with peft's ``trainable_token_indices``. Adapters go on the family's
attention projections unless ``peft.target_modules`` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError

#: LoRA targets per family when ``peft.target_modules`` is not set: the attention projections
FAMILY_TARGETS = {"encoder": ["query", "value"], "gpt": ["c_attn"], "t5": ["q", "v"], "seq2seq": ["q_proj", "v_proj"]}
#: the sub-folder of a model folder that holds the adapter as peft saves it
ADAPTER_SUBDIR = "adapter"


def count_parameters(model) -> dict[str, int]:
    """``{"trainable": N, "total": M}``: parameters the optimizer updates, and all of the model's."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"trainable": trainable, "total": total}


def describe_parameters(counts: dict[str, int]) -> str:
    t, n = counts["trainable"], counts["total"]
    return f"{_millions(t)} of {_millions(n)} parameters trainable ({100 * t / max(n, 1):.2f}%)"


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10_000 else str(n)


def is_peft_model(model) -> bool:
    import sys

    if "peft" not in sys.modules:  # nothing was wrapped: no need to import peft to know
        return False
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merge_adapter(model, model_dir: Path, save: bool = True):
    """Save the adapter (plus the fully trained modules) as peft saves it in ``model_dir/adapter`` (when
    ``save``: the main process of a distributed run), then merge it into the base weights:
    ``(plain transformers model, what ftkit.json records about it)``."""
    adapter_dir = Path(model_dir) / ADAPTER_SUBDIR
    if save:
        # the rows of added tokens are in the adapter (trainable tokens); the rest of a resized embedding
        # matrix is the base model's, so it is not saved again
        model.save_pretrained(str(adapter_dir), save_embedding_layers=False)
        (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's empty template; exports write their own card
    c = model.peft_config[model.active_adapter]
    summary = {
        "method": "lora", "r": c.r, "alpha": c.lora_alpha, "dropout": c.lora_dropout,
        "target_modules": sorted(c.target_modules), "modules_to_save": sorted(c.modules_to_save or []),
        "trainable_token_indices": c.trainable_token_indices or {}, "adapter": ADAPTER_SUBDIR,
        "base_model_name_or_path": c.base_model_name_or_path,
    }
    return model.merge_and_unload(), summary


def _checkpoint_keys(path: str) -> set[str] | None:
    """Tensor names stored in a checkpoint folder's safetensors files (None when they cannot be listed)."""
    from safetensors import safe_open

    p = Path(path)
    index = p / "model.safetensors.index.json"
    if index.exists():
        return set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else []
    if not files:
        return None
    keys: set[str] = set()
    for f in files:
        with safe_open(str(f), "pt") as st:
            keys.update(st.keys())
    return keys


def _base_prefixes(model, config) -> set[str]:
    """The base-model prefixes (``bert``, ``transformer``...) of the task model and of the checkpoint's own
    architecture: ``bert.encoder...`` in a BertForPreTraining checkpoint is ``encoder...`` of a BertModel."""
    import transformers

    prefixes = {getattr(model, "base_model_prefix", "")}
    for arch in getattr(config, "architectures", None) or []:
        prefixes.add(getattr(getattr(transformers, arch, None), "base_model_prefix", ""))
    return prefixes - {""}


def new_modules(model, checkpoint: str, config=None) -> list[str]:
    """The outermost modules none of whose parameters the checkpoint provides: the task head, and any
    layer a warm start adds. A parameter counts as provided when a checkpoint tensor has its name, or
    its name without leading module prefixes (``bert.encoder...`` is ``encoder...`` in a bare checkpoint,
    ``encoder.encoder...`` of a BERT2BERT model is ``bert.encoder...`` of a BertForPreTraining one)."""
    keys = _checkpoint_keys(checkpoint)
    if keys is not None:
        for prefix in _base_prefixes(model, config):
            keys |= {k[len(prefix) + 1:] for k in keys if k.startswith(prefix + ".")}
    if keys is None:
        # no safetensors to compare with: the modules beside the base model are the head
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        return [name for name, child in model.named_children()
                if child is not base and any(True for _ in child.parameters())]

    def provided(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[i:]) in keys for i in range(len(parts)))

    new = {name for name, _ in model.named_parameters() if not provided(name)}
    chosen: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(c + ".") for c in chosen):
            continue
        params = [f"{name}.{n}" for n, _ in module.named_parameters()]
        if params and all(p in new for p in params):
            chosen.append(name)
    return chosen


def _leaf_layers(model) -> list[str]:
    """Names (last component) of the layers adapters can go on: linear and GPT-2 Conv1D layers."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def target_modules(cfg, info, model) -> list[str]:
    """``peft.target_modules``, or the attention projections of the model type (peft's own table) or of
    the family; every name is checked against the model."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    targets = list(cfg.target_modules or PEFT_DEFAULTS.get(info.model_type) or FAMILY_TARGETS.get(info.family, []))
    have = _leaf_layers(model)
    full = {name for name, _ in model.named_modules()}
    for target in targets:
        if target not in have and target not in full and not any(n.endswith("." + target) for n in full):
            which = "peft.target_modules" if cfg.target_modules else f"the default LoRA targets of {info.model_type}"
            raise FtkitError(f"{which}: the model has no module '{target}'",
                             hint=f"its layers that take adapters: {', '.join(have)}; "
                                  "set peft.target_modules=[name, ...]")
    return targets


def wrap_lora(model, cfg, info, new_token_ids: list[int]):
    """``model`` with LoRA adapters (a ``peft.PeftModel``): adapters on the target modules, the modules
    the checkpoint lacks fully trainable, the embedding rows of ``new_token_ids`` trainable."""
    from peft import LoraConfig, get_peft_model

    targets = target_modules(cfg, info, model)
    heads = new_modules(model, info.path, info.config)
    kwargs: dict[str, Any] = {}
    if new_token_ids:
        emb = model.get_input_embeddings()
        emb_name = next(name for name, m in model.named_modules() if m is emb)
        kwargs["trainable_token_indices"] = {emb_name.rsplit(".", 1)[-1]: sorted(new_token_ids)}
    config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                        modules_to_save=heads or None, bias="none", **kwargs)
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # e.g. a target that names a module of an unsupported kind
        raise FtkitError(f"cannot add LoRA adapters: {str(e).splitlines()[0][:200]}",
                         hint=f"layers that take adapters: {', '.join(_leaf_layers(model))}") from None


#: config keys a trained model's config.json may change that are not the head's to restore on load
_NOT_HEAD = {"architectures", "transformers_version", "_name_or_path", "vocab_size", "dtype", "torch_dtype",
             "label2id", "num_labels", "_num_labels", "output_past", "use_cache"}


def peft_load_kwargs(model_dir: Path, adapter_dir: Path) -> dict[str, Any]:
    """The config values a trained model has and its base checkpoint lacks (labels, problem type, the
    relation markers...): what ``AutoPeftModel*.from_pretrained(adapter, **kwargs)`` must pass on to
    the base model so that its head has the trained shape. Embedding rows follow the tokenizer."""
    from transformers import AutoConfig

    trained = AutoConfig.from_pretrained(str(model_dir))
    base_path = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8")).get(
        "base_model_name_or_path")
    try:
        base = AutoConfig.from_pretrained(base_path).to_dict()
    except (OSError, ValueError, TypeError):  # the base is not at hand: compare with the class defaults
        base = type(trained)().to_dict()
    known = type(trained)().to_dict()  # from_pretrained hands keys its config class lacks to the model class
    out: dict[str, Any] = {}
    for key, value in trained.to_dict().items():
        if key in _NOT_HEAD or key.startswith("_") or key not in known or base.get(key) == value:
            continue
        if key == "id2label":
            value = {int(k): v for k, v in value.items()}
            if value == {int(k): v for k, v in (base.get(key) or {}).items()}:
                continue
        if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
            out[key] = value
    return out
