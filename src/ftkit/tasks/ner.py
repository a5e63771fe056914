"""Named-entity recognition: CoNLL/JSONL/CSV/Parquet in, entity-level seqeval scores out.

- Tags are normalised to IOB2 (IOB1 and BIOES input are detected and converted).
- Words are aligned to sub-tokens with ``word_ids()``; the first sub-token of a word
  carries its label (``label_all_subtokens`` labels the rest with I- tags too, while
  predictions are always read from the first sub-token).
- Sentences longer than the model's window are split into overlapping *word*
  windows and stitched back per word (each word takes the prediction of the window
  where it has the most context) -- never truncated.
- Scores are computed on words, after sub-tokens are mapped back.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field

from ftkit.data.conll import TAG_RE, detect_scheme, iter_conll, to_iob2
from ftkit.data.lines import WHOLE, Part, plan_parts
from ftkit.data.parallel import map_examples
from ftkit.data.profile import Profile
from ftkit.data.records import detect_format, iter_records
from ftkit.errors import FtkitError
from ftkit.recipes import resolve_packaged
from ftkit.tasks.base import Facts, Task, TaskOptions, example_row, span, text_field

WORD_RE = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]", re.UNICODE)


class NerOptions(TaskOptions):
    tag_scheme: Literal["auto", "iob1", "iob2", "bioes"] = Field(
        "auto", description="scheme of the input tags; all are normalised to IOB2"
    )
    tag_column: int = Field(-1, description="CoNLL column holding the tag (default: the last)")
    tokens_field: str = "tokens"
    tags_field: str = "tags"
    label_all_subtokens: bool = Field(False, description="train on every sub-token, not only the first")
    window_stride: int = Field(32, ge=0, description="sub-tokens of overlap between windows of long sentences")
    aggregation: Literal["word", "simple"] = Field(
        "word", description="how predict makes entities: word = each word labelled by its first sub-token, as "
        "trained; simple = transformers' pipeline aggregation_strategy='simple' (sub-tokens labelled and grouped; "
        "a word can split), for the same entities as that pipeline")


# ---------------------------------------------------------------------------
# windows over long sentences


def plan_windows(word_lengths: list[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Split words into windows ``[start, end)`` of at most ``budget`` sub-tokens.

    Consecutive windows overlap by up to ``stride`` sub-tokens of whole words. A
    single word longer than the budget gets a window of its own (its sub-tokens are
    truncated, its first sub-token -- the one that is scored -- is kept).
    """
    n = len(word_lengths)
    if n == 0:
        return [(0, 0)]
    lengths = [min(max(x, 0), budget) for x in word_lengths]
    windows = []
    start = 0
    while True:
        end = _fill(lengths, start, budget)
        if windows and end <= windows[-1][1]:
            # the overlap left no room for a new word: start after the last window instead
            start = windows[-1][1]
            end = _fill(lengths, start, budget)
        windows.append((start, end))
        if end >= n:
            return windows
        nxt, overlap = end, 0
        while nxt - 1 > start and overlap + lengths[nxt - 1] <= stride:
            nxt -= 1
            overlap += lengths[nxt]
        start = nxt


def _fill(lengths: list[int], start: int, budget: int) -> int:
    """End of the longest run of words from ``start`` that fits the budget (at least one word)."""
    end, total = start, 0
    while end < len(lengths) and total + lengths[end] <= budget:
        total += lengths[end]
        end += 1
    return max(end, start + 1)


def stitch(n_words: int, windows: list[tuple[int, int, list[Any]]]) -> list[Any]:
    """Per-word values from overlapping windows ``(start, end, values_for_words_start..end)``.

    Each word takes its value from the window where it is furthest from an edge.
    """
    best: list[Any] = [None] * n_words
    ctx = [-1] * n_words
    for start, end, values in windows:
        for w in range(start, end):
            c = min(w - start, end - 1 - w)
            if c > ctx[w]:
                ctx[w], best[w] = c, values[w - start]
    return best


class WordTags(list):
    """One example's prediction: ``(tag, score)`` per word, as ``decode`` returns it; with ``aggregation:
    simple`` also ``pieces``, each sub-token's ``(label, score, start, end)`` (characters of the text) in order."""

    def __init__(self, tags, pieces=None):
        super().__init__(tags)
        self.pieces = pieces


def group_subtokens(pieces: list[tuple[str, float, int, int]]) -> list[tuple[str, int, int, float]]:
    """``(type, start, end, mean score)`` of sub-tokens grouped as transformers' ``TokenClassificationPipeline``
    groups them with ``aggregation_strategy="simple"``: a sub-token joins the previous group when its type is the
    group's last type and its tag does not begin with ``B-``; a group's type is its first label less the
    ``B-``/``I-``, its score the mean; ``O`` groups are dropped.

    Written out rather than called: the pipeline's ``group_entities`` is a method of a pipeline (a loaded model and
    tokenizer) over one sentence's full score array, where ftkit's batched loop keeps (label, score) per sub-token.
    tests/test_ner_aggregation.py checks the result against the pipeline itself."""

    def tag(label: str) -> tuple[str, str]:
        if label.startswith(("B-", "I-")):
            return label[0], label[2:]
        return "I", label

    groups: list[list[tuple[str, float, int, int]]] = []
    for piece in pieces:
        bi, typ = tag(piece[0])
        if groups and typ == tag(groups[-1][-1][0])[1] and bi != "B":
            groups[-1].append(piece)
        else:
            groups.append([piece])
    out = []
    for g in groups:
        typ = g[0][0].split("-", 1)[-1]
        if typ != "O":
            out.append((typ, g[0][2], g[-1][3], float(np.mean([p[1] for p in g]))))
    return out


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words of raw text with their character offsets (for ``ftkit predict`` on plain text)."""
    return [(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def entities(words: list[str], tags: list[str], scores: list[float]) -> list[tuple[str, int, int, float]]:
    """IOB2 tags -> (type, first word, last word + 1, mean score), conlleval chunking."""
    from seqeval.metrics.sequence_labeling import get_entities

    out = []
    for typ, s, e in get_entities(list(tags)):
        out.append((typ, s, e + 1, float(np.mean(scores[s : e + 1]))))
    return out


# ---------------------------------------------------------------------------


class NerTask(Task):
    name = "ner"
    pipeline_task = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    best_metric = "f1"
    Options = NerOptions
    demo_recipe = "ner-demo"
    label_padding = "tokens"
    outputs_per_token = True
    description = "named-entity recognition (CoNLL/JSONL/CSV/Parquet; seqeval entity F1)"

    # ---- data -------------------------------------------------------------
    def iter_examples(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8",
                      part: Part = WHOLE) -> Iterator[dict[str, Any]]:
        for row in self._sentences(path, split, fmt, encoding, part):
            # Each sentence is normalised on its own evidence (E-/S- tags: BIOES; a chunk opened by I-: IOB1).
            # That equals detecting one scheme for the whole file: the BIOES conversion includes the IOB1 one,
            # which changes nothing in IOB2. The input scheme is kept per sentence for the data summary.
            declared = self.options.tag_scheme
            row["tag_scheme"] = declared if declared != "auto" else detect_scheme([row["tags"]])
            row["tags"] = to_iob2(row["tags"], row["tag_scheme"])
            yield row

    def _sentences(self, path: str, split: str, fmt: str, encoding: str, part: Part) -> Iterator[dict[str, Any]]:
        o = self.options
        path = resolve_packaged(path)
        fmt = detect_format(path, fmt, default_text="conll")
        if fmt == "conll":
            for s in iter_conll(path, o.tag_column, encoding, part):
                yield {"tokens": s.tokens, "tags": s.tags, "source": f"{path}:{s.line}"}
            return
        for rec in iter_records(path, fmt, split, encoding, part):
            d = rec.data
            for key in (o.tokens_field, o.tags_field):
                if key not in d:
                    raise rec.error(
                        f"missing field '{key}' (record has: {', '.join(map(str, d)) or 'nothing'})",
                        hint="set task_options.tokens_field / tags_field for other names",
                    )
            tokens, tags = d[o.tokens_field], d[o.tags_field]
            if isinstance(tokens, str):
                tokens = tokens.split()
            if isinstance(tags, str):
                tags = tags.split()
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise rec.error(f"'{o.tokens_field}' must be a list of strings")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise rec.error(f"'{o.tags_field}' must be a list of tag strings")
            if not tokens:
                raise rec.error("empty sentence (no tokens)")
            if len(tokens) != len(tags):
                raise rec.error(f"{len(tokens)} tokens but {len(tags)} tags")
            for t in tags:
                if not TAG_RE.match(t):
                    raise rec.error(f"invalid tag {t!r}", hint="tags are O or B-/I-/E-/S- followed by a type")
            yield {"tokens": tokens, "tags": tags, "source": rec.where}

    def example_features(self):
        from datasets import Features, List, Value

        return Features({"tokens": List(Value("string")), "tags": List(Value("string")), "source": Value("string"),
                         "tag_scheme": Value("string")})

    def parts(self, path: str, split: str, fmt: str, encoding: str, n: int) -> list[Part]:
        path = resolve_packaged(path)
        fmt = detect_format(path, fmt, default_text="conll")
        if fmt == "conll" and self.options.tag_column == -1:  # another tag column: every line is checked against the first
            return plan_parts(path, n, encoding, boundary="blank", breaks="unicode")
        if fmt == "jsonl":
            return plan_parts(path, n, encoding, boundary="line", breaks="unicode")
        return [WHOLE]

    def observe(self, profile: Profile, example: dict[str, Any]) -> None:
        super().observe(profile, example)
        where = profile.where(example)
        profile.total("tokens", len(example["tokens"]))
        for t in example["tags"]:
            if t != "O":
                kind = t[2:]
                if kind not in profile.first:
                    profile.note("tag:" + kind, t)  # as first written, for messages
                # entities are counted by their B- tag; a type seen only inside I- tags still is a type
                profile.label(kind, where, 1 if t[0] == "B" else 0)
        if example.get("tag_scheme"):
            profile.flags.add("scheme:" + example["tag_scheme"])

    def check_split(self, profile: Profile, path: str, split: str) -> None:
        if profile.count == 0:
            raise FtkitError("no sentences found", file=path)

    def labels(self, train) -> list[str]:
        types = sorted(self.profile(train, "train").labels)
        if not types:
            raise FtkitError("the training data has no entities (every tag is O)")
        return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]

    def check_labels(self, examples, labels: list[str], source: str) -> None:
        known = {lab[2:] for lab in labels if lab != "O"}
        p = self.profile(examples)
        # profile.first keeps the order in which labels first occur: the first unseen one in reading order
        t = next((t for t in p.first if t not in known), None)
        if t is not None:
            raise FtkitError(
                f"{p.first[t]}: entity type '{t}' ({p.notes.get('tag:' + t, t)}) never occurs in the training data",
                hint=f"known types: {', '.join(sorted(known))}",
            )

    def example_text(self, example: dict[str, Any]) -> str:
        return " ".join(example["tokens"])

    def lint(self, examples, split: str) -> list[tuple[str, str]]:
        problems = super().lint(examples, split)
        p = self.profile(examples, split)
        if p.count and not p.labels:
            problems.append((f"{split} data", "no entities at all in this split"))
        return problems

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        p = self.profile(examples, split)
        schemes = {f.split(":", 1)[1] for f in p.flags if f.startswith("scheme:")}
        return {
            "sentences": p.count,
            **({"tag_scheme": next(s for s in ("bioes", "iob1", "iob2") if s in schemes)} if schemes else {}),
            "tokens": p.counts["tokens"],
            "entities": {t: n for t, n in sorted(p.labels.items()) if n},
        }

    # ---- model ------------------------------------------------------------
    def build_model(self, info, facts: Facts, tokenizer):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(
            info.path, num_labels=len(facts.labels), id2label=dict(enumerate(facts.labels)),
            label2id=facts.label2id, **info.load_kwargs,
        )

    # ---- features ---------------------------------------------------------
    def encode(self, examples, tokenizer, facts: Facts, train: bool):
        labels, max_length, label2id = facts.labels, facts.max_length, facts.label2id
        inside = [label2id.get("I-" + lab[2:], i) if lab.startswith("B-") else i for i, lab in enumerate(labels)]
        budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
        stride = min(self.options.window_stride, budget // 2)
        all_sub = self.options.label_all_subtokens and train
        has_tags = "tags" in examples.column_names
        # aggregation "simple" groups sub-tokens: each needs its characters in the text (predict's rows have spans)
        pieces = not train and self.options.aggregation == "simple" and "spans" in examples.column_names
        if pieces and not getattr(tokenizer, "is_fast", False):
            raise FtkitError("task_options.aggregation=simple needs the character offsets of sub-tokens, which only a "
                             f"fast (tokenizers) tokenizer gives; this model's is {type(tokenizer).__name__}",
                             hint="predict with the default aggregation (word)")

        def feature(enc, i, word_offset, tags, spans=None):
            wids = enc.word_ids(i)
            row = {k: enc[k][i] for k in enc.keys() if k != "offset_mapping"}
            if spans is not None:  # offsets within each word -> characters of the text
                row["char_spans"] = [[-1, -1] if w is None else [spans[w + word_offset][0] + a, spans[w + word_offset][0] + b]
                                     for w, (a, b) in zip(wids, enc["offset_mapping"][i])]
            abs_ids, lab_ids, prev = [], [], None
            for w in wids:
                if w is None:
                    abs_ids.append(-1)
                    lab_ids.append(-100)
                else:
                    a = w + word_offset
                    abs_ids.append(a)
                    if tags is None:
                        lab_ids.append(-100)
                    elif w != prev:
                        lab_ids.append(label2id[tags[a]])
                    else:
                        lab_ids.append(inside[label2id[tags[a]]] if all_sub else -100)
                prev = w
            row["word_ids"] = abs_ids
            if tags is not None:
                row["labels"] = lab_ids
            row["length"] = len(row["input_ids"])
            return row

        def encode_batch(batch, indices):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=False, return_offsets_mapping=pieces)
            out: dict[str, list] = {}

            def add(row, ex_id):
                row["example_id"] = ex_id
                for k, v in row.items():
                    out.setdefault(k, []).append(v)

            for i, ex_id in enumerate(indices):
                tags = batch["tags"][i] if has_tags else None
                spans = batch["spans"][i] if pieces else None
                if len(enc["input_ids"][i]) <= max_length:
                    add(feature(enc, i, 0, tags, spans), ex_id)
                    continue
                words = batch["tokens"][i]
                lengths = [0] * len(words)
                for w in enc.word_ids(i):
                    if w is not None:
                        lengths[w] += 1
                for start, end in plan_windows(lengths, budget, stride):
                    wenc = tokenizer([words[start:end]], is_split_into_words=True, truncation=True,
                                     max_length=max_length, return_offsets_mapping=pieces)
                    add(feature(wenc, 0, start, tags, spans), ex_id)
            return out

        return map_examples(examples, encode_batch, remove_columns=examples.column_names)

    def reduce_logits(self, logits, facts: Facts):
        import torch

        if isinstance(logits, tuple):
            logits = logits[0]
        probs = torch.softmax(logits.float(), dim=-1)
        score, pred = probs.max(dim=-1)
        return torch.stack([pred.float(), score], dim=-1)

    # ---- outputs ----------------------------------------------------------
    def decode(self, examples, features, outputs, facts: Facts) -> list[WordTags]:
        """Per example, one ``(tag, score)`` per word; words with no sub-token get ``("O", 0.0)``. With
        ``aggregation: simple`` (predict), each word also brings its sub-tokens' pieces (see ``WordTags``)."""
        labels = facts.labels
        outputs = np.asarray(outputs)
        # (``[:]`` converts a column at once; iterating a datasets Column formats it row by row)
        n_words = [len(t) for t in examples["tokens"][:]]
        char_spans = features["char_spans"][:] if "char_spans" in features.column_names else None
        per_example: dict[int, list[tuple[int, int, list]]] = {}
        for f_idx, (ex_id, wids) in enumerate(zip(features["example_id"][:], features["word_ids"][:])):
            first: dict[int, tuple[str, float]] = {}
            pieces: dict[int, list[tuple[str, float, int, int]]] = {}
            # (one list of Python floats per feature: indexing the array position by position costs 10x more)
            for pos, (w, (pid, sc)) in enumerate(zip(wids, outputs[f_idx, :len(wids)].tolist())):
                if w < 0 or (char_spans is None and w in first):
                    continue
                if w not in first:
                    first[w] = (labels[int(pid)], sc)
                if char_spans is not None:
                    pieces.setdefault(w, []).append((labels[int(pid)], sc, *char_spans[f_idx][pos]))
            if not first:
                continue
            start, end = min(first), max(first) + 1
            values = [(*first.get(w, ("O", 0.0)), pieces.get(w, [])) for w in range(start, end)]
            per_example.setdefault(ex_id, []).append((start, end, values))
        result = []
        for ex_id, n in enumerate(n_words):
            words = [w if w is not None else ("O", 0.0, []) for w in stitch(n, per_example.get(ex_id, []))]
            result.append(WordTags([(t, s) for t, s, _ in words],
                                   [p for *_, ps in words for p in ps] if char_spans is not None else None))
        return result

    def score(self, examples, predictions, facts: Facts) -> dict[str, Any]:
        from ftkit import metrics

        return metrics.compute("seqeval_entities", predictions=[[tag for tag, _ in p] for p in predictions],
                               references=[list(t) for t in examples["tags"][:]])

    error_analysis = "sentences with the most entity errors (missed, spurious or mislabelled entities)"

    def prediction_rows(self, examples, predictions, facts: Facts) -> list[dict[str, Any]]:
        """Per sentence: the words joined by spaces with gold and predicted entities as character spans;
        severity = entities not found exactly as in gold + predicted entities not in gold."""
        rows = []
        for i, (words, gold_tags, pred) in enumerate(zip(examples["tokens"], examples["tags"], predictions)):
            starts, pos = [], 0
            for w in words:
                starts.append(pos)
                pos += len(w) + 1
            gold = {(t, s, e) for t, s, e, _ in entities(words, gold_tags, [1.0] * len(words))}
            found = {(t, s, e): sc for t, s, e, sc in entities(words, [t for t, _ in pred], [sc for _, sc in pred])}
            errors = len(gold - set(found)) + len(set(found) - gold)

            def spans(ents, source):
                return [span(starts[s], starts[e - 1] + len(words[e - 1]), t, source)
                        for t, s, e in sorted(ents, key=lambda x: x[1])]

            def names(ents):
                return [f"{t}: {' '.join(words[s:e])}" for t, s, e in sorted(ents, key=lambda x: x[1])]

            rows.append(example_row(
                i, correct=errors == 0, severity=errors, note=f"{errors} entity error{'s' if errors != 1 else ''}",
                fields=[text_field("sentence", " ".join(words), spans(gold, "gold") + spans(found, "predicted"))],
                gold=names(gold), predicted=names(found)))
        return rows

    def format_table(self, m: dict[str, Any]) -> str:
        lines = [f"{'type':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for k, v in m["per_label"].items():
            lines.append(f"{k:<12}{v['precision']:>10.4f}{v['recall']:>10.4f}{v['f1']:>10.4f}{v['support']:>10}")
        support = sum(v["support"] for v in m["per_label"].values())
        lines.append(f"{'micro':<12}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{support:>10}")
        lines.append(f"token accuracy {m['accuracy']:.4f} over {m['examples']} sentences")
        return "\n".join(lines)

    # ---- predict ----------------------------------------------------------
    def predict_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records are ``{"text": ...}`` (split into words here) or ``{"tokens": [...]}``."""
        rows = []
        for r in records:
            if "tokens" in r:
                toks = [str(t) for t in r["tokens"]]
                spans, pos, text = [], 0, " ".join(toks)
                for t in toks:
                    spans.append((pos, pos + len(t)))
                    pos += len(t) + 1
            else:
                text = str(r.get("text", ""))
                words = split_words(text)
                toks = [w for w, _, _ in words]
                spans = [(s, e) for _, s, e in words]
            rows.append({"tokens": toks, "text": text, "spans": spans})
        return rows

    def predict_columns(self) -> list[str]:
        return ["tokens", "text", "spans"]

    def format_prediction(self, example: dict[str, Any], prediction) -> dict[str, Any]:
        text, spans = example["text"], example["spans"]
        if getattr(prediction, "pieces", None) is not None:  # aggregation: simple
            found = group_subtokens(prediction.pieces)
        else:
            tags = [t for t, _ in prediction]
            scores = [s for _, s in prediction]
            found = [(typ, spans[s][0], spans[e - 1][1], sc) for typ, s, e, sc in entities(example["tokens"], tags, scores)]
        ents = [{"text": text[start:end], "label": typ, "start": start, "end": end, "score": round(sc, 4)}
                for typ, start, end, sc in found]
        return {"text": text, "entities": ents}
