"""Tiny random checkpoints with trained tokenizers, for fast offline tests.

``build_tiny_checkpoint(family, out_dir)`` trains a small tokenizer of the
family's own kind (WordPiece / byte-level BPE / Unigram) on a short corpus,
builds a randomly initialised model from a tiny config, and saves both with
``save_pretrained``.  The result loads through ``AutoTokenizer`` /
``AutoConfig`` / ``AutoModel*`` exactly like a real checkpoint of that family,
without network access.  This mirrors how transformers tests itself.

transformers 5.x notes (why the code looks the way it does):

* The family tokenizer classes (``BertTokenizer``, ``RobertaTokenizer``,
  ``GPT2Tokenizer``, ``T5Tokenizer``) are all ``TokenizersBackend``
  subclasses, and on ``from_pretrained`` they do **not** take ``tokenizer.json``
  verbatim: only the vocab (and merges), the post-processor, padding and
  truncation are read from it, and each class's ``__init__`` rebuilds its own
  normalizer / pre-tokenizer / decoder.  So a tokenizer trained with a
  different pipeline would silently change on reload.  We therefore train with
  the pipeline the class itself builds, then construct the class from the
  trained ``vocab``/``merges`` - the very path ``from_pretrained`` takes.
* ``BartTokenizer`` is only an alias of ``RobertaTokenizer``, so a BART
  checkpoint's tokenizer loads (and is recorded) as ``RobertaTokenizer``.
* ``T5Tokenizer`` hard-codes ``unk_id=2`` and appends ``<extra_id_N>``
  sentinels (``extra_ids``, default 100): the trained vocab must start with
  ``<pad>``, ``</s>``, ``<unk>``, and we keep ``extra_ids`` small.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

FAMILIES = ("bert", "roberta", "gpt2", "t5", "bart")

MAX_LENGTH = 128
T5_EXTRA_IDS = 8

DEFAULT_CORPUS = (
    "Hello world, this is a tiny corpus for testing tokenizers.",
    "Angela Merkel met Emmanuel Macron in Berlin on 3 March 2021.",
    "The quick brown fox jumps over the lazy dog.",
    "John Smith works at Google in Mountain View, California.",
    "Marie Curie won the Nobel Prize in 1903 and again in 1911!",
    "Is this the real life? Is this just fantasy?",
    "The price rose from $12.50 to $15.75 (a 26% increase).",
    "Barack Obama was born in Honolulu, Hawaii, on August 4, 1961.",
    "Paris is the capital of France; Rome is the capital of Italy.",
    "She said: \"I'll be there at 10:30 a.m. tomorrow.\"",
    "Apple Inc. released the iPhone in 2007.",
    "The Amazon river flows through Brazil, Peru and Colombia.",
    "François and Zoë visited the café near the Musée d'Orsay.",
    "José García moved from São Paulo to Zürich last year.",
    "Microsoft acquired GitHub for 7.5 billion dollars in 2018.",
    "What a wonderful day it is - let's go for a walk!",
    "The meeting is scheduled for Monday, 5 June, at 9 am.",
    "Albert Einstein developed the theory of relativity.",
    "I love this movie; the acting was great and the plot was clever.",
    "This film was terrible, boring and far too long.",
    "The United Nations was founded in 1945 in San Francisco.",
    "Call me at 555-0199 or email info@example.com.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Ich wohne seit 2015 in München und arbeite bei Siemens.",
    "Das Wetter ist heute schön, aber morgen soll es regnen.",
    "Wir treffen uns um 18 Uhr am Hauptbahnhof in Köln.",
    "Die Universität Heidelberg wurde 1386 gegründet.",
    "Frau Müller liest ein Buch über die Geschichte Europas.",
    "Können Sie mir bitte helfen? Ich habe mich verlaufen.",
    "Goethe und Schiller sind berühmte deutsche Dichter.",
    "Der Rhein fließt durch die Schweiz, Deutschland und die Niederlande.",
    "Guten Morgen! Wie geht es Ihnen heute?",
    "The cat sat on the mat.",
    "Die Katze sitzt auf der Matte.",
    "Thank you very much for your help.",
    "Vielen Dank für Ihre Hilfe.",
    "Where is the train station?",
    "Wo ist der Bahnhof?",
    "Tokyo, New York and London are large cities.",
    "In 1969, Neil Armstrong walked on the Moon.",
)


def _default_corpus() -> list[str]:
    return list(DEFAULT_CORPUS)


# --------------------------------------------------------------------------- tokenizers


@contextmanager
def _serial_tokenizers():
    """Train single-threaded: cheap at this size, and it leaves tokenizers' "parallelism used" flag
    unset, so a later fork (DataLoader / datasets workers) does not trigger its fork warning."""
    key = "TOKENIZERS_PARALLELISM"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _train(pipeline, trainer, corpus: list[str]):
    """Train a fresh ``tokenizers.Tokenizer`` using ``pipeline``'s normalizer and pre-tokenizer."""
    from tokenizers import Tokenizer

    tok = Tokenizer(_trainer_model(trainer))
    tok.normalizer = pipeline.normalizer
    tok.pre_tokenizer = pipeline.pre_tokenizer
    with _serial_tokenizers():
        tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def _words(pipeline, corpus: list[str]) -> list[str]:
    """The corpus as the pipeline's normalizer + pre-tokenizer split it into words."""
    out = []
    for text in corpus:
        if pipeline.normalizer is not None:
            text = pipeline.normalizer.normalize_str(text)
        out.extend(w for w, _ in pipeline.pre_tokenizer.pre_tokenize_str(text))
    return out


def _trainer_model(trainer):
    from tokenizers import models, trainers

    if isinstance(trainer, trainers.WordPieceTrainer):
        return models.WordPiece(unk_token="[UNK]")
    if isinstance(trainer, trainers.BpeTrainer):
        return models.BPE()
    if isinstance(trainer, trainers.UnigramTrainer):
        return models.Unigram()
    raise TypeError(trainer)


def _bpe_vocab_merges(tok) -> tuple[dict[str, int], list[tuple[str, str]]]:
    import json

    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _bert_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import trainers
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # An empty instance gives us the exact normalizer / pre-tokenizer the class rebuilds on load.
    template = BertTokenizer(do_lower_case=False).backend_tokenizer
    # Determinism: the trainer numbers the "##c" continuation pieces in hash-map order, and ties
    # between merges are broken by id, so the learnt vocab would vary from run to run.  Seeding
    # every "##c" up front (sorted) fixes their ids; they end up as ordinary vocab entries.  Like
    # real BERT vocabs we seed "##c" for every character, so no known character is ever [UNK].
    continuations = sorted({f"##{c}" for w in _words(template, corpus) for c in w})
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=specials + continuations,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    trained = _train(template, trainer, corpus)
    vocab = trained.get_vocab(with_added_tokens=False)
    return BertTokenizer(vocab=vocab, do_lower_case=False, model_max_length=MAX_LENGTH)


def _byte_level_bpe(corpus: list[str], vocab_size: int, specials: list[str]):
    from tokenizers import pre_tokenizers, trainers
    from transformers import GPT2Tokenizer

    template = GPT2Tokenizer(vocab={}, merges=[]).backend_tokenizer  # ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return _bpe_vocab_merges(_train(template, trainer, corpus))


def _roberta_tokenizer(corpus: list[str], vocab_size: int):
    from transformers import RobertaTokenizer

    vocab, merges = _byte_level_bpe(corpus, vocab_size, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)


def _gpt2_tokenizer(corpus: list[str], vocab_size: int):
    from transformers import GPT2Tokenizer

    vocab, merges = _byte_level_bpe(corpus, vocab_size, ["<|endoftext|>"])
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)


def _t5_tokenizer(corpus: list[str], vocab_size: int):
    import json

    from tokenizers import trainers
    from transformers import T5Tokenizer

    template = T5Tokenizer(extra_ids=0).backend_tokenizer  # WhitespaceSplit + Metaspace, no normalizer
    sentinels = [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)]
    trainer = trainers.UnigramTrainer(
        vocab_size=max(vocab_size - T5_EXTRA_IDS, 8),
        special_tokens=["<pad>", "</s>", "<unk>"],  # ids 0, 1, 2: T5Tokenizer hard-codes unk_id=2
        unk_token="<unk>",
        show_progress=False,
    )
    trained = _train(template, trainer, corpus)
    pieces = [(p, float(score)) for p, score in json.loads(trained.to_str())["model"]["vocab"]]
    pieces = pieces[:3] + _canonical_unigram(pieces[3:])  # <pad> </s> <unk> stay at ids 0, 1, 2
    # Like the real T5 vocab: sentinels at the end, <extra_id_0> with the highest id.
    pieces += [(s, 0.0) for s in reversed(sentinels)]
    return T5Tokenizer(vocab=pieces, extra_ids=T5_EXTRA_IDS, model_max_length=MAX_LENGTH)


def _canonical_unigram(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Make UnigramTrainer output reproducible.

    EM sums floats in hash-map order, so scores jitter in the last digits: round them.  And the
    trainer appends the corpus characters it did not keep with scores ``min_score + k * 1e-4``,
    k counting in hash-map order: hand those scores out again in sorted character order.  Finally
    sort by score, then piece (ids do not matter to Unigram segmentation).
    """
    step = 1e-4
    rounded = [(p, round(score, 6)) for p, score in pieces]
    if rounded:
        low = min(score for _, score in rounded)
        filler = {}
        for p, score in rounded:
            k = (score - low) / step
            if len(p) == 1 and abs(k - round(k)) < 1e-2:
                filler[p] = round(k)
        if sorted(filler.values()) == list(range(len(filler))):
            new = {p: round(low + i * step, 6) for i, p in enumerate(sorted(filler))}
            rounded = [(p, new.get(p, score)) for p, score in rounded]
    return sorted(rounded, key=lambda ps: (-ps[1], ps[0]))


_TOKENIZER_BUILDERS = {
    "bert": _bert_tokenizer,
    "roberta": _roberta_tokenizer,
    "bart": _roberta_tokenizer,  # BartTokenizer is an alias of RobertaTokenizer in transformers 5
    "gpt2": _gpt2_tokenizer,
    "t5": _t5_tokenizer,
}


def build_tiny_tokenizer(family: str, corpus: Iterable[str] | None = None, vocab_size: int = 400):
    """Train and return the family's tokenizer (not saved)."""
    if family not in _TOKENIZER_BUILDERS:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    texts = _default_corpus() if corpus is None else [str(t) for t in corpus]
    if not texts:
        raise ValueError("corpus is empty")
    return _TOKENIZER_BUILDERS[family](texts, vocab_size)


# --------------------------------------------------------------------------- models


def _build_model(family: str, tok):
    import transformers as tf

    vocab_size = len(tok)
    if family == "bert":
        config = tf.BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=MAX_LENGTH,
            type_vocab_size=2,
            pad_token_id=tok.pad_token_id,
        )
        # Like bert-base-*: MLM + NSP heads and a pooler, so sequence classifiers reuse the pooler.
        return tf.BertForPreTraining(config)
    if family == "roberta":
        config = tf.RobertaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=MAX_LENGTH + 2,  # positions start at pad_token_id + 1
            type_vocab_size=1,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        return tf.RobertaForMaskedLM(config)
    if family == "gpt2":
        eot = tok.eos_token_id
        config = tf.GPT2Config(
            vocab_size=vocab_size,
            n_positions=MAX_LENGTH,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_inner=37,
            bos_token_id=eot,
            eos_token_id=eot,
        )
        return tf.GPT2LMHeadModel(config)
    if family == "t5":
        config = tf.T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_ff=64,
            d_kv=16,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=MAX_LENGTH,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
        )
        return tf.T5ForConditionalGeneration(config)
    if family == "bart":
        config = tf.BartConfig(
            vocab_size=vocab_size,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_position_embeddings=MAX_LENGTH,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id,
            forced_eos_token_id=tok.eos_token_id,
        )
        return tf.BartForConditionalGeneration(config)
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def build_tiny_checkpoint(
    family: str,
    out_dir: str | os.PathLike[str],
    corpus: Iterable[str] | None = None,
    vocab_size: int = 400,
) -> Path:
    """Build a tiny random ``family`` checkpoint with a trained tokenizer into ``out_dir``.

    ``family`` is one of :data:`FAMILIES`.  ``corpus`` is the tokenizer's
    training text (a built-in English+German corpus when None); ``vocab_size``
    is the trainer's target (small corpora may yield fewer tokens).  The model's
    ``vocab_size`` is ``len(tokenizer)``.  Deterministic; returns ``out_dir``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer(family, corpus, vocab_size)
    torch.manual_seed(0)
    model = _build_model(family, tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


__all__ = ["DEFAULT_CORPUS", "FAMILIES", "build_tiny_checkpoint", "build_tiny_tokenizer"]
