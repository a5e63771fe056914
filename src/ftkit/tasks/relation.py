"""Relation extraction: classify the relation between two marked entities of a sentence.

Input
    - the SemEval-2010 Task 8 release format (``ID<TAB>"... <e1>X</e1> ... <e2>Y</e2> ..."``,
      a label line such as ``Cause-Effect(e1,e2)`` or ``Other``, an optional ``Comment:`` line,
      a blank line; CRLF or LF);
    - JSONL / CSV / Parquet / ``datasets`` records with ``text`` and ``label`` and either inline
      ``<e1>``/``<e2>`` markers in the text or ``head``/``tail`` character spans
      (``{"start": 0, "end": 5, "type": "PERSON"}``, TACRED style) -- one or the other per record.

Every example is stored as clean text plus two character spans and rendered back into the
SemEval notation (``<e1>X</e1>``) for the model. The four markers are added to the tokenizer as
real special tokens, so a saved tokenizer understands marked text as it is written.

Method (``pooling``)
    ``entity_start`` (the default for encoders; Baldini Soares et al. 2019): the relation logits
        are a linear layer over the concatenated final states of the ``<e1>`` and ``<e2>`` start
        markers. ``W [h_e1; h_e2] + b = W1 h_e1 + W2 h_e2 + b``, so the layer is stored as a standard
        token-classification head with ``2 x labels`` outputs (``<e1> LABEL`` rows ``W1``, ``<e2> LABEL``
        rows ``W2``): the model folder loads into the plain ``AutoModelForTokenClassification`` class
        (no remote code), and the relation logits are the ``<e1>`` row's first half plus the
        ``<e2>`` row's second half (:func:`entity_start_logits`; the model card shows the 4 lines).
    ``cls`` (the default for GPT-2 and T5): ``AutoModelForSequenceClassification`` on the marked
        text; ``pipeline("text-classification")`` serves the exported folder directly.

Scores: the official SemEval-2010 Task 8 score (scorer v1.2, "(9+1)-way evaluation with
directionality taken into account": macro-F1 over relation types, excluding Other) as ``f1``,
micro-F1 excluding the negative label, accuracy, a per-label report and the confusion matrix.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field

from ftkit.data.lines import WHOLE, Part, iter_lines, peek_text, plan_parts
from ftkit.data.parallel import has_nulls, map_examples
from ftkit.data.profile import Profile
from ftkit.data.records import detect_format, iter_records
from ftkit.errors import FtkitError
from ftkit.recipes import resolve_packaged
from ftkit.tasks.base import Facts, Task, TaskOptions, example_row, span, text_field

E1, E1_END, E2, E2_END = MARKERS = ("<e1>", "</e1>", "<e2>", "</e2>")
MARKER_RE = re.compile(r"</?e[12]>")
DIRECTION_RE = re.compile(r"^(?P<type>.+)\((?P<dir>e1,e2|e2,e1)\)$")
# a SemEval label line: one word, optionally followed by a direction
LABEL_LINE_RE = re.compile(r"^[^\s()\"<>]+(?:\((?:e1,e2|e2,e1)\))?$")
SENTENCE_LINE_RE = re.compile(r"^(\S+)\t(.*)$")
LABEL_HINT = "the line after a sentence holds its relation, e.g. Cause-Effect(e1,e2), Cause-Effect(e2,e1) or Other"


class RelationOptions(TaskOptions):
    pooling: Literal["auto", "entity_start", "cls"] = Field(
        "auto",
        description="entity_start: concatenated <e1>/<e2> start-marker states (Baldini Soares et al. 2019); "
        "cls: sequence classification of the marked text; auto: entity_start for encoders, cls for GPT-2/T5",
    )
    negative_label: str = Field("Other", description="the no-relation label left out of micro/macro F1 "
                                "(Other for SemEval, no_relation for TACRED)")
    entity_types: bool = Field(True, description="render a span's `type` inside its markers: <e1>TYPE: text</e1>")
    text_field: str = "text"
    label_field: str = "label"
    head_field: str = "head"
    tail_field: str = "tail"


# ---------------------------------------------------------------------------
# markers and spans


def parse_marked(text: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """``"a <e1>b</e1> c <e2>d</e2>"`` -> (clean text, head span, tail span); spans are ``[start, end)``.

    Raises ``ValueError`` with a user-facing message for missing, unbalanced, duplicated or
    overlapping markers. Whitespace just inside a marker is not part of the span.
    """
    pos: dict[str, int] = {}
    parts, last, removed = [], 0, 0
    for m in MARKER_RE.finditer(text):
        tag = m.group()
        if tag in pos:
            raise ValueError(f"duplicated marker {tag}")
        parts.append(text[last:m.start()])
        pos[tag] = m.start() - removed
        removed += len(tag)
        last = m.end()
    parts.append(text[last:])
    clean = "".join(parts)
    if not clean.strip():
        raise ValueError("empty text")
    if not pos:
        raise ValueError("no entity markers (expected <e1>..</e1> and <e2>..</e2>)")
    spans = []
    for opening, closing in ((E1, E1_END), (E2, E2_END)):
        missing = [t for t in (opening, closing) if t not in pos]
        if len(missing) == 2:
            raise ValueError(f"no {opening}..{closing} markers")
        if missing:
            raise ValueError(f"unbalanced markers: {missing[0]} is missing")
        if pos[closing] < pos[opening]:
            raise ValueError(f"unbalanced markers: {closing} comes before {opening}")
        start, end = pos[opening], pos[closing]
        while start < end and clean[start].isspace():
            start += 1
        while end > start and clean[end - 1].isspace():
            end -= 1
        spans.append((start, end))
    # markers opened inside the other entity: nested or crossed
    (h0, h1), (t0, t1) = (pos[E1], pos[E1_END]), (pos[E2], pos[E2_END])
    if h0 < t1 and t0 < h1:
        raise ValueError("the <e1> and <e2> entities overlap")
    check_spans(clean, spans[0], spans[1])
    return clean, spans[0], spans[1]


def check_spans(text: str, head: tuple[int, int], tail: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless both spans are non-empty, inside ``text`` and disjoint."""
    if not text.strip():
        raise ValueError("empty text")
    for name, (start, end) in (("head (<e1>)", head), ("tail (<e2>)", tail)):
        if not 0 <= start <= end <= len(text):
            raise ValueError(f"{name} span [{start}, {end}) is outside the text (length {len(text)})")
        if not text[start:end].strip():
            raise ValueError(f"{name} entity is empty")
    if head[0] < tail[1] and tail[0] < head[1]:
        raise ValueError(f"head span [{head[0]}, {head[1]}) and tail span [{tail[0]}, {tail[1]}) overlap")
    for marker in MARKERS:
        if marker in text:
            raise ValueError(f"the text contains the reserved marker {marker} outside an entity markup")


def render_marked(text: str, head, tail, head_type: str = "", tail_type: str = "") -> str:
    """Clean text and spans -> the marked text the model reads (the SemEval notation)."""
    pieces = [(head[0], head[1], E1, E1_END, head_type), (tail[0], tail[1], E2, E2_END, tail_type)]
    pieces.sort()
    out, last = [], 0
    for start, end, opening, closing, typ in pieces:
        out += [text[last:start], opening, f"{typ}: " if typ else "", text[start:end], closing]
        last = end
    out.append(text[last:])
    return "".join(out)


def unwrap_semeval_sentence(line: str) -> str:
    """``'8001\\t"The <e1>..."'`` -> ``'The <e1>...'``; other text is returned unchanged."""
    m = SENTENCE_LINE_RE.match(line)
    text = m.group(2).strip() if m and m.group(1).isdigit() else line.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text


# ---------------------------------------------------------------------------
# the SemEval-2010 Task 8 release format


def read_semeval(path: str, encoding: str = "utf-8") -> list[dict[str, Any]]:
    return list(iter_semeval(path, encoding))


def iter_semeval(path: str, encoding: str = "utf-8", part: Part = WHOLE) -> Iterator[dict[str, Any]]:
    """Records of a SemEval-2010 Task 8 file (or of one part of it, cut after a blank line), one at a time:
    sentence line, label line, optional comment, blank line."""
    lines = _Lookahead(iter_lines(path, encoding, part, breaks="newline"))
    while (current := lines.get(0)) is not None:
        lineno, line = current
        if not line.strip():
            lines.advance(1)
            continue
        m = SENTENCE_LINE_RE.match(line)
        if not m:
            what = "a label line without a sentence" if LABEL_LINE_RE.match(line.strip()) else "unexpected line"
            raise FtkitError(f"{what}: {line.strip()[:60]!r}", file=path, line=lineno,
                             hint='records are ID<TAB>"sentence with <e1>..</e1> and <e2>..</e2>", a label line, '
                                  "a Comment: line and a blank line")
        sid = m.group(1)
        sentence = unwrap_semeval_sentence(line)
        nxt = lines.text(1)
        label_line = nxt.strip() if nxt is not None else ""
        if not label_line or label_line.startswith("Comment") or SENTENCE_LINE_RE.match(nxt):
            raise FtkitError(f"sentence {sid} has no label line", file=path, line=lineno, hint=LABEL_HINT)
        if not LABEL_LINE_RE.match(label_line):
            raise FtkitError(f"invalid relation label {label_line[:60]!r}", file=path, line=lineno + 1,
                             hint=LABEL_HINT)
        k = 2
        after = lines.text(k)
        if after is not None and after.lstrip().startswith("Comment"):
            k += 1
            after = lines.text(k)
        if after is not None and after.strip() and not SENTENCE_LINE_RE.match(after):
            raise FtkitError(f"unexpected line after the record of sentence {sid}: {after.strip()[:60]!r}",
                             file=path, line=lineno + k, hint="a blank line separates records")
        try:
            clean, head, tail = parse_marked(sentence)
        except ValueError as e:
            raise FtkitError(f"sentence {sid}: {e}", file=path, line=lineno) from None
        yield _row(sid, clean, head, tail, "", "", label_line, f"{path}:{lineno}")
        lines.advance(k)


class _Lookahead:
    """The next few ``(line number, line)`` pairs of a line iterator ("\r" stripped from line ends)."""

    def __init__(self, it):
        self.it, self.buf = it, []

    def get(self, i: int):
        while len(self.buf) <= i:
            nxt = next(self.it, None)
            if nxt is None:
                return None
            self.buf.append((nxt[0], nxt[1].rstrip("\r")))
        return self.buf[i]

    def text(self, i: int) -> str | None:
        item = self.get(i)
        return item[1] if item is not None else None

    def advance(self, n: int) -> None:
        self.get(n - 1)
        del self.buf[:n]


def _row(rid, text, head, tail, head_type, tail_type, label, source) -> dict[str, Any]:
    return {"id": str(rid), "text": text, "head": list(head), "tail": list(tail), "head_type": head_type or "",
            "tail_type": tail_type or "", "label": label, "source": source}


# ---------------------------------------------------------------------------
# the official SemEval-2010 Task 8 score


def split_direction(label: str) -> tuple[str, str | None]:
    """``'Cause-Effect(e2,e1)'`` -> ``('Cause-Effect', 'e2,e1')``; ``'Other'`` -> ``('Other', None)``."""
    m = DIRECTION_RE.match(label)
    return (m.group("type"), m.group("dir")) if m else (label, None)


# ---------------------------------------------------------------------------
# the entity-start head, stored as a standard token-classification model


def entity_start_logits(token_logits, input_ids, e1_id: int, e2_id: int):
    """Relation logits from a ``2 x labels`` token-classification output.

    Row ``i`` of the relation layer ``W [h_e1; h_e2] + b`` is ``W1[i] h_e1 + W2[i] h_e2 + b[i]``:
    the first half of the ``<e1>`` token's logits plus the second half of the ``<e2>`` token's.
    A marker lost to truncation falls back to position 0.
    """
    import torch

    n = token_logits.size(-1) // 2
    rows = torch.arange(input_ids.size(0), device=input_ids.device)
    p1 = (input_ids == e1_id).int().argmax(dim=-1)
    p2 = (input_ids == e2_id).int().argmax(dim=-1)
    return token_logits[rows, p1, :n] + token_logits[rows, p2, n:]


_ENTITY_START_CLASSES: dict[type, type] = {}


def entity_start_class(base: type) -> type:
    """A subclass of a ``*ForTokenClassification`` class whose forward returns relation logits.

    It adds no weights and keeps the base class's name, so ``save_pretrained`` writes a folder
    that plain ``AutoModelForTokenClassification`` loads.
    """
    if base in _ENTITY_START_CLASSES:
        return _ENTITY_START_CLASSES[base]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = base.forward(self, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        e1_id, e2_id = self.config.entity_start_token_ids
        logits = entity_start_logits(out.logits, input_ids, e1_id, e2_id)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    cls = type(base.__name__, (base,), {"forward": forward, "__module__": base.__module__,
                                        "__qualname__": base.__qualname__, "_ftkit_entity_start": True})
    _ENTITY_START_CLASSES[base] = cls
    return cls


def add_markers(tokenizer) -> list[int]:
    """Add the four entity markers as special tokens (idempotent); return the ids of <e1> and <e2>.

    ``lstrip`` lets a marker absorb the space before it, so byte-level BPE tokenizers do not
    emit a lone space token; the word after a marker keeps its own leading space.
    """
    from tokenizers import AddedToken

    missing = [m for m in MARKERS if m not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"extra_special_tokens": [AddedToken(m, special=True, normalized=False, lstrip=True) for m in missing]},
            replace_extra_special_tokens=False,
        )
    return [tokenizer.convert_tokens_to_ids(E1), tokenizer.convert_tokens_to_ids(E2)]


# ---------------------------------------------------------------------------


class RelationTask(Task):
    name = "relation"
    pipeline_task = "text-classification"
    best_metric = "f1"
    Options = RelationOptions
    demo_recipe = "relation-demo"
    description = "relation extraction between two marked entities (official SemEval-2010 Task 8 macro-F1)"

    @property
    def auto_class(self) -> str:  # type: ignore[override]
        if self.options.pooling == "entity_start":
            return "AutoModelForTokenClassification"
        return "AutoModelForSequenceClassification"

    # ---- data -------------------------------------------------------------
    def _format(self, path: str, fmt: str, encoding: str) -> str:
        fmt = detect_format(path, fmt, default_text="semeval")
        if fmt == "semeval" and peek_text(path, encoding).lstrip().startswith("{"):
            fmt = "jsonl"  # JSON Lines in a .txt file
        if fmt == "conll":
            raise FtkitError("CoNLL column files are not a relation-extraction format", file=path,
                             hint="use the SemEval-2010 Task 8 format or JSONL with text, head, tail and label")
        return fmt

    def iter_examples(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8",
                      part: Part = WHOLE) -> Iterator[dict[str, Any]]:
        path = resolve_packaged(path)
        fmt = self._format(path, fmt, encoding)
        if fmt == "semeval":
            yield from iter_semeval(path, encoding, part)
            return
        for rec in iter_records(path, fmt, split, encoding, part):
            yield self.record_to_row(rec.data, rec.error, rec.where, require_label=True)

    def example_features(self):
        from datasets import Features, List, Value

        text = Value("string")
        return Features({"id": text, "text": text, "head": List(Value("int64")), "tail": List(Value("int64")),
                         "head_type": text, "tail_type": text, "label": text, "source": text})

    def parts(self, path: str, split: str, fmt: str, encoding: str, n: int) -> list[Part]:
        path = resolve_packaged(path)
        fmt = self._format(path, fmt, encoding)
        if fmt == "semeval":  # a record never holds a blank line
            return plan_parts(path, n, encoding, boundary="blank", breaks="newline")
        if fmt == "jsonl":
            return plan_parts(path, n, encoding, boundary="line", breaks="unicode")
        return [WHOLE]

    def observe(self, profile: Profile, example: dict[str, Any]) -> None:
        super().observe(profile, example)
        profile.label(example["label"], profile.where(example))

    def record_to_row(self, d: dict[str, Any], error, where: str, require_label: bool) -> dict[str, Any]:
        """One JSON-like record -> an example row; ``error(message, hint)`` builds the FtkitError."""
        o = self.options
        text = d.get(o.text_field)
        if text is None:
            raise error(f"missing field '{o.text_field}' (record has: {', '.join(map(str, d)) or 'nothing'})",
                        hint="set task_options.text_field for another name")
        if not isinstance(text, str):
            raise error(f"'{o.text_field}' must be a string, got {type(text).__name__}")
        if not text.strip():
            raise error("empty text")
        head_raw, tail_raw = d.get(o.head_field), d.get(o.tail_field)
        has_spans = head_raw is not None or tail_raw is not None
        has_markers = MARKER_RE.search(text) is not None
        try:
            if has_spans and has_markers:
                raise ValueError(f"the record has both <e1>/<e2> markers in '{o.text_field}' and "
                                 f"'{o.head_field}'/'{o.tail_field}' spans; give one or the other")
            if has_spans:
                head, head_type = _span(head_raw, o.head_field)
                tail, tail_type = _span(tail_raw, o.tail_field)
                check_spans(text, head, tail)
                clean = text
            else:
                clean, head, tail = parse_marked(text)
                head_type = tail_type = ""
        except ValueError as e:
            hint = None
            if str(e).startswith("no entity markers"):
                hint = (f"mark the entities with <e1>..</e1> and <e2>..</e2> in the text, or give '{o.head_field}' "
                        f"and '{o.tail_field}' as {{\"start\": .., \"end\": ..}} character spans")
            raise error(str(e), hint=hint) from None
        label = d.get(o.label_field)
        if label is None or (isinstance(label, str) and not label.strip()):
            if require_label:
                raise error(f"missing field '{o.label_field}'", hint="set task_options.label_field for another name")
            label = None
        elif not isinstance(label, str):
            raise error(f"'{o.label_field}' must be a string, got {type(label).__name__} {label!r}")
        else:
            label = label.strip()
        row = _row(d.get("id", ""), clean, head, tail, head_type, tail_type, label, where)
        return row

    def labels(self, train) -> list[str]:
        """Training labels plus the reverse direction of every directed label.

        Direction is part of the label, and both directions of a relation are valid outputs even
        if one is rare (SemEval's Entity-Destination(e2,e1) occurs once in 8000 examples): a
        validation split carved from train never fails for having the only example of it.
        """
        seen = set(self.profile(train, "train").labels)
        out = set(seen)
        for lab in seen:
            typ, d = split_direction(lab)
            if d is not None:
                out.add(f"{typ}({'e2,e1' if d == 'e1,e2' else 'e1,e2'})")
        neg = self.options.negative_label
        return ([neg] if neg in out else []) + sorted(out - {neg})

    def check_labels(self, examples, labels: list[str], source: str) -> None:
        known = set(labels)
        p = self.profile(examples)
        # profile.first keeps the order in which labels first occur: the first unseen one in reading order
        lab = next((lab for lab in p.first if lab not in known), None)
        if lab is not None:
            raise FtkitError(f"{p.first[lab]}: relation label '{lab}' never occurs in the training data",
                             hint=f"known labels: {', '.join(labels)}")

    def example_text(self, example: dict[str, Any]) -> str:
        return f"{example['text']}|{example['head']}|{example['tail']}"

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        p = self.profile(examples, split)
        counts = p.labels
        return {"examples": p.count, "negative": counts.get(self.options.negative_label, 0),
                "labels": dict(sorted(counts.items()))}

    # ---- model ------------------------------------------------------------
    def resolve_options(self, train, family: str | None) -> RelationOptions:
        """``pooling: auto`` becomes the head this family gets (recorded in ftkit.json, used on reload)."""
        if self.options.pooling != "auto" or family is None:
            return self.options
        return self.options.model_copy(update={"pooling": "entity_start" if family == "encoder" else "cls"})

    def prepare_tokenizer(self, tokenizer, facts: Facts) -> None:
        # The markers join the tokenizer before anything is encoded; the engine's prepare_model
        # then grows the embedding matrix to len(tokenizer).
        add_markers(tokenizer)

    def build_model(self, info, facts: Facts, tokenizer):
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

        labels = facts.labels
        marker_ids = add_markers(tokenizer)  # already added by prepare_tokenizer: just their ids
        if self.options.pooling == "cls":
            return AutoModelForSequenceClassification.from_pretrained(
                info.path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={lab: i for i, lab in enumerate(labels)}, **info.load_kwargs,
            )
        halves = [f"{E1} {lab}" for lab in labels] + [f"{E2} {lab}" for lab in labels]
        model = AutoModelForTokenClassification.from_pretrained(
            info.path, num_labels=len(halves), id2label=dict(enumerate(halves)),
            label2id={lab: i for i, lab in enumerate(halves)}, **info.load_kwargs,
        )
        model.config.entity_start_token_ids = marker_ids
        model.config.relation_labels = list(labels)
        model.__class__ = entity_start_class(type(model))
        return model

    def load_model(self, path: str, facts: Facts, meta: dict[str, Any] | None = None, **kwargs):
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

        if self.options.pooling != "entity_start":
            return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        model = AutoModelForTokenClassification.from_pretrained(path, **kwargs)
        if not getattr(model.config, "entity_start_token_ids", None):
            raise FtkitError("not an entity-start relation model (config.json has no entity_start_token_ids)",
                             file=path)
        model.__class__ = entity_start_class(type(model))
        return model

    # ---- features ---------------------------------------------------------
    def encode(self, examples, tokenizer, facts: Facts, train: bool):
        max_length, label2id = facts.max_length, facts.label2id
        has_labels = "label" in examples.column_names and not has_nulls(examples, "label")
        types = self.options.entity_types

        def encode_batch(batch, indices):
            texts = [
                render_marked(t, h, tl, ht if types else "", tt if types else "")
                for t, h, tl, ht, tt in zip(batch["text"], batch["head"], batch["tail"], batch["head_type"],
                                            batch["tail_type"])
            ]
            enc = tokenizer(texts, truncation=False)
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
            out: dict[str, list] = {k: [] for k in keys + ["example_id", "length"] + (["labels"] if has_labels else [])}
            for i, ex_id in enumerate(indices):
                row = {k: enc[k][i] for k in keys}
                if len(row["input_ids"]) > max_length:
                    fitted = fit_window(tokenizer, texts[i], max_length)
                    row = {k: fitted[k] for k in keys}
                for k in keys:
                    out[k].append(row[k])
                out["example_id"].append(ex_id)
                out["length"].append(len(row["input_ids"]))
                if has_labels:
                    out["labels"].append(label2id[batch["label"][i]])
            return out

        return map_examples(examples, encode_batch, remove_columns=examples.column_names)

    def reduce_logits(self, logits, facts: Facts):
        import torch

        if isinstance(logits, tuple):
            logits = logits[0]
        return torch.softmax(logits.float(), dim=-1)

    # ---- outputs ----------------------------------------------------------
    def decode(self, examples, features, outputs, facts: Facts) -> list[tuple[str, dict[str, float]]]:
        """Per example: (predicted label, {label: probability})."""
        labels = facts.labels
        probs = np.asarray(outputs, dtype=np.float64)
        result: list[Any] = [None] * len(examples)
        for f_idx, ex_id in enumerate(features["example_id"]):
            p = probs[f_idx, : len(labels)]
            result[ex_id] = (labels[int(p.argmax())], dict(zip(labels, p.tolist())))
        return result

    def score(self, examples, predictions, facts: Facts) -> dict[str, Any]:
        from ftkit import metrics

        return metrics.compute("semeval2010_task8", predictions=[p[0] for p in predictions],
                               references=list(examples["label"]), negative_label=self.options.negative_label,
                               labels=list(facts.labels))

    error_analysis = "the most confident mistakes"

    def prediction_rows(self, examples, predictions, facts: Facts) -> list[dict[str, Any]]:
        """Per sentence: the text with its two entities marked, gold and predicted relation; a mistake's
        severity is the predicted label's probability."""
        rows = []
        for i, (ex, (label, probs)) in enumerate(zip(examples, predictions)):
            (hs, he), (ts, te) = ex["head"], ex["tail"]
            marks = [span(hs, he, ex["head_type"] or "e1", "input"), span(ts, te, ex["tail_type"] or "e2", "input")]
            wrong = label != ex["label"]
            rows.append(example_row(i, correct=not wrong, severity=probs[label] if wrong else 0.0,
                                    note=f"confidence {probs[label]:.2f}",
                                    fields=[text_field("sentence", ex["text"], marks)], gold=ex["label"],
                                    predicted=label))
        return rows

    def format_table(self, m: dict[str, Any]) -> str:
        neg = m.get("negative_label", "Other")
        lines = [f"{'relation type':<24}{'precision':>10}{'recall':>10}{'f1':>10}{'correct':>9}{'wrong dir':>11}"
                 f"{'proposed':>10}{'support':>9}"]
        for t, v in m["per_type"].items():
            lines.append(f"{t:<24}{v['precision']:>10.4f}{v['recall']:>10.4f}{v['f1']:>10.4f}{v['correct']:>9}"
                         f"{v['wrong_direction']:>11}{v['proposed']:>10}{v['support']:>9}")
        lines.append(f"official macro (types excl. {neg}, directed): precision {m['precision']:.4f}  "
                     f"recall {m['recall']:.4f}  f1 {m['f1']:.4f}")
        lines.append(f"micro (labels excl. {neg}): precision {m['micro_precision']:.4f}  recall {m['micro_recall']:.4f}"
                     f"  f1 {m['micro_f1']:.4f}")
        lines.append(f"accuracy {m['accuracy']:.4f} over {m['examples']} examples")
        return "\n".join(lines)

    # ---- predict ----------------------------------------------------------
    def predict_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records are ``{"text": "... <e1>X</e1> ... <e2>Y</e2> ..."}`` (a marked text line, also
        ``ID<TAB>"sentence"`` as in the SemEval files) or JSON with ``text``, ``head`` and ``tail``."""
        rows = []
        for i, r in enumerate(records, 1):
            def error(message, hint=None, i=i):
                return FtkitError(message, file="input", record=f"record {i}", hint=hint)

            d = dict(r)
            text = d.get(self.options.text_field)
            shown = text
            if isinstance(text, str) and d.get(self.options.head_field) is None and d.get(self.options.tail_field) is None:
                d[self.options.text_field] = unwrap_semeval_sentence(text)
            row = self.record_to_row(d, error, f"input record {i}", require_label=False)
            row.pop("label")
            row["input"] = shown if isinstance(shown, str) else row["text"]
            rows.append(row)
        return rows

    def predict_columns(self) -> list[str]:
        return ["id", "text", "head", "tail", "head_type", "tail_type", "source", "input"]

    def format_prediction(self, example: dict[str, Any], prediction) -> dict[str, Any]:
        label, probs = prediction
        return {"text": example["input"], "label": label,
                "probabilities": {lab: round(float(p), 4) for lab, p in probs.items()}}

    def card_usage(self, model_meta: dict[str, Any]) -> list[str]:
        labels = model_meta["labels"]
        example = "The <e1>company</e1> fabricates plastic <e2>chairs</e2>."
        if self.options.pooling == "cls":
            return [
                "Input is text with the two entities marked in the SemEval notation; the tokenizer knows",
                "`<e1> </e1> <e2> </e2>` as special tokens, so marked text goes in as it is written:",
                "```python",
                "from transformers import pipeline",
                "nlp = pipeline(\"text-classification\", model=\"PATH/TO/THIS/FOLDER\")",
                f"nlp(\"{example}\")",
                "```",
                "or `ftkit predict PATH/TO/THIS/FOLDER --input FILE` (marked text lines, or JSONL with `text`",
                "and `head`/`tail` character spans).",
                "",
                "Head: sequence classification of the marked text (`pooling: cls`).",
            ]
        return [
            "**Head: entity start** (Baldini Soares et al. 2019): the relation logits are a linear layer over the",
            "concatenated final states of the `<e1>` and `<e2>` start markers. Because",
            "`W [h_e1; h_e2] + b = W1 h_e1 + W2 h_e2 + b`, the layer is stored as a standard token-classification",
            f"head with 2 x {len(labels)} outputs: the `<e1> LABEL` rows are `W1`, the `<e2> LABEL` rows `W2`. The",
            "folder loads with plain transformers (no remote code); the relation logits are the `<e1>` token's",
            "first half plus the `<e2>` token's second half:",
            "```python",
            "import torch",
            "from transformers import AutoModelForTokenClassification, AutoTokenizer",
            "path = \"PATH/TO/THIS/FOLDER\"",
            "tok = AutoTokenizer.from_pretrained(path)",
            "model = AutoModelForTokenClassification.from_pretrained(path).eval()",
            "labels = model.config.relation_labels",
            f"enc = tok([\"{example}\"], return_tensors=\"pt\")",
            "with torch.no_grad():",
            "    out = model(**enc).logits[0]                      # (tokens, 2 x labels)",
            "ids = enc.input_ids[0].tolist()",
            "e1, e2 = ids.index(tok.convert_tokens_to_ids(\"<e1>\")), ids.index(tok.convert_tokens_to_ids(\"<e2>\"))",
            "logits = out[e1, :len(labels)] + out[e2, len(labels):]",
            "print(labels[int(logits.argmax())], logits.softmax(-1).max().item())",
            "```",
            "Do not use `pipeline(\"text-classification\")` or `pipeline(\"token-classification\")` on this folder:",
            "neither computes the sum above. `ftkit predict PATH/TO/THIS/FOLDER --input FILE` does (marked text",
            "lines, or JSONL with `text` and `head`/`tail` character spans). A model trained with `pooling: cls`",
            "serves `pipeline(\"text-classification\")` directly.",
        ]


def _span(raw: Any, field: str) -> tuple[tuple[int, int], str]:
    """``{"start": s, "end": e, "type": t}`` or ``[s, e]`` -> ((s, e), type)."""
    if raw is None:
        raise ValueError(f"'{field}' is missing (a record with spans needs both head and tail)")
    typ = ""
    if isinstance(raw, dict):
        if "start" not in raw or "end" not in raw:
            raise ValueError(f"'{field}' needs 'start' and 'end' character offsets")
        start, end, typ = raw["start"], raw["end"], raw.get("type") or ""
    elif isinstance(raw, (list, tuple)) and len(raw) == 2:
        start, end = raw
    else:
        raise ValueError(f"'{field}' must be {{\"start\": .., \"end\": ..}}, got {raw!r}")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
        raise ValueError(f"'{field}' offsets must be integers, got start={start!r}, end={end!r}")
    if not isinstance(typ, str):
        raise ValueError(f"'{field}' type must be a string, got {typ!r}")
    return (start, end), typ.strip()


def fit_window(tokenizer, marked: str, max_length: int):
    """Encode a marked text longer than ``max_length`` by cutting context, never the entity starts.

    Keeps the smallest token range holding all four markers plus context on both sides; if the
    two entities are further apart than the window, keeps a half window from each entity's start.
    """
    ids_by_marker = {tokenizer.convert_tokens_to_ids(m): m for m in MARKERS}
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    plain = tokenizer(marked, add_special_tokens=False, return_offsets_mapping=True)
    ids, offs = plain["input_ids"], plain["offset_mapping"]
    where: dict[str, int] = {}
    for i, t in enumerate(ids):
        if t in ids_by_marker:
            where.setdefault(ids_by_marker[t], i)
    text = marked
    for _ in range(8):
        if len(where) < 4:
            s, e = 0, min(len(ids), budget)
            pieces = [(s, e)]
        else:
            a, b = min(where.values()), max(where.values())
            if b - a + 1 <= budget:
                s = max(0, min(a - (budget - (b - a + 1)) // 2, len(ids) - budget))
                pieces = [(s, min(len(ids), s + budget))]
            else:
                first, second = sorted([where[E1], where[E2]])
                half = budget // 2
                pieces = [(first, min(first + half, second)), (second, min(len(ids), second + budget - half))]
        text = " ".join(marked[offs[s][0]:offs[e - 1][1]] for s, e in pieces if e > s)
        enc = tokenizer(text, truncation=False)
        if len(enc["input_ids"]) <= max_length:
            return enc
        budget -= len(enc["input_ids"]) - max_length
        if budget <= 4:
            break
    return tokenizer(text, truncation=True, max_length=max_length)
