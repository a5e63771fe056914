"""The tiny checkpoints load and behave like real ones of their family.

Everything is loaded from local folders, so no hub access is needed (run with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import DEFAULT_CORPUS, FAMILIES, build_tiny_checkpoint, build_tiny_tokenizer  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

BYTE_LEVEL = {"roberta", "gpt2", "bart"}
# transformers 5 has no separate BART tokenizer: BartTokenizer is an alias of RobertaTokenizer.
CLASS_NAMES = {"bert": ("Bert",), "roberta": ("Roberta",), "gpt2": ("GPT2",), "t5": ("T5",), "bart": ("Bart", "Roberta")}
CLASSIFIERS = {"bert", "roberta", "gpt2", "t5"}
SEQ2SEQ = {"t5", "bart"}
# Parameters a task head adds on top of the saved checkpoint (the only ones allowed to be missing).
HEAD_PREFIXES = ("classifier.", "classification_head.", "score.")

SENTENCES = [
    "Angela Merkel met Emmanuel Macron in Berlin on 3 March 2021.",
    "François and Zoë visited the café near the Musée d'Orsay.",
    "Der Rhein fließt durch die Schweiz, Deutschland und die Niederlande.",
]


def load_tok(path: Path, family: str, **kwargs):
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    assert tok.is_fast
    return tok


def words_tokenizer(path: Path, family: str):
    """The tokenizer as a word-level task (NER) loads it."""
    return load_tok(path, family, **({"add_prefix_space": True} if family in BYTE_LEVEL else {}))


# ---------------------------------------------------------------------------- checkpoint layout


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_files_and_config(tiny_models, family):
    path = tiny_models(family)
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)

    config = AutoConfig.from_pretrained(path)
    tok = load_tok(path, family)
    assert config.model_type == family
    assert config.vocab_size == len(tok)
    assert 100 < len(tok) <= 400
    assert tok.model_max_length == 128
    assert config.pad_token_id == tok.pad_token_id or (family == "gpt2" and config.pad_token_id is None)
    if family == "roberta":
        assert config.max_position_embeddings == 130 and config.pad_token_id == 1
    if family == "gpt2":
        assert tok.pad_token is None  # like the real GPT-2
        assert tok.eos_token == tok.bos_token == tok.unk_token == "<|endoftext|>"
        assert config.eos_token_id == config.bos_token_id == tok.eos_token_id
        assert config.n_positions == 128
    if family == "t5":
        assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
        assert config.decoder_start_token_id == 0 and config.eos_token_id == 1
        assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    if family == "bart":
        assert (config.bos_token_id, config.pad_token_id, config.eos_token_id) == (0, 1, 2)
        assert config.decoder_start_token_id == 2


# ---------------------------------------------------------------------------- tokenizers


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_class_and_round_trip(tiny_models, family):
    path = tiny_models(family)
    variants = [load_tok(path, family)]
    if family in BYTE_LEVEL:
        variants.append(load_tok(path, family, add_prefix_space=True))
    for tok in variants:
        assert any(n in type(tok).__name__ for n in CLASS_NAMES[family]), type(tok).__name__
        for text in list(DEFAULT_CORPUS) + SENTENCES:
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids or family == "gpt2"  # every corpus character is known
            back = tok.decode(ids, skip_special_tokens=True)
            if family == "bert":  # WordPiece decoding puts spaces around punctuation
                assert "".join(back.split()) == "".join(text.split())
            else:
                assert " ".join(back.split()) == " ".join(text.split())


@pytest.mark.parametrize("family", FAMILIES)
def test_special_tokens_added(tiny_models, family):
    tok = load_tok(tiny_models(family), family)
    tokens = tok.convert_ids_to_tokens(tok("Hello world")["input_ids"])
    expected = {
        "bert": ("[CLS]", "[SEP]"),
        "roberta": ("<s>", "</s>"),
        "bart": ("<s>", "</s>"),
        "t5": (None, "</s>"),
        "gpt2": (None, None),  # GPT-2 adds no special tokens
    }[family]
    first, last = expected
    if first:
        assert tokens[0] == first
    if last:
        assert tokens[-1] == last
    if family == "gpt2":
        assert "<|endoftext|>" not in tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_word_ids_for_pre_split_words(tiny_models, family):
    tok = words_tokenizer(tiny_models(family), family)
    enc = tok(["Hello", "world"], is_split_into_words=True)
    word_ids = enc.word_ids()
    special = set(tok.all_special_ids)
    seen = set()
    for token_id, wid in zip(enc["input_ids"], word_ids):
        if token_id in special:
            assert wid is None
        else:
            assert wid in (0, 1)
            seen.add(wid)
    assert seen == {0, 1}
    inner = [w for w in word_ids if w is not None]
    assert inner == sorted(inner)


@pytest.mark.parametrize("family", sorted(BYTE_LEVEL))
def test_byte_level_prefix_space_and_offsets(tiny_models, family):
    path = tiny_models(family)
    tok = load_tok(path, family, add_prefix_space=True)
    # With add_prefix_space the first word is encoded like any other word.
    enc = tok(["Hello", "world"], is_split_into_words=True)
    tokens = [t for i, t in zip(enc["input_ids"], tok.convert_ids_to_tokens(enc["input_ids"])) if i not in tok.all_special_ids]
    assert tokens[0].startswith("Ġ")  # "Ġ" is the byte-level space

    text = "Hello world, Zoë visited Berlin in 2021!"
    enc = tok(text, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    prev_end = 0
    for token_id, token, (start, end) in zip(enc["input_ids"], tokens, offsets):
        if token_id in tok.all_special_ids:
            assert (start, end) == (0, 0)
            continue
        assert 0 <= start <= end <= len(text)
        assert start >= prev_end - 1  # monotone (two tokens may share a multi-byte character)
        prev_end = max(prev_end, end)
        piece = tok.convert_tokens_to_string([token])
        if "\ufffd" not in piece and piece.strip():  # skip partial UTF-8 bytes and bare spaces
            assert text[start:end].strip() == piece.strip(), (token, start, end)
    assert prev_end == len(text)
    # Word ids on raw text: one id per whitespace-separated word (punctuation splits in byte-level BPE).
    wids = [w for w in enc.word_ids() if w is not None]
    assert wids[0] == 0 and wids == sorted(wids)


def test_gpt2_pad_is_unset_but_eos_padding_works(tiny_models):
    tok = load_tok(tiny_models("gpt2"), "gpt2", add_prefix_space=True)
    assert tok.pad_token is None
    tok.pad_token = tok.eos_token
    batch = tok(["Hello world", "Hi"], padding=True)
    assert batch["input_ids"][1][-1] == tok.eos_token_id and batch["attention_mask"][1][-1] == 0


def test_t5_sentinels_are_single_tokens(tiny_models):
    tok = load_tok(tiny_models("t5"), "t5")
    tokens = tok.convert_ids_to_tokens(tok("Hello <extra_id_0> world")["input_ids"])
    assert "<extra_id_0>" in tokens and tokens[-1] == "</s>"


def test_deterministic_and_custom_corpus(tmp_path):
    for family in FAMILIES:
        a = build_tiny_tokenizer(family).backend_tokenizer.to_str()
        b = build_tiny_tokenizer(family).backend_tokenizer.to_str()
        assert a == b, family
    corpus = ["alpha beta gamma delta", "Beta Gamma 123", "delta epsilon alpha!"] * 3
    tok = build_tiny_tokenizer("bert", corpus=corpus, vocab_size=60)
    assert len(tok) <= 60
    ids = tok("Beta gamma 321!")["input_ids"]  # "321": any order of known characters
    assert tok.unk_token_id not in ids
    assert "".join(tok.decode(ids, skip_special_tokens=True).split()) == "Betagamma321!"
    with pytest.raises(ValueError):
        build_tiny_checkpoint("xlnet", tmp_path / "x")


# ---------------------------------------------------------------------------- models


def _only_head_missing(info) -> None:
    missing = [k for k in info["missing_keys"] if not k.startswith(HEAD_PREFIXES)]
    assert missing == []
    assert not info.get("mismatched_keys")


def _finite(loss) -> bool:
    return loss is not None and loss.ndim == 0 and bool(torch.isfinite(loss))


@pytest.mark.parametrize("family", sorted(CLASSIFIERS))
def test_token_classification_forward(tiny_models, family):
    path = tiny_models(family)
    tok = words_tokenizer(path, family)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model, info = AutoModelForTokenClassification.from_pretrained(path, num_labels=3, output_loading_info=True)
    _only_head_missing(info)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    words = [["Angela", "Merkel", "met", "Macron", "in", "Berlin", "."], ["Hello", "world"]]
    enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
    labels = torch.full_like(enc["input_ids"], -100)
    for i in range(len(words)):
        for j, w in enumerate(enc.word_ids(i)):
            if w is not None:
                labels[i, j] = w % 3
    torch.manual_seed(0)
    out = model(**enc, labels=labels)
    assert out.logits.shape == (*enc["input_ids"].shape, 3)
    assert _finite(out.loss)
    # The full 128-token window fits the position embeddings.
    long = tok(" ".join(["Berlin"] * 300), truncation=True, max_length=tok.model_max_length, return_tensors="pt")
    assert long["input_ids"].shape[1] == 128
    with torch.no_grad():
        assert model(**long).logits.shape[1] == 128


@pytest.mark.parametrize("family", sorted(CLASSIFIERS))
def test_sequence_classification_forward(tiny_models, family):
    path = tiny_models(family)
    tok = load_tok(path, family)
    model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3, output_loading_info=True)
    _only_head_missing(info)
    if tok.pad_token is None:  # what a fine-tuning CLI does for GPT-2
        tok.pad_token = tok.eos_token
        model.config.pad_token_id = tok.pad_token_id
    enc = tok(["I love this movie.", "This film was terrible, boring and far too long."], padding=True, return_tensors="pt")
    out = model(**enc, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    assert _finite(out.loss)


@pytest.mark.parametrize("family", sorted(SEQ2SEQ))
def test_seq2seq_forward_and_generate(tiny_models, family):
    path = tiny_models(family)
    tok = load_tok(path, family)
    model, info = AutoModelForSeq2SeqLM.from_pretrained(path, output_loading_info=True)
    assert info["missing_keys"] == [] or set(info["missing_keys"]) <= {"lm_head.weight"}  # tied embeddings
    src = ["Guten Morgen! Wie geht es Ihnen heute?", "Wo ist der Bahnhof?"]
    tgt = ["Good morning! How are you today?", "Where is the train station?"]
    enc = tok(src, text_target=tgt, padding=True, return_tensors="pt")
    labels = enc.pop("labels")
    labels[labels == tok.pad_token_id] = -100
    out = model(**enc, labels=labels)
    assert _finite(out.loss)
    assert out.logits.shape[:2] == labels.shape and out.logits.shape[2] == len(tok)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert gen.shape[0] == 2 and gen[0, 0].item() == model.config.decoder_start_token_id


def test_causal_lm_forward(tiny_models):
    path = tiny_models("gpt2")
    tok = load_tok(path, "gpt2")
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert info["missing_keys"] == [] or set(info["missing_keys"]) <= {"lm_head.weight"}
    enc = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    out = model(**enc, labels=enc["input_ids"])
    assert _finite(out.loss)
    assert out.logits.shape == (1, enc["input_ids"].shape[1], len(tok))


def test_models_are_deterministic(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_checkpoint("bert", tmp_path / "a") / "model.safetensors")
    b = load_file(build_tiny_checkpoint("bert", tmp_path / "b") / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
