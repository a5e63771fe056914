"""Text-to-text models for generative tasks: the family-specific code any such task shares.

Translation uses it today; a summarization or paraphrase task would use it unchanged. A task
supplies source texts (with its own prompt prefix), targets and its :class:`Generation` settings;
this module builds the model for the checkpoint's family, encodes, generates, and says which class
loads the exported folder.

Families
- ``t5`` / ``seq2seq`` (BART, Marian, mBART, M2M, NLLB): ``AutoModelForSeq2SeqLM``; targets are
  tokenized with ``text_target``. A ``forced_bos_token_id`` (a target language code) can be given; BART-style
  targets that start with ``<s>`` make generation start with it too.
- ``gpt`` (decoder-only): ``prompt + separator`` is the prompt, the target and EOS follow; the loss covers
  only the target (prompt labels are -100); prompts are left-padded for batched generation, which stops at EOS.
  Decoders whose tokenizer adds a BOS (Llama, Mistral) get it in front of the prompt.
- ``encoder`` (BERT, RoBERTa, MiniLM): a warm-started encoder-decoder (BERT2BERT, Rothe et al. 2020,
  ``EncoderDecoderModel.from_encoder_decoder_pretrained(ckpt, ckpt)``); the decoder starts with
  [CLS] and ends with [SEP].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftkit.errors import FtkitError

#: family -> (class that loads the exported folder, pipeline task)
AUTO_CLASSES = {"gpt": ("AutoModelForCausalLM", "text-generation"),
                "encoder": ("EncoderDecoderModel", "translation")}
SEQ2SEQ = ("AutoModelForSeq2SeqLM", "translation")


@dataclass(frozen=True)
class Generation:
    """How a text-to-text model is trained and decoded."""

    num_beams: int = 4
    max_new_tokens: int = 64
    max_target_length: int = 128
    #: decoder-only prompts end with this; the target follows it
    separator: str = " =>"


def auto_class(family: str) -> tuple[str, str]:
    """(the transformers class that loads a trained model of this family, its pipeline task)."""
    return AUTO_CLASSES.get(family, SEQ2SEQ)


def one_line(text: str) -> str:
    """A hypothesis as one line (whitespace runs collapsed), so a predictions file stays line-aligned."""
    return " ".join(text.split())


def prompt_bos(tokenizer) -> list[int]:
    """``[bos_token_id]`` when the tokenizer itself starts every text with BOS (Llama-style), else ``[]``
    (GPT-2: it has a BOS token but does not add it)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    full = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return [bos] if full[:1] == [bos] and plain[:1] != [bos] else []


def build_model(info, tokenizer, gen: Generation, forced_bos_token_id: int | None = None):
    """A text-to-text model for the checkpoint's family, with its generation config set from ``gen``."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, EncoderDecoderModel

    if info.family == "gpt":
        if tokenizer.eos_token_id is None:
            raise FtkitError(
                f"causal-LM checkpoint '{info.name}' has no EOS token: a generated text could not end",
                hint="use a checkpoint whose tokenizer defines eos_token",
            )
        model = AutoModelForCausalLM.from_pretrained(info.path, **info.load_kwargs)
        settings: dict[str, Any] = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    elif info.family == "encoder":
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if start is None or end is None:
            raise FtkitError(
                f"encoder checkpoint '{info.name}' has no [CLS]/[SEP] (or BOS/EOS) token to start and end "
                "the decoder of a BERT2BERT model")
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            info.path, info.path, encoder_use_safetensors=not info.allow_pickle or None,
            decoder_use_safetensors=not info.allow_pickle or None)
        model.config.decoder_start_token_id = start
        model.config.eos_token_id = end
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.vocab_size = model.config.decoder.vocab_size
        settings = {"decoder_start_token_id": start, "bos_token_id": start, "eos_token_id": end,
                    "pad_token_id": tokenizer.pad_token_id}
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(info.path, **info.load_kwargs)
        settings = {}
        if forced_bos_token_id is not None:
            settings["forced_bos_token_id"] = forced_bos_token_id
        elif (model.generation_config.forced_bos_token_id is None and tokenizer.bos_token_id is not None
              and tokenizer(text_target="x")["input_ids"][:1] == [tokenizer.bos_token_id]):
            # BART-style targets are "<s> ... </s>": generation starts the same way (as bart-base's
            # own config does); an early model would otherwise often end right at the start
            settings["forced_bos_token_id"] = tokenizer.bos_token_id
    gc = model.generation_config
    for k, v in {**settings, "num_beams": gen.num_beams, "max_new_tokens": gen.max_new_tokens}.items():
        setattr(gc, k, v)
    gc.max_length = None  # max_new_tokens rules
    gc._from_model_config = False  # our settings, not defaults to re-derive from config.json
    if gen.num_beams == 1:
        gc.early_stopping = False
        gc.length_penalty = 1.0
    return model


def encode(examples, tokenizer, family: str, max_length: int, gen: Generation, prefix: str = ""):
    """Features of ``source`` (and, when present, ``target``) columns: ``(features, truncated)`` where
    ``truncated`` counts the sources and targets cut to fit (0 for a stream, encoded as it is read)."""
    from ftkit.data.parallel import column_sum, map_examples

    has_target = "target" in examples.column_names

    if family == "gpt":
        eos = tokenizer.eos_token_id
        sep_ids = tokenizer(gen.separator, add_special_tokens=False)["input_ids"]
        bos = prompt_bos(tokenizer)
        # prompts leave room in the window for the output, but keep at least half of it
        prompt_budget = max(max_length - min(gen.max_new_tokens, max_length // 2), len(bos) + len(sep_ids) + 1)

        def encode_batch(batch, indices):
            out: dict[str, list] = {k: [] for k in ("input_ids", "attention_mask", "prompt_ids", "example_id",
                                                    "length", "cut_source", "cut_target")}
            if has_target:
                out["labels"] = []
            prompts = tokenizer([prefix + s + gen.separator for s in batch["source"]],
                                add_special_tokens=False)["input_ids"]
            targets = (tokenizer(batch["target"], add_special_tokens=False)["input_ids"]
                       if has_target else [None] * len(prompts))
            for i, (p, t) in enumerate(zip(prompts, targets)):
                out["cut_source"].append(int(len(bos) + len(p) > prompt_budget))
                out["cut_target"].append(0)
                if len(bos) + len(p) > prompt_budget:
                    src_ids = tokenizer(prefix + batch["source"][i], add_special_tokens=False)["input_ids"]
                    p = src_ids[:prompt_budget - len(sep_ids) - len(bos)] + sep_ids
                p = bos + list(p)
                ids = list(p)
                if t is not None:
                    room = min(max_length - len(p), gen.max_target_length)
                    t = list(t) + [eos]
                    if len(t) > room:
                        out["cut_target"][-1] = 1
                        t = t[:room]
                    ids = ids + t
                    out["labels"].append([-100] * len(p) + t)
                out["input_ids"].append(ids)
                out["attention_mask"].append([1] * len(ids))
                out["prompt_ids"].append(list(p))
                out["example_id"].append(indices[i])
                out["length"].append(len(ids))
            return out
    else:
        bert2bert = family == "encoder"
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id

        def encode_batch(batch, indices):
            sources = [prefix + s for s in batch["source"]]
            full = tokenizer(sources, return_token_type_ids=False)["input_ids"]
            enc = tokenizer(sources, truncation=True, max_length=max_length, return_token_type_ids=False)
            out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                   "example_id": list(indices), "length": [len(x) for x in enc["input_ids"]],
                   "cut_source": [int(len(x) > max_length) for x in full], "cut_target": [0] * len(full)}
            if has_target:
                if bert2bert:
                    # the decoder starts from [CLS] (decoder_start_token_id): labels are text + [SEP]
                    ids = tokenizer(batch["target"], add_special_tokens=False)["input_ids"]
                    lab = [x[:gen.max_target_length - 1] + [end] for x in ids]
                    out["cut_target"] = [int(len(x) > gen.max_target_length - 1) for x in ids]
                else:
                    ids = tokenizer(text_target=batch["target"])["input_ids"]
                    out["cut_target"] = [int(len(x) > gen.max_target_length) for x in ids]
                    lab = tokenizer(text_target=batch["target"], truncation=True,
                                    max_length=gen.max_target_length)["input_ids"]
                out["labels"] = lab
            return out

    # worker processes keep no shared counter: the cuts are columns, added up after the map
    features = map_examples(examples, encode_batch, remove_columns=examples.column_names)
    return features, {"source": column_sum(features, "cut_source"), "target": column_sum(features, "cut_target")}


def generate(model, tokenizer, features, gen: Generation, batch_size: int) -> list[str]:
    """One output text per feature, in feature order (``ftkit.generation``'s batched loop)."""
    from ftkit.generation import generate_ids

    column = "prompt_ids" if "prompt_ids" in features.column_names else "input_ids"
    gc = model.generation_config
    eos = gc.eos_token_id if gc.eos_token_id is not None else tokenizer.eos_token_id
    pad = gc.pad_token_id if gc.pad_token_id is not None else tokenizer.pad_token_id
    ids = generate_ids(model, list(features[column]), pad_token_id=pad, eos_token_id=eos,
                       batch_size=batch_size, num_beams=gen.num_beams, max_new_tokens=gen.max_new_tokens)
    return [one_line(t) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
