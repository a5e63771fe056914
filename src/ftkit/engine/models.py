"""Loading models: a base checkpoint for training (and the run's Facts), or a trained model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.tasks.base import Facts


def resolve_facts(task, train, labels: list[str], info, tokenizer, max_length: int | None):
    """``(task, facts)``: the run's Facts from the training data and the checkpoint, and the task bound
    to them; the tokenizer is made ready for the task (markers, language codes)."""
    from ftkit.families import max_length_for

    facts = Facts(task=task.name, labels=tuple(labels), family=info.family,
                  max_length=max_length_for(info, tokenizer, max_length),
                  options=task.resolve_options(train, info.family))
    task = task.bind(facts)
    task.prepare_tokenizer(tokenizer, facts)
    return task, facts


def load_facts(cfg: RunConfig, task, train, labels: list[str], *, allow_pickle: bool = False,
               trust_remote_code: bool = False):
    """``(info, task, facts, tokenizer)``: the checkpoint's config, family and window resolved with the task's
    data-dependent options (``task`` is bound to them), without building the model (what encoding needs)."""
    from ftkit.families import load_config, load_tokenizer

    info = load_config(cfg.model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    tokenizer = load_tokenizer(info)
    task, facts = resolve_facts(task, train, labels, info, tokenizer, cfg.training.max_length)
    return info, task, facts, tokenizer


def build_model(cfg: RunConfig, task, info, facts: Facts, tokenizer):
    """The model with the task's head; the head's initialisation is part of the run's seed (the same on
    every process of a distributed run)."""
    from transformers import set_seed

    from ftkit.families import prepare_model

    set_seed(cfg.training.seed)
    try:
        model = task.build_model(info, facts, tokenizer)
    except (OSError, ValueError) as e:
        raise FtkitError(f"cannot build a {task.name} model from '{cfg.model}': {str(e).splitlines()[0][:200]}") from None
    prepare_model(model, tokenizer)
    if cfg.peft.method == "lora":
        from ftkit.engine.adapters import wrap_lora
        from ftkit.families import load_tokenizer

        # the tokens the task added (relation markers) have new embedding rows: they are trained too
        base_vocab = len(load_tokenizer(info))
        model = wrap_lora(model, cfg.peft, info, list(range(base_vocab, len(tokenizer))))
    return model


def load_base(cfg: RunConfig, task, train, labels: list[str], *, allow_pickle: bool = False,
              trust_remote_code: bool = False):
    """``(info, task, facts, tokenizer, model)`` for training: the checkpoint's config, family and window
    are resolved here, once, together with the task's data-dependent options (``task`` is bound to them)."""
    info, task, facts, tokenizer = load_facts(cfg, task, train, labels, allow_pickle=allow_pickle,
                                              trust_remote_code=trust_remote_code)
    return info, task, facts, tokenizer, build_model(cfg, task, info, facts, tokenizer)


def load_trained(path: str | Path, *, allow_pickle: bool = False, task_options: dict[str, Any] | None = None):
    """``(task, facts, model, tokenizer, meta)`` from a run folder or an exported folder (an ONNX export
    gives an :class:`~ftkit.engine.onnx_backend.OnnxModel`, which the engine's ``model_outputs`` runs with onnxruntime).
    ``task_options``: task options changed for prediction (see ``facts_of``)."""
    from ftkit import startup
    from ftkit.engine.run_folder import facts_of, read_model_meta

    mdir, meta = read_model_meta(path)
    startup.load_libraries("datasets", "transformers.models.auto",
                           "onnxruntime" if meta.get("format") == "onnx" else "transformers.modeling_utils")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" of a trained folder: noise on predict/eval's stderr
    from ftkit.families import check_weights

    task, facts = facts_of(meta, str(mdir), task_options)
    check_weights(str(mdir), allow_pickle)
    kwargs = {"add_prefix_space": True} if meta.get("add_prefix_space") else {}
    tokenizer = AutoTokenizer.from_pretrained(str(mdir), **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    task.prepare_tokenizer(tokenizer, facts)
    if meta.get("format") == "onnx":
        from ftkit.engine.onnx_backend import OnnxModel

        return task, facts, OnnxModel.load(mdir, meta), tokenizer, meta
    model = task.load_model(str(mdir), facts, meta, use_safetensors=not allow_pickle or None)
    return task, facts, model, tokenizer, meta
