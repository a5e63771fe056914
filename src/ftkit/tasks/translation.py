"""Translation: parallel text in, generated translations out, scored with sacreBLEU BLEU and chrF.

Data
- Line-aligned parallel files: ``--train PREFIX`` reads ``PREFIX.<source_lang>`` and
  ``PREFIX.<target_lang>`` (also ``--train PREFIX.en``; the sibling ``.de`` is found).
- JSONL / CSV / TSV / Parquet / ``datasets`` folders / hub datasets with ``source``/``target``
  columns (``task_options.source_field``/``target_field``), ``en``/``de`` columns, or the HF
  ``translation: {en: ..., de: ...}`` form.

Families (the model code is ``ftkit.text2text``, shared with any later generative task)
- T5: a task prefix (``translate English to German: ``).
- BART / Marian / mBART / M2M / NLLB: where the tokenizer has language codes (``src_lang``/``tgt_lang``)
  they are set, and generation is forced to start with the target language code.
- GPT-2 style decoders: ``source + separator`` is the prompt, the translation follows.
- Encoder-only checkpoints: warm-started BERT2BERT.

Outputs come from ``model.generate`` (``ftkit.generation``), in length-sorted batches with
``num_beams`` and ``max_new_tokens``; scores are corpus sacreBLEU and chrF (0-100, as sacreBLEU
reports them) with their signatures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field

from ftkit.data.lines import WHOLE, Part, count_lines, iter_lines, plan_parts
from ftkit.data.profile import Profile
from ftkit.data.records import detect_format, iter_records
from ftkit.errors import FtkitError
from ftkit.recipes import resolve_packaged
from ftkit.tasks.base import Facts, Task, TaskOptions, example_row, text_field
from ftkit import text2text
from ftkit.text2text import Generation, auto_class, one_line

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "ro": "Romanian", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "cs": "Czech", "ru": "Russian", "zh": "Chinese", "ja": "Japanese",
    "pl": "Polish", "tr": "Turkish", "fi": "Finnish", "sv": "Swedish", "da": "Danish", "et": "Estonian",
}


class TranslationOptions(TaskOptions):
    source_lang: str = Field("en", min_length=1, description="source language code (file suffix, column)")
    target_lang: str = Field("de", min_length=1, description="target language code (file suffix, column)")
    source_field: str = Field("source", description="source column of JSONL/CSV/TSV/datasets input")
    target_field: str = Field("target", description="target column of JSONL/CSV/TSV/datasets input")
    prefix: str | None = Field(
        None, description="text put before every source; default: 'translate English to German: ' for T5, "
        "nothing for other families")
    separator: str = Field(
        " =>", min_length=1,
        description="decoder-only models: the prompt is source + separator, the translation follows")
    source_lang_code: str | None = Field(None, description="tokenizer language code (mBART en_XX, NLLB eng_Latn)")
    target_lang_code: str | None = Field(None, description="tokenizer language code (mBART de_DE, NLLB deu_Latn)")
    num_beams: int = Field(4, ge=1, description="beam size for generation (1 = greedy)")
    max_new_tokens: int = Field(64, ge=1, description="longest translation generated, in sub-tokens")
    max_target_length: int = Field(128, ge=2, description="training targets are cut to this many sub-tokens")
    select_by: Literal["chrf", "bleu"] = Field(
        "chrf", description="dev metric that picks the best checkpoint; chrF is graded per character, so it "
        "still ranks checkpoints while BLEU is 0 on all of them (early training, small dev sets)")
    bleu_tokenize: Literal["13a", "intl", "zh", "char", "none", "ja-mecab", "ko-mecab", "flores101",
                           "flores200"] = Field("13a", description="sacreBLEU tokenizer for BLEU")


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code.lower(), code)


def _split_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Lines split on "\\n" only (``str.splitlines`` would also split on U+2028, U+0085, ...,
    breaking line alignment); a final newline does not start another line."""
    for lineno, line in iter_lines(path, encoding, breaks="newline"):
        yield lineno, line[:-1] if line.endswith("\r") else line


def _lang_code(tokenizer, lang: str, explicit: str | None) -> str | None:
    """The tokenizer's code for ``lang`` (mBART ``en_XX``, M2M ``en``/``__en__``), or None."""
    known = set(getattr(tokenizer, "lang_code_to_id", None) or {})
    known |= {str(t) for t in (getattr(tokenizer, "additional_special_tokens", None) or [])}
    known |= {str(t) for t in getattr(tokenizer, "added_tokens_encoder", {})}
    if explicit:
        return explicit
    for code in sorted(known):
        if code == lang or code == f"__{lang}__" or code.startswith(f"{lang}_"):
            return code
    return None


class TranslationTask(Task):
    name = "translation"
    pipeline_task = "translation"
    auto_class = "AutoModelForSeq2SeqLM"  # the per-model class is recorded in ftkit.json (export_info)
    generates = True
    Options = TranslationOptions
    demo_recipe = "translation-demo"
    model_columns = ("input_ids", "attention_mask", "labels")
    label_padding = "seq2seq"
    description = "translation from parallel text (sacreBLEU BLEU and chrF)"

    @property
    def best_metric(self) -> str:  # type: ignore[override]
        return self.options.select_by

    # ---- prompt format ----------------------------------------------------
    def generation(self) -> Generation:
        o = self.options
        return Generation(num_beams=o.num_beams, max_new_tokens=o.max_new_tokens,
                          max_target_length=o.max_target_length, separator=o.separator)

    def effective_prefix(self, family: str) -> str:
        o = self.options
        if o.prefix is not None:
            return o.prefix
        if family == "t5":
            return f"translate {language_name(o.source_lang)} to {language_name(o.target_lang)}: "
        return ""

    def _set_languages(self, tokenizer) -> tuple[str | None, str | None]:
        """Set ``src_lang``/``tgt_lang`` on tokenizers that have language codes; return the codes."""
        if not hasattr(tokenizer, "src_lang"):
            return None, None
        o = self.options
        src = _lang_code(tokenizer, o.source_lang, o.source_lang_code)
        tgt = _lang_code(tokenizer, o.target_lang, o.target_lang_code)
        if src is None or tgt is None:
            missing = "source" if src is None else "target"
            raise FtkitError(
                f"the tokenizer uses language codes, but none matches {missing} language "
                f"'{getattr(o, missing + '_lang')}'",
                hint=f"set task_options.{missing}_lang_code (e.g. de_DE for mBART, deu_Latn for NLLB)",
            )
        tokenizer.src_lang = src
        if hasattr(tokenizer, "tgt_lang"):
            tokenizer.tgt_lang = tgt
        return src, tgt

    # ---- data -------------------------------------------------------------
    def _parallel_paths(self, path: str) -> tuple[Path, Path] | None:
        src, tgt = self.options.source_lang, self.options.target_lang
        a, b = Path(f"{path}.{src}"), Path(f"{path}.{tgt}")
        if a.is_file() or b.is_file():
            return a, b
        p = Path(path)
        if p.is_file() and p.suffix == f".{src}":
            return p, p.with_suffix(f".{tgt}")
        if p.is_file() and p.suffix == f".{tgt}":
            return p.with_suffix(f".{src}"), p
        return None

    def _read_parallel(self, a: Path, b: Path, encoding: str) -> Iterator[dict[str, Any]]:
        n_src, n_tgt = count_lines(a, encoding), count_lines(b, encoding)
        if n_src != n_tgt:
            longer = a if n_src > n_tgt else b
            raise FtkitError(
                f"line-count mismatch: {a.name} has {n_src} lines, {b.name} has {n_tgt}",
                file=longer, line=min(n_src, n_tgt) + 1,
                hint="parallel files must be line-aligned: line i of one translates line i of the other",
            )
        if not n_src:
            raise FtkitError("no sentence pairs found (empty file)", file=a)
        for (i, s), (_, t) in zip(_split_lines(a, encoding), _split_lines(b, encoding)):
            if not s.strip():
                raise FtkitError("empty source line", file=a, line=i)
            if not t.strip():
                raise FtkitError("empty target line", file=b, line=i)
            yield {"source": s, "target": t, "where": f"{a}:{i}"}

    def _read_records(self, path: str, split: str, fmt: str, encoding: str, part: Part) -> Iterator[dict[str, Any]]:
        o = self.options
        src, tgt = o.source_lang, o.target_lang
        for rec in iter_records(path, fmt, split, encoding, part):
            d = rec.data
            tr = d.get("translation")
            if isinstance(tr, dict):
                missing = [lang for lang in (src, tgt) if lang not in tr]
                if missing:
                    raise rec.error(
                        f"'translation' has no '{missing[0]}' (has: {', '.join(map(str, tr)) or 'nothing'})",
                        hint="set task_options.source_lang / target_lang",
                    )
                pair = (tr[src], tr[tgt])
            elif o.source_field in d and o.target_field in d:
                pair = (d[o.source_field], d[o.target_field])
            elif src in d and tgt in d:
                pair = (d[src], d[tgt])
            else:
                want = o.source_field if o.source_field not in d else o.target_field
                raise rec.error(
                    f"missing column '{want}' (record has: {', '.join(map(str, d)) or 'nothing'})",
                    hint=f"use columns {o.source_field}/{o.target_field} or {src}/{tgt}, a "
                         f"'translation: {{{src}: ..., {tgt}: ...}}' field, or set task_options.source_field "
                         "/ target_field",
                )
            for side, value in zip(("source", "target"), pair):
                if not isinstance(value, str):
                    raise rec.error(f"{side} text must be a string, got {type(value).__name__}")
                if not value.strip():
                    raise rec.error(f"empty {side} text")
            yield {"source": pair[0], "target": pair[1], "where": rec.where}

    def _layout(self, path: str, fmt: str) -> tuple[str, tuple[Path, Path] | None]:
        """``("parallel", (source file, target file))`` or ``(records format, None)``."""
        parallel = self._parallel_paths(path) if fmt == "auto" else None
        if parallel:
            return "parallel", parallel
        o = self.options
        p = Path(path)
        # neither a file nor PREFIX.src/PREFIX.tgt; "org/name" (no such local folder) may be a hub dataset
        if not p.exists() and (p.suffix or path.startswith((".", "/", "~")) or path.count("/") > 1
                               or ("/" in path and p.parent.is_dir())):
            raise FtkitError(
                f"file not found (nor parallel files {p.name}.{o.source_lang} + {p.name}.{o.target_lang})",
                file=path,
            )
        fmt = detect_format(path, fmt, default_text="text")
        if fmt in ("text", "conll"):
            raise FtkitError(
                "not a translation file: expected parallel files PREFIX."
                f"{o.source_lang} + PREFIX.{o.target_lang}, or JSONL/CSV/TSV with source and target columns",
                file=path,
            )
        return fmt, None

    def iter_examples(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8",
                      part: Part = WHOLE) -> Iterator[dict[str, Any]]:
        path = resolve_packaged(path)
        fmt, parallel = self._layout(path, fmt)
        if parallel:
            yield from self._read_parallel(*parallel, encoding)
        else:
            yield from self._read_records(path, split, fmt, encoding, part)

    def example_features(self):
        from datasets import Features, Value

        return Features({"source": Value("string"), "target": Value("string"), "where": Value("string")})

    def parts(self, path: str, split: str, fmt: str, encoding: str, n: int) -> list[Part]:
        path = resolve_packaged(path)
        fmt, parallel = self._layout(path, fmt)
        # parallel files are read in step, whole
        return plan_parts(path, n, encoding, boundary="line", breaks="unicode") if fmt == "jsonl" else [WHOLE]

    def data_files(self, path: str, split: str, fmt: str) -> list[Path] | None:
        parallel = self._parallel_paths(resolve_packaged(path)) if fmt == "auto" else None
        return list(parallel) if parallel and all(p.is_file() for p in parallel) else super().data_files(path, split, fmt)

    def observe(self, profile: Profile, example: dict[str, Any]) -> None:
        super().observe(profile, example)
        words = len(example["source"].split())
        profile.total("source_words", words)
        profile.total("target_words", len(example["target"].split()))
        profile.maximum("longest_source_words", words)

    def check_split(self, profile: Profile, path: str, split: str) -> None:
        if profile.count == 0:
            raise FtkitError("no sentence pairs found", file=path)

    def labels(self, train) -> list[str]:
        return []

    def example_text(self, example: dict[str, Any]) -> str:
        return f"{example['source']}\t{example.get('target', '')}"

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        p = self.profile(examples, split)
        return {
            "pairs": p.count,
            "source_words": p.counts["source_words"],
            "target_words": p.counts["target_words"],
            "longest_source_words": p.maxima.get("longest_source_words", 0),
        }

    # ---- model ------------------------------------------------------------
    def prepare_tokenizer(self, tokenizer, facts: Facts) -> None:
        self._set_languages(tokenizer)

    def build_model(self, info, facts: Facts, tokenizer):
        forced_bos = None
        if facts.family not in ("gpt", "encoder"):
            _, tgt_code = self._set_languages(tokenizer)
            if tgt_code is not None:
                lang_ids = getattr(tokenizer, "lang_code_to_id", None) or {}
                forced_bos = lang_ids.get(tgt_code, tokenizer.convert_tokens_to_ids(tgt_code))
        return text2text.build_model(info, tokenizer, self.generation(), forced_bos)

    # ---- features ---------------------------------------------------------
    def encode(self, examples, tokenizer, facts: Facts, train: bool):
        from ftkit.log import log

        o = self.options
        features, truncated = text2text.encode(examples, tokenizer, facts.family, facts.max_length,
                                               self.generation(), self.effective_prefix(facts.family))
        if any(truncated.values()):
            log(f"  translation: {truncated['source']} sources cut to the {facts.max_length}-token window, "
                f"{truncated['target']} targets cut (max_target_length {o.max_target_length})")
        return features

    # ---- generation -------------------------------------------------------
    def generate(self, model, tokenizer, features, facts: Facts, batch_size: int) -> list[str]:
        return text2text.generate(model, tokenizer, features, self.generation(), batch_size)

    # ---- outputs ----------------------------------------------------------
    def decode(self, examples, features, outputs, facts: Facts) -> list[str]:
        preds = [""] * len(examples)
        for text, ex_id in zip(outputs, features["example_id"]):
            preds[ex_id] = text
        return preds

    def score(self, examples, predictions: list[str], facts: Facts) -> dict[str, Any]:
        from ftkit import metrics

        return metrics.compute("sacrebleu_chrf", predictions=list(predictions), references=list(examples["target"]),
                               tokenize=self.options.bleu_tokenize)

    def format_table(self, m: dict[str, Any]) -> str:
        return "\n".join([
            f"BLEU {m['bleu']:6.2f}   {m['bleu_signature']}",
            f"chrF {m['chrf']:6.2f}   {m['chrf_signature']}",
            f"brevity penalty {m['brevity_penalty']:.3f} (hyp {m['hyp_length']} / ref {m['ref_length']} tokens) "
            f"over {m['examples']} sentences",
        ])

    def write_outputs(self, run_dir, split: str, examples, predictions: list[str]) -> None:
        """``predictions_<split>.txt``: one hypothesis per line, in input order, for any scorer."""
        path = Path(run_dir) / f"predictions_{split}.txt"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(one_line(p) + "\n" for p in predictions), encoding="utf-8")
        tmp.replace(path)

    error_analysis = "sentences with the lowest chrF: source, reference and output"

    def prediction_rows(self, examples, predictions: list[str], facts: Facts) -> list[dict[str, Any]]:
        """Per sentence: source, reference and output with the sentence-level chrF (sacrebleu); severity =
        100 - chrF."""
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
        rows = []
        for i, (src, ref, hyp) in enumerate(zip(examples["source"], examples["target"], predictions)):
            score = float(chrf.sentence_score(hyp, [ref]).score)
            rows.append(example_row(i, correct=hyp.strip() == ref.strip(), severity=100.0 - score,
                                    note=f"chrF {score:.1f}", chrf=round(score, 2),
                                    fields=[text_field("source", src), text_field("reference", ref),
                                            text_field("output", hyp)]))
        return rows

    # ---- saved model ------------------------------------------------------
    def export_info(self, model, tokenizer, facts: Facts) -> dict[str, Any]:
        o = self.options
        auto, pipe = auto_class(facts.family)
        src_code, tgt_code = (None, None)
        if hasattr(tokenizer, "src_lang") and facts.family not in ("gpt", "encoder"):
            src_code, tgt_code = self._set_languages(tokenizer)
        return {
            "auto_class": auto,
            "pipeline_task": pipe,
            "prompt": {
                "source_lang": o.source_lang, "target_lang": o.target_lang,
                "prefix": self.effective_prefix(facts.family),
                "separator": o.separator if facts.family == "gpt" else None,
                "source_lang_code": src_code, "target_lang_code": tgt_code,
            },
            "generation": {"num_beams": o.num_beams, "max_new_tokens": o.max_new_tokens},
        }

    def card_usage(self, model_meta: dict[str, Any]) -> list[str]:
        auto = model_meta.get("auto_class", self.auto_class)
        prompt = model_meta.get("prompt") or {}
        prefix, sep = prompt.get("prefix", ""), prompt.get("separator")
        gen = model_meta.get("generation") or {}
        example = "A man is riding a bicycle."
        lines = [
            f"Prompt format: prefix {prefix!r}"
            + (f", separator {sep!r} (the prompt is prefix + source + separator; the translation follows "
               "and ends with EOS)" if sep else " before each source sentence") + ".",
            f"`generation_config.json` sets num_beams={gen.get('num_beams')} and "
            f"max_new_tokens={gen.get('max_new_tokens')}.",
            "",
            "```python",
            f"from transformers import AutoTokenizer, {auto}",
            "tok = AutoTokenizer.from_pretrained(\"PATH/TO/THIS/FOLDER\")",
            f"model = {auto}.from_pretrained(\"PATH/TO/THIS/FOLDER\")",
        ]
        if sep:
            lines += [
                "tok.padding_side = \"left\"  # batched prompts end at the right edge",
                f"batch = tok([{prefix + example + sep!r}], return_tensors=\"pt\", padding=True)",
                "out = model.generate(**batch)",
                "print(tok.batch_decode(out[:, batch[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
            ]
        else:
            lines += [
                f"batch = tok([{prefix + example!r}], return_tensors=\"pt\", padding=True)",
                "out = model.generate(**batch)",
                "print(tok.batch_decode(out, skip_special_tokens=True))",
            ]
        lines.append("```")
        return lines

    # ---- predict ----------------------------------------------------------
    def predict_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records are ``{"source": ...}`` (JSONL) or ``{"text": ...}`` (a plain text line)."""
        rows = []
        for i, r in enumerate(records, 1):
            src = r.get("source", r.get("text"))
            if not isinstance(src, str) or not src.strip():
                raise FtkitError(f"input record {i} has no 'source' text",
                                 hint='give plain text lines or JSONL {"source": "..."}')
            rows.append({"source": src})
        return rows

    def predict_columns(self) -> list[str]:
        return ["source"]

    def format_prediction(self, example: dict[str, Any], prediction: str) -> dict[str, Any]:
        return {"source": example["source"], "translation": prediction}
