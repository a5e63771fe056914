"""Translation: parallel readers and their errors, prompt/label layout per family, and every family
(T5, BART, GPT-2, BERT2BERT) through finetune -> eval -> export -> plain transformers -> predict.

Tiny random checkpoints (tokenizers trained on the bundled en+de sample) prove the plumbing, not
quality: the assertions are about loss falling, scores equal to sacreBLEU recomputed from the
written predictions, and exports that plain transformers loads and that generate what ftkit predicts.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, facts, write

from ftkit.config import resolve
from ftkit.engine.finetune import finetune
from ftkit.engine.inference import evaluate_run, predict_records
from ftkit.tasks import make_task
from ftkit.errors import FtkitError
from ftkit.export import export_run

SAMPLE = REPO / "src" / "ftkit" / "samples" / "multi30k"
FAMILY = {"t5": "t5", "bart": "seq2seq", "gpt2": "gpt", "bert": "encoder"}
AUTO_CLASS = {"t5": "AutoModelForSeq2SeqLM", "bart": "AutoModelForSeq2SeqLM", "gpt2": "AutoModelForCausalLM",
              "bert": "EncoderDecoderModel"}


def sample_lines(split: str, lang: str, n: int | None = None) -> list[str]:
    lines = (SAMPLE / f"{split}.{lang}").read_text(encoding="utf-8").split("\n")[:-1]
    return lines[:n] if n else lines


def write_parallel(prefix: Path, en: list[str], de: list[str]) -> Path:
    write(prefix.with_name(prefix.name + ".en"), "".join(x + "\n" for x in en))
    write(prefix.with_name(prefix.name + ".de"), "".join(x + "\n" for x in de))
    return prefix


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny random checkpoints whose tokenizers know the sample's English and German."""
    from tiny_models import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-translation")
    corpus = sample_lines("train", "en") + sample_lines("train", "de")
    built = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_checkpoint(family, root / family, corpus=corpus, vocab_size=600)
        return built[family]

    return get


def task(**options):
    return make_task("translation", options)


# ---------------------------------------------------------------------------
# readers


def test_parallel_files_by_prefix_by_file_and_packaged():
    t = task()
    ds = t.read(str(SAMPLE / "train"), "train")
    assert len(ds) == 500
    assert ds[0]["source"] == "Two young, White males are outside near many bushes."
    assert ds[0]["target"] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    assert ds[499]["where"].endswith("train.en:500")
    assert t.read(str(SAMPLE / "train.en"), "train")["target"] == ds["target"]  # the sibling .de is found
    packaged = t.read("ftkit:samples/multi30k/test", "test")
    assert list(packaged["source"]) == sample_lines("test", "en")
    assert t.data_summary(packaged)["pairs"] == 100


def test_lines_split_on_newline_only(tmp_path):
    # U+2028 inside a sentence must not shift the alignment (str.splitlines would split there)
    p = write_parallel(tmp_path / "x", ["a\u2028b", "c\r"], ["A", "C"])
    ds = task().read(str(p), "train")
    assert list(ds["source"]) == ["a\u2028b", "c"] and list(ds["target"]) == ["A", "C"]


def test_jsonl_csv_tsv_translation_dict_and_datasets_folder(tmp_path):
    from datasets import Dataset

    want = [("A dog runs.", "Ein Hund rennt."), ("Two cats.", "Zwei Katzen.")]
    files = {
        "st.jsonl": "".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in want),
        "tr.jsonl": "".join(json.dumps({"translation": {"en": s, "de": t}, "id": i}) + "\n"
                            for i, (s, t) in enumerate(want)),
        "lang.tsv": "en\tde\n" + "".join(f"{s}\t{t}\n" for s, t in want),
        "st.csv": "source,target\n" + "".join(f"{s},{t}\n" for s, t in want),
    }
    for name, text in files.items():
        ds = task().read(str(write(tmp_path / name, text)), "train")
        assert list(zip(ds["source"], ds["target"])) == want, name
    folder = tmp_path / "hf"
    Dataset.from_list([{"translation": {"en": s, "de": t}} for s, t in want]).save_to_disk(str(folder))
    ds = task().read(str(folder), "train")
    assert list(zip(ds["source"], ds["target"])) == want
    # other column names through task options
    p = write(tmp_path / "other.jsonl", json.dumps({"src": "Hi.", "tgt": "Hallo."}) + "\n")
    ds = task(source_field="src", target_field="tgt").read(str(p), "train")
    assert ds[0]["target"] == "Hallo."


def test_line_count_mismatch_names_both_counts(tmp_path):
    write(tmp_path / "train.en", "a\nb\nc\n")
    write(tmp_path / "train.de", "A\nB\n")
    with pytest.raises(FtkitError) as e:
        task().read(str(tmp_path / "train"), "train")
    msg = e.value.one_line()
    assert "train.en has 3 lines, train.de has 2" in msg
    assert f"{tmp_path / 'train.en'}:3:" in msg  # the first line without a partner


@pytest.mark.parametrize("side,en,de,where", [
    ("source", "a\n \nc\n", "A\nB\nC\n", "train.en:2"),
    ("target", "a\nb\nc\n", "A\nB\n\n", "train.de:3"),
])
def test_empty_lines_are_errors_with_their_line(tmp_path, side, en, de, where):
    write(tmp_path / "train.en", en)
    write(tmp_path / "train.de", de)
    with pytest.raises(FtkitError, match=f"empty {side} line") as e:
        task().read(str(tmp_path / "train"), "train")
    assert where in e.value.one_line()


@pytest.mark.parametrize("name,text,fragment,where", [
    ("train.jsonl", '{"source": "a", "target": "A"}\n{"source": "b"}\n', "missing column 'target'", "train.jsonl:2"),
    ("train.csv", "text,label\nhello,x\n", "missing column 'source'", "train.csv:2"),
    ("train.jsonl", '{"translation": {"en": "a", "fr": "b"}}\n', "'translation' has no 'de'", "train.jsonl:1"),
    ("train.jsonl", '{"source": "a", "target": ""}\n', "empty target text", "train.jsonl:1"),
    ("train.jsonl", '{"source": 3, "target": "A"}\n', "source text must be a string", "train.jsonl:1"),
    ("train.txt", "just some text\n", "not a translation file", "train.txt"),
])
def test_record_errors(tmp_path, name, text, fragment, where):
    with pytest.raises(FtkitError, match=fragment) as e:
        task().read(str(write(tmp_path / name, text)), "train")
    assert where in e.value.one_line()


def test_missing_files(tmp_path):
    with pytest.raises(FtkitError, match=r"file not found \(nor parallel files nope.en \+ nope.de\)"):
        task().read(str(tmp_path / "nope"), "train")
    write(tmp_path / "half.en", "a\n")
    with pytest.raises(FtkitError, match="file not found") as e:
        task().read(str(tmp_path / "half"), "train")
    assert "half.de" in e.value.one_line()


# ---------------------------------------------------------------------------
# features per family


def _encode(family_dir, family, sources, targets, **options):
    from datasets import Dataset

    from ftkit.families import load_config, load_tokenizer

    t = task(**options)
    info = load_config(str(family_dir))
    tok = load_tokenizer(info)
    ds = Dataset.from_dict({"source": sources, "target": targets})
    return t, tok, t.encode(ds, tok, facts(t, (), 128, info.family), train=True)


def test_gpt2_prompt_labels_are_masked_and_target_ends_with_eos(tiny):
    sources, targets = sample_lines("train", "en", 4), sample_lines("train", "de", 4)
    t, tok, feats = _encode(tiny("gpt2"), "gpt2", sources, targets, max_new_tokens=16)
    for i, f in enumerate(feats):
        n = len(f["prompt_ids"])
        assert f["input_ids"][:n] == f["prompt_ids"]
        assert f["labels"][:n] == [-100] * n  # no loss on the source + separator
        assert f["labels"][n:] == f["input_ids"][n:]  # loss on every target token ...
        assert f["labels"][-1] == tok.eos_token_id  # ... and on the EOS that stops generation
        assert tok.decode(f["prompt_ids"]).strip() == sources[i] + " =>"
        assert tok.decode(f["labels"][n:-1]).strip() == targets[i]
    # the collator pads labels with -100 and masks padding out of attention
    batch = t.collator(tok, facts(t, (), 128, "gpt"))([feats[0], feats[1]])
    short = min(len(feats[0]["input_ids"]), len(feats[1]["input_ids"]))
    row = 0 if len(feats[0]["input_ids"]) == short else 1
    assert (batch["labels"][row, short:] == -100).all()
    assert (batch["attention_mask"][row, short:] == 0).all()


def test_t5_prefix_and_bert2bert_labels(tiny):
    sources, targets = ["A dog runs."], ["Ein Hund rennt."]
    _, tok, feats = _encode(tiny("t5"), "t5", sources, targets)
    assert feats[0]["input_ids"] == tok("translate English to German: A dog runs.")["input_ids"]
    assert feats[0]["labels"] == tok(text_target="Ein Hund rennt.")["input_ids"]
    assert feats[0]["labels"][-1] == tok.eos_token_id
    _, tok, feats = _encode(tiny("t5"), "t5", sources, targets, prefix="")
    assert tok.decode(feats[0]["input_ids"], skip_special_tokens=True) == "A dog runs."

    _, tok, feats = _encode(tiny("bert"), "bert", sources, targets)
    labels = feats[0]["labels"]
    assert labels[0] != tok.cls_token_id and labels[-1] == tok.sep_token_id  # the decoder starts from [CLS]
    assert "token_type_ids" not in feats.column_names
    assert tok.decode(labels[:-1]) == "Ein Hund rennt."


def test_select_by_picks_the_best_checkpoint_metric():
    assert task().best_metric == "chrf"
    assert task(select_by="bleu").best_metric == "bleu"
    with pytest.raises(FtkitError, match="task_options.select_by"):
        task(select_by="ter")


class FakeLangTokenizer:
    """The language-code surface of mBART / M2M tokenizers (no checkpoint of theirs is available offline)."""

    def __init__(self, codes):
        self.lang_code_to_id = {c: 100 + i for i, c in enumerate(codes)}
        self.src_lang, self.tgt_lang = None, None


def test_language_codes_of_multilingual_tokenizers():
    tok = FakeLangTokenizer(["de_DE", "en_XX", "fr_XX"])  # mBART
    assert task()._set_languages(tok) == ("en_XX", "de_DE")
    assert (tok.src_lang, tok.tgt_lang) == ("en_XX", "de_DE")
    tok = FakeLangTokenizer(["__de__", "__en__"])  # M2M100 tokens
    assert task()._set_languages(tok) == ("__en__", "__de__")
    tok = FakeLangTokenizer(["eng_Latn", "deu_Latn"])  # NLLB: codes must be given
    with pytest.raises(FtkitError, match="set task_options.source_lang_code"):
        task()._set_languages(tok)
    assert task(source_lang_code="eng_Latn", target_lang_code="deu_Latn")._set_languages(tok) == (
        "eng_Latn", "deu_Latn")
    assert task()._set_languages(object()) == (None, None)  # tokenizers without codes are left alone


def test_causal_lm_without_eos_is_refused(tiny, tmp_path):
    from transformers import AutoTokenizer

    ckpt = tmp_path / "noeos"
    shutil.copytree(tiny("gpt2"), ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    tok.pad_token, tok.eos_token, tok.bos_token = "<|endoftext|>", None, None
    tok.save_pretrained(ckpt)
    data = write_parallel(tmp_path / "d", ["a"], ["A"])
    cfg, _ = resolve("translation", None, {"model": str(ckpt), "data.train": str(data), "data.validation": None,
                                           "data.test": None}, [])
    with pytest.raises(FtkitError, match="has no EOS token"):
        finetune(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_decoder_prompts_start_with_bos_only_when_the_tokenizer_adds_one(tiny, tmp_path):
    """Llama-style tokenizers put BOS before every text; GPT-2 has one but does not add it. Training prompts
    must match what `tok(prompt)` in the model card (and any plain-transformers user) produces."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from ftkit.text2text import prompt_bos

    plain = AutoTokenizer.from_pretrained(tiny("gpt2"))
    llama_like = AutoTokenizer.from_pretrained(tiny("gpt2"), add_bos_token=True)
    assert prompt_bos(plain) == [] and prompt_bos(llama_like) == [llama_like.bos_token_id]
    examples = Dataset.from_list([{"source": "A man.", "target": "Ein Mann."}])
    for tok in (plain, llama_like):
        t = task()
        f = t.encode(examples, tok, facts(t, (), 64, "gpt"), train=True)[0]
        prompt = tok("A man." + t.options.separator)["input_ids"]  # the card's way: default special tokens
        assert f["prompt_ids"] == prompt and f["input_ids"][:len(prompt)] == prompt
        assert f["labels"][:len(prompt)] == [-100] * len(prompt)
        assert f["input_ids"][len(prompt):] == tok("Ein Mann.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


# ---------------------------------------------------------------------------
# every family end to end


def _data(tmp_path):
    d = tmp_path / "data"
    train = write_parallel(d / "train", sample_lines("train", "en", 24), sample_lines("train", "de", 24))
    val = write_parallel(d / "val", sample_lines("val", "en", 8), sample_lines("val", "de", 8))
    test = write_parallel(d / "test", sample_lines("test", "en", 10), sample_lines("test", "de", 10))
    return train, val, test


@pytest.mark.parametrize("family", ["t5", "bart", "gpt2", "bert"])
def test_family_trains_evaluates_exports_and_predicts(family, tiny, tmp_path):
    import sacrebleu
    import transformers
    from transformers import AutoTokenizer

    train, val, test = _data(tmp_path)
    flags = {"model": str(tiny(family)), "data.train": str(train), "data.validation": str(val),
             "data.test": str(test), "training.epochs": 6, "training.batch_size": 4,
             "training.learning_rate": 3e-3, "training.logging_steps": 3, "training.save_total_limit": 1,
             "training.max_length": 64}
    cfg, _ = resolve("translation", None, flags, ["task_options.num_beams=1", "task_options.max_new_tokens=8"])
    run = tmp_path / "run"
    meta = finetune(cfg, run)
    assert meta["family"] == FAMILY[family]

    # loss falls, and every epoch's validation generated and was scored
    logs = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) >= 6
    # from about ln(vocab) = 6.4 for a random model; 36 steps of a tiny model learn the target unigrams
    assert sum(losses[-3:]) / 3 < 0.88 * losses[0], losses
    assert losses[-1] < min(losses[:2]), losses
    evals = [r for r in logs if "eval_bleu" in r]
    assert len(evals) == 6 and all("eval_chrf" in r and "eval_loss" in r for r in evals)
    # the kept model is the epoch with the best dev chrF (select_by; the first of equals, as the Trainer keeps)
    best = max(evals, key=lambda r: r["eval_chrf"])
    assert meta["metrics"]["best_checkpoint"] == f"checkpoint-{best['step']}"

    # predictions files: one hypothesis per line, in input order; scores match sacreBLEU recomputed on them
    for split, n in (("validation", 8), ("test", 10)):
        hyps = (run / f"predictions_{split}.txt").read_text(encoding="utf-8").split("\n")
        assert hyps[-1] == "" and len(hyps) == n + 1
    again = evaluate_run(run, "test")
    hyps = (run / "predictions_test.txt").read_text(encoding="utf-8").split("\n")[:-1]
    refs = (test.parent / "test.de").read_text(encoding="utf-8").split("\n")[:-1]
    assert again["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert again["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
    assert again["bleu"] == pytest.approx(meta["metrics"]["test"]["bleu"])
    assert again["chrf"] == pytest.approx(meta["metrics"]["test"]["chrf"])
    assert again["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert again["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    assert 0 <= again["bleu"] <= 100 and 0 <= again["chrf"] <= 100

    # export: plain transformers loads the recorded class; generate reproduces ftkit predict
    out = tmp_path / "export"
    export_run(run, out)
    info = json.loads((out / "ftkit.json").read_text())
    assert info["auto_class"] == AUTO_CLASS[family]
    assert (out / "generation_config.json").exists()
    card = (out / "README.md").read_text()
    assert AUTO_CLASS[family] in card and repr(info["prompt"]["prefix"]) in card
    model = getattr(transformers, AUTO_CLASS[family]).from_pretrained(out)
    assert model.generation_config.num_beams == 1 and model.generation_config.max_new_tokens == 8
    tok = AutoTokenizer.from_pretrained(out)
    prompt = info["prompt"]
    assert prompt["prefix"] == ("translate English to German: " if family == "t5" else "")
    assert prompt["separator"] == (" =>" if family == "gpt2" else None)
    sources = ["A man is sleeping on a bench.", "Two dogs play."]
    plain = []
    for s in sources:
        batch = tok([prompt["prefix"] + s + (prompt["separator"] or "")], return_tensors="pt")
        gen = model.generate(**batch)
        if prompt["separator"]:
            gen = gen[:, batch["input_ids"].shape[1]:]
        plain.append(" ".join(tok.decode(gen[0], skip_special_tokens=True).split()))
    preds = predict_records(out, [{"source": sources[0]}, {"text": sources[1]}], batch_size=2)
    assert [p["source"] for p in preds] == sources
    assert [p["translation"] for p in preds] == plain


def test_generation_is_batch_invariant_and_in_input_order(tiny, tmp_path):
    """Length-sorted, left-padded batches give the same outputs as one at a time, in input order."""
    from transformers import AutoModelForCausalLM

    from ftkit.families import load_config, load_tokenizer

    info = load_config(str(tiny("gpt2")))
    tok = load_tokenizer(info)
    t = task(num_beams=1, max_new_tokens=6)
    fx = facts(t, (), 64, info.family)
    model = t.build_model(info, fx, tok)
    assert isinstance(model, AutoModelForCausalLM._model_mapping[type(model.config)])
    from datasets import Dataset

    sources = ["A dog.", "A very long sentence about a man on a bicycle in the street.", "Two girls play."]
    feats = t.encode(Dataset.from_dict({"source": sources}), tok, fx, train=False)
    one = [t.generate(model, tok, feats.select([i]), fx, 1)[0] for i in range(3)]
    assert t.generate(model, tok, feats, fx, 8) == one
    assert t.generate(model, tok, feats, fx, 2) == one


# ---------------------------------------------------------------------------
# command line


def _cli(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "ftkit", *args], capture_output=True, text=True, env=env,
                          timeout=600)


CLI_BAD = {
    "count mismatch": ({"t.en": "a\nb\n", "t.de": "A\n"}, "t.en has 2 lines, t.de has 1", "t.en:2"),
    "empty line": ({"t.en": "a\n\n", "t.de": "A\nB\n"}, "empty source line", "t.en:2"),
    "missing column": ({"t.jsonl": '{"source": "a"}\n'}, "missing column 'target'", "t.jsonl:1"),
    "missing file": ({}, "file not found", "t"),
}


@pytest.mark.parametrize("name", list(CLI_BAD))
def test_cli_bad_input_one_line_exit_2_no_run_dir(tmp_path, name):
    files, fragment, where = CLI_BAD[name]
    for fname, text in files.items():
        write(tmp_path / fname, text)
    train = tmp_path / ("t.jsonl" if "t.jsonl" in files else "t")
    out = tmp_path / "run"
    r = _cli(["finetune", "--task", "translation", "--train", str(train), "--output", str(out)])
    assert r.returncode == 2, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert fragment in errors[0] and str(tmp_path / where) in errors[0]
    assert not out.exists()


def test_cli_finetune_eval_predict(tiny, tmp_path):
    train, val, test = _data(tmp_path)
    run = tmp_path / "run"
    r = _cli(["finetune", "--task", "translation", "--model", str(tiny("t5")), "--train", str(train),
              "--validation", str(val), "--test", str(test), "--output", str(run), "--max-steps", "4",
              "--batch-size", "8", "--set", "task_options.num_beams=2", "--set", "task_options.max_new_tokens=6"])
    assert r.returncode == 0, r.stderr
    assert "bleu" in r.stdout and "chrf" in r.stdout
    r = _cli(["eval", str(run), "--split", "test", "--json"])
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["bleu"] == pytest.approx(json.loads((run / "eval_test.json").read_text())["bleu"])
    assert m["examples"] == 10 and "bleu_signature" in m
    inp = write(tmp_path / "in.txt", "A dog runs.\n\n" + json.dumps({"source": "Two cats."}) + "\n")
    r = _cli(["predict", str(run), "--input", str(inp)])
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["source"] for x in rows] == ["A dog runs.", "Two cats."]
    assert all(set(x) == {"source", "translation"} and isinstance(x["translation"], str) for x in rows)
