"""Extractive question answering: SQuAD v1.1/v2.0 in, official SQuAD EM/F1 out.

- Data: SQuAD JSON (``data/paragraphs/qas``, v2 ``is_impossible``) or flat records
  (``id``, ``question``, ``context``, ``answers: {text: [...], answer_start: [...]}``) in
  JSONL, Parquet and ``datasets`` folders. Every gold answer is checked against its
  context on load. ``articles`` selects a slice of articles per split, so train and test
  can come from one file, split by article.
- Features: question first, context second, ``truncation="only_second"``; contexts
  longer than the window become overlapping windows (``doc_stride`` sub-tokens of
  overlap). Each window is labelled with the answer's start/end sub-token, or with the
  window's *null position* when the answer is not inside it.
- The null position: index 0 when the tokenizer starts a pair with a special token
  (``[CLS]``, ``<s>``). Otherwise (T5, GPT-2) it is the last token -- T5's own closing
  ``</s>``, or an EOS that ftkit appends for decoder-only models -- because a causal
  model's first token sees only itself, while the last one sees question and window.
- Decoding searches the ``n_best`` start and end sub-tokens of *every* window of a
  question (spans of at most ``max_answer_length`` sub-tokens, inside the context) and
  maps the best span back to exact character offsets of the original context. With
  SQuAD 2.0 the answer is empty when the null score beats the best span by more than
  ``null_score_diff_threshold``.
- Scores are the official SQuAD scripts' (v1.1, and v2.0 with HasAns/NoAns) as fractions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import numpy as np
from pydantic import Field, field_validator

from ftkit.data.lines import WHOLE, Part, codec_name
from ftkit.data.parallel import map_examples
from ftkit.data.profile import Profile
from ftkit.data.records import detect_format, iter_records, read_text
from ftkit.errors import FtkitError
from ftkit.recipes import resolve_packaged
from ftkit.tasks.base import Facts, Task, TaskOptions, example_row, span, text_field

SLICE_RE = re.compile(r"^\s*(-?\d+)?\s*(:)?\s*(-?\d+)?\s*$")
LABELS = ["start", "end"]


class QaOptions(TaskOptions):
    doc_stride: int = Field(128, ge=0, description="sub-tokens of overlap between windows of a long context")
    max_answer_length: int = Field(30, gt=0, description="longest predicted answer, in sub-tokens")
    n_best: int = Field(20, gt=0, description="start and end candidates per window in the answer search")
    max_question_length: int = Field(64, gt=0, description="longer questions are cut to this many sub-tokens")
    version_2_with_negative: bool | None = Field(
        None, description="questions may have no answer (SQuAD 2.0); default: detected from the training data"
    )
    null_score_diff_threshold: float = Field(
        0.0, description="SQuAD 2.0: answer nothing when null score - best span score exceeds this"
    )
    articles: dict[Literal["train", "validation", "test"], str] = Field(
        default_factory=dict,
        description='per split, a Python slice of the articles to read, e.g. {train: "0:38", test: "38:48"}',
    )

    @field_validator("articles")
    @classmethod
    def _slices(cls, v: dict[str, str]) -> dict[str, str]:
        for split, text in v.items():
            parse_slice(text, f"articles.{split}")
        return v


def parse_slice(text: str, what: str = "articles") -> slice:
    """``"0:38"`` -> ``slice(0, 38)``; ``"5"`` -> ``slice(5, 6)`` (one article)."""
    m = SLICE_RE.match(str(text))
    if not m or (m.group(1) is None and m.group(2) is None):
        raise ValueError(f"{what}: expected START:STOP (a Python slice of article indices), got {text!r}")
    a = int(m.group(1)) if m.group(1) is not None else None
    b = int(m.group(3)) if m.group(3) is not None else None
    if m.group(2) is None:
        return slice(a, a + 1 if a != -1 else None)
    return slice(a, b)


# ---------------------------------------------------------------------------
# reading


def _answers_of(raw: Any) -> tuple[list[Any], list[Any]] | None:
    """``{text: [...], answer_start: [...]}`` or ``[{text, answer_start}, ...]`` -> (texts, starts)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return None
    if isinstance(raw, dict):
        texts, starts = raw.get("text"), raw.get("answer_start")
        if isinstance(texts, str):
            texts, starts = [texts], [starts]
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            return None
        return texts, starts
    if isinstance(raw, list) and all(isinstance(a, dict) for a in raw):
        return [a.get("text") for a in raw], [a.get("answer_start") for a in raw]
    return None


def _check_question(qid: str, title: str, question: Any, context: Any, texts: list[Any], starts: list[Any],
                    err) -> dict[str, Any]:
    if not isinstance(question, str) or not question.strip():
        raise err("missing or empty 'question'")
    if not isinstance(context, str) or not context.strip():
        raise err("missing or empty 'context'")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text:
            raise err(f"an answer has no text (got {text!r})")
        if isinstance(start, bool) or not isinstance(start, int):
            raise err(f"answer {text!r}: answer_start must be an integer, got {start!r}")
        found = context[start:start + len(text)] if start >= 0 else ""
        if found != text:
            raise err(
                f"answer {text!r} does not match the context at answer_start {start} "
                f"(the context there reads {found!r})",
                hint="answer_start is the 0-based character offset of the answer in its context",
            )
    return {"id": qid, "title": title, "question": question, "context": context,
            "answers": {"text": list(texts), "answer_start": list(starts)}}


def _select(items: list[Any], articles: str | None, path: str, what: str = "articles") -> list[Any]:
    if articles is None:
        return items
    chosen = items[parse_slice(articles)]
    if not chosen:
        raise FtkitError(f"articles '{articles}' selects no article: the file has {len(items)} {what}", file=path,
                         hint="task_options.articles takes START:STOP slices of article indices, from 0")
    return chosen


def _parse_squad_json(text: str, path: str) -> dict[str, Any] | None:
    """The SQuAD JSON document in ``text``, or None when the file is JSON Lines."""
    body = text.strip()
    if not body:
        raise FtkitError("empty file", file=path)
    if not body.startswith("{"):
        return None  # the JSON Lines reader explains what is wrong
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return None  # several objects: JSON Lines
        first = text.lstrip().split("\n", 1)[0]
        try:
            json.loads(first)
            return None  # a complete first line: JSON Lines with a bad line further down
        except json.JSONDecodeError:
            pass
        truncated = e.pos >= len(text.rstrip()) - 1 or e.msg.startswith("Unterminated")
        raise FtkitError(f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})", file=path, line=e.lineno,
                         hint="the document ends early: is the file truncated?" if truncated else None) from None
    if not isinstance(obj, dict):
        return None
    if "data" not in obj:
        if "question" in obj or "context" in obj:
            return None  # a one-line JSON Lines file
        raise FtkitError("not a SQuAD file: no top-level 'data' list (and not one flat record per line)",
                         file=path, hint="expected SQuAD JSON or JSONL records with question/context/answers")
    return obj


def read_squad_json(obj: dict[str, Any], path: str, articles: str | None) -> list[dict[str, Any]]:
    data = obj.get("data")
    if not isinstance(data, list):
        raise FtkitError("'data' must be a list of articles", file=path)
    chosen = _select(list(range(len(data))), articles, path)
    return list(_squad_rows(((a_i, data[a_i]) for a_i in chosen), path))


def _squad_rows(articles: Iterable[tuple[int, Any]], path: str) -> Iterator[dict[str, Any]]:
    """The questions of SQuAD articles ``(index, article)``, validated, one at a time."""
    for a_i, article in articles:
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise FtkitError(f"article {a_i} has no 'paragraphs' list", file=path)
        title = str(article.get("title", ""))
        for p_i, para in enumerate(article["paragraphs"]):
            if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                raise FtkitError(f"article {title or a_i!r}, paragraph {p_i}: no 'qas' list", file=path)
            context = para.get("context")
            for q_i, qa in enumerate(para["qas"]):
                if not isinstance(qa, dict):
                    raise FtkitError(f"article {title or a_i!r}, paragraph {p_i}: question {q_i} is not an object",
                                     file=path)
                qid = qa.get("id")
                if qid is None:
                    raise FtkitError(f"article {title or a_i!r}, paragraph {p_i}: question {q_i} has no 'id'",
                                     file=path)
                qid = str(qid)

                def err(msg, hint=None, qid=qid):
                    return FtkitError(msg, file=path, record=f"question {qid}", hint=hint)

                parsed = _answers_of(qa.get("answers", []))
                if parsed is None:
                    raise err("'answers' must be a list of {text, answer_start} objects")
                texts, starts = parsed
                if qa.get("is_impossible") and texts:
                    raise err("is_impossible is true, but the question has answers")
                row = _check_question(qid, title, qa.get("question"), context, texts, starts, err)
                row["source"] = f"{path}: question {qid}"
                yield row


#: a .json/.jsonl file up to this size is parsed whole to tell a SQuAD document from JSON Lines
WHOLE_JSON_BYTES = 1 << 20
_VALUE_STARTS = {"start_map", "start_array", "string", "number", "boolean", "null"}


def _json_layout(path: str, encoding: str) -> tuple[str, Any]:
    """How to read a .json/.jsonl QA file, decided as parsing the whole text would: ``("lines", None)``
    (JSON Lines), ``("object", obj)`` (a SQuAD document already parsed) or ``("stream", None)`` (a large
    SQuAD document, read with an incremental parser)."""
    from ftkit.data.lines import line_by_line, peek_text

    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if size <= WHOLE_JSON_BYTES or codec_name(encoding) != "utf-8" or not line_by_line(encoding):
        obj = _parse_squad_json(read_text(path, encoding), path)
        return ("lines", None) if obj is None else ("object", obj)
    body = peek_text(path, encoding, WHOLE_JSON_BYTES).lstrip()
    if not body.startswith("{"):
        return ("lines", None) if body else ("object", _whole_json(path, encoding))
    if "\n" in body:
        first, rest = body.split("\n", 1)
        try:
            json.loads(first)
        except json.JSONDecodeError:
            return "stream", None
        # a complete first line and more after it: JSON Lines (parsing the whole text says "Extra data")
        return ("lines", None) if rest.strip() else ("object", _whole_json(path, encoding))
    return "stream", None  # one long line: a SQuAD document (official SQuAD files are one line)


def _whole_json(path: str, encoding: str):
    """What parsing the whole text decides (for the rare file the streaming checks cannot tell)."""
    obj = _parse_squad_json(read_text(path, encoding), path)
    return obj if obj is not None else _LINES


_LINES = object()


def _open_json(path: str, encoding: str):
    from ftkit.data.lines import BOM, open_binary

    f = open_binary(path)
    if f.read(3) != BOM or encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        f.seek(0)
    return f


def _squad_stream_plan(path: str, encoding: str) -> dict[str, Any]:
    """One pass over the parse events of a large SQuAD document (it is validated whole before any
    question is read): top-level keys, the last "version", and where the items of the last "data" list are."""
    import ijson

    keys, version, item_total, last_start, data_is_list = set(), None, 0, None, None
    with _open_json(path, encoding) as f:
        for prefix, event, value in ijson.parse(f, use_float=True):
            if prefix == "" and event == "map_key":
                keys.add(value)
            elif prefix == "version" and event in _VALUE_STARTS:
                version = value if event not in ("start_map", "start_array") else None
            elif prefix == "data" and event in _VALUE_STARTS:
                data_is_list, last_start = event == "start_array", item_total
            elif prefix == "data.item" and event in _VALUE_STARTS:
                item_total += 1
    return {"keys": keys, "version": version, "data_is_list": data_is_list,
            "skip": last_start or 0, "articles": item_total - (last_start or 0)}


def iter_squad_stream(path: str, encoding: str, articles: str | None) -> tuple[bool, Iterator[dict[str, Any]]] | None:
    """``(declared_v2, rows)`` of a large SQuAD document, streamed article by article; None when it
    turns out to be JSON Lines. A malformed document is reported as parsing it whole reports it."""
    import ijson

    try:
        plan = _squad_stream_plan(path, encoding)
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError, ValueError):
        obj = _whole_json(path, encoding)  # raises the error with its line and column
        if obj is _LINES:
            return None
        return _declared_v2(obj), iter(read_squad_json(obj, path, articles))
    if plan["data_is_list"] is None:
        if "question" in plan["keys"] or "context" in plan["keys"]:
            return None  # a one-record JSON Lines file
        raise FtkitError("not a SQuAD file: no top-level 'data' list (and not one flat record per line)",
                         file=path, hint="expected SQuAD JSON or JSONL records with question/context/answers")
    if not plan["data_is_list"]:
        raise FtkitError("'data' must be a list of articles", file=path)
    chosen = _select(range(plan["articles"]), articles, path)

    def articles_of():
        from itertools import islice

        with _open_json(path, encoding) as f:
            items = islice(ijson.items(f, "data.item", use_float=True), plan["skip"], None)
            for a_i, article in enumerate(items):
                if a_i in chosen:
                    yield a_i, article

    return _declared_v2({"version": plan["version"]} if plan["version"] is not None else {}), \
        _squad_rows(articles_of(), path)


def _declared_v2(obj: dict[str, Any]) -> bool:
    """The file says "version": "2.0" (read by resolve_options)."""
    return str(obj.get("version", "")).lower().lstrip("v").startswith("2")


def iter_flat(path: str, fmt: str, split: str, encoding: str, articles: str | None,
              part: Part = WHOLE) -> Iterator[dict[str, Any]]:
    keep = None
    if articles is not None:
        # articles are the records' titles in order of first appearance: one pass to learn them
        order: dict[str, int] = {}
        for rec in iter_records(path, fmt, split, encoding):
            title = rec.data.get("title")
            if title is None:
                raise rec.error("task_options.articles needs a 'title' field in every record (it names the article)")
            order.setdefault(str(title), len(order))
        keep = set(_select(list(order), articles, path))
    for rec in iter_records(path, fmt, split, encoding, part):
        d = rec.data
        if keep is not None and str(d.get("title")) not in keep:
            continue
        qid = str(d["id"]) if d.get("id") is not None else str(rec.index)

        def err(msg, hint=None, rec=rec, qid=qid):
            return rec.error(f"question {qid}: {msg}", hint=hint)

        if "answers" not in d:
            raise err(f"missing field 'answers' (record has: {', '.join(map(str, d))})",
                      hint="answers: {text: [...], answer_start: [...]}; empty lists for a question with no answer")
        parsed = _answers_of(d["answers"])
        if parsed is None:
            raise err("'answers' must be {text: [...], answer_start: [...]} (or a list of {text, answer_start})")
        texts, starts = parsed
        row = _check_question(qid, str(d.get("title") or ""), d.get("question"), d.get("context"), texts, starts,
                              err)
        row["source"] = rec.where
        yield row


def read_flat(path: str, fmt: str, split: str, encoding: str, articles: str | None) -> list[dict[str, Any]]:
    return list(iter_flat(path, fmt, split, encoding, articles))


# ---------------------------------------------------------------------------
# windows


def null_layout(tokenizer) -> str:
    """Where a window's null position is: ``first`` (CLS/<s>), ``last`` (T5 </s>) or ``append`` (GPT-2)."""
    seq = tokenizer("q", "c").sequence_ids()
    if seq and seq[0] is None:
        return "first"
    if seq and seq[-1] is None:
        return "last"
    if tokenizer.eos_token_id is None:
        return "first"  # nothing to append; the first question token stands in
    return "append"


def _cap_questions(tokenizer, questions: list[str], cap: int) -> list[str]:
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for q, offsets in zip(questions, enc["offset_mapping"]):
        out.append(q[: offsets[cap - 1][1]] if len(offsets) > cap else q)
    return out


def answer_tokens(offsets: list[list[int]], start_char: int, end_char: int) -> tuple[int, int] | None:
    """Sub-token span of the characters ``[start_char, end_char)`` in a window, or None when
    the window does not hold the whole answer. ``offsets`` are ``[-1, -1]`` outside the context."""
    ctx = [k for k, (s, e) in enumerate(offsets) if s >= 0 and e > s]
    if not ctx or start_char < offsets[ctx[0]][0] or end_char > offsets[ctx[-1]][1]:
        return None
    first = next((k for k in ctx if offsets[k][1] > start_char), None)
    last = next((k for k in reversed(ctx) if offsets[k][0] < end_char), None)
    if first is None or last is None or first > last:
        return None
    return first, last


def _strip_span(context: str, s: int, e: int) -> tuple[int, int]:
    while s < e and context[s].isspace():
        s += 1
    while e > s and context[e - 1].isspace():
        e -= 1
    return s, e


# ---------------------------------------------------------------------------


class QaTask(Task):
    name = "qa"
    pipeline_task = "question-answering"
    auto_class = "AutoModelForQuestionAnswering"
    best_metric = "f1"
    Options = QaOptions
    demo_recipe = "qa-demo"
    model_columns = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
    description = "extractive question answering (SQuAD v1.1/v2.0; official exact match and F1)"

    # ---- data -------------------------------------------------------------
    def iter_examples(self, path: str, split: str, fmt: str = "auto", encoding: str = "utf-8",
                      part: Part = WHOLE) -> Iterator[dict[str, Any]]:
        o = self.options
        path = resolve_packaged(path)
        fmt = detect_format(path, fmt, default_text="jsonl")
        articles = o.articles.get(split)
        if fmt == "conll":
            raise FtkitError("the qa task reads SQuAD JSON, JSONL, Parquet or `datasets` folders, not CoNLL",
                             file=path)
        declared_v2, rows = False, None
        if fmt == "jsonl":
            layout, obj = _json_layout(path, encoding)
            if layout == "object" and obj is not _LINES:
                declared_v2, rows = _declared_v2(obj), iter(read_squad_json(obj, path, articles))
            elif layout == "stream":
                streamed = iter_squad_stream(path, encoding, articles)
                if streamed is not None:
                    declared_v2, rows = streamed
        if rows is None:
            rows = iter_flat(path, fmt, split, encoding, articles, part)
        for row in rows:
            row["squad_v2"] = declared_v2  # the file says "version": "2.0" (read by resolve_options)
            yield row

    def example_features(self):
        from datasets import Features, List, Value

        text = Value("string")
        return Features({"id": text, "title": text, "question": text, "context": text,
                         "answers": {"text": List(text), "answer_start": List(Value("int64"))},
                         "source": text, "squad_v2": Value("bool")})

    def observe(self, profile: Profile, example: dict[str, Any]) -> None:
        super().observe(profile, example)
        answers = example["answers"]["text"]
        profile.total("answers", len(answers))
        if not answers:
            profile.total("unanswerable")
            profile.note("first_unanswerable", example["id"])
        profile.value("contexts", example["context"])
        profile.value("articles", example["title"])
        if example.get("squad_v2"):
            profile.flags.add("squad_v2")

    def check_split(self, profile: Profile, path: str, split: str) -> None:
        if profile.count == 0:
            raise FtkitError("no questions found", file=path)
        n = profile.counts["unanswerable"]
        if n and self.options.version_2_with_negative is False:
            raise FtkitError(
                f"{n} question{'s have' if n > 1 else ' has'} no answer "
                f"(first: question {profile.notes['first_unanswerable']}), but version_2_with_negative is false",
                file=path, hint="for SQuAD 2.0 style data set task_options.version_2_with_negative=true "
                                "(it is detected from the training data)",
            )

    def labels(self, train) -> list[str]:
        # No label set: the two outputs of the head are the start and end logits.
        return list(LABELS)

    def example_text(self, example: dict[str, Any]) -> str:
        return f"{example['question']}\t{example['context']}"

    def data_summary(self, examples, split: str = "") -> dict[str, Any]:
        p = self.profile(examples, split)
        return {
            "questions": p.count,
            "contexts": p.distinct.get("contexts", 0),
            "articles": p.distinct.get("articles", 0),
            "unanswerable": p.counts["unanswerable"],
            "answers": p.counts["answers"],
        }

    @property
    def version_2(self) -> bool:
        return bool(self.options.version_2_with_negative)

    def resolve_options(self, train, family: str | None) -> QaOptions:
        """SQuAD 2.0 (questions may have no answer) unless set: detected from the training data -- any
        question without an answer, or a file that declares version 2."""
        if self.options.version_2_with_negative is not None:
            return self.options
        p = self.profile(train, "train")
        detected = p.counts["unanswerable"] > 0 or "squad_v2" in p.flags
        return self.options.model_copy(update={"version_2_with_negative": detected})

    # ---- model ------------------------------------------------------------
    def build_model(self, info, facts: Facts, tokenizer):
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering.from_pretrained(
            info.path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={lab: i for i, lab in enumerate(LABELS)},
            **info.load_kwargs,
        )

    # ---- features ---------------------------------------------------------
    def encode(self, examples, tokenizer, facts: Facts, train: bool):
        o, max_length = self.options, facts.max_length
        layout = null_layout(tokenizer)
        extra = 1 if layout == "append" else 0
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - extra
        if room < 8:
            raise FtkitError(f"a window of {max_length} sub-tokens leaves no room for question and context",
                             hint="raise training.max_length")
        q_cap = max(1, min(o.max_question_length, room // 2))
        stride = min(o.doc_stride, (room - q_cap) // 2)
        has_answers = "answers" in examples.column_names
        model_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids")
                      if k in tokenizer("q", "c").keys()]

        def encode_batch(batch, indices):
            questions = _cap_questions(tokenizer, [q.lstrip() for q in batch["question"]], q_cap)
            enc = tokenizer(questions, batch["context"], truncation="only_second", max_length=max_length - extra,
                            stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
            out: dict[str, list] = {k: [] for k in model_keys + ["offsets", "null_index", "example_id", "length"]}
            if has_answers:
                out["start_positions"], out["end_positions"] = [], []
            for i, j in enumerate(enc["overflow_to_sample_mapping"]):
                seq = enc.sequence_ids(i)
                row = {k: list(enc[k][i]) for k in model_keys}
                offsets = [list(off) if s == 1 else [-1, -1] for off, s in zip(enc["offset_mapping"][i], seq)]
                if layout == "append":
                    row["input_ids"].append(tokenizer.eos_token_id)
                    row["attention_mask"].append(1)
                    if "token_type_ids" in row:
                        row["token_type_ids"].append(row["token_type_ids"][-1])
                    offsets.append([-1, -1])
                null = 0 if layout == "first" else len(offsets) - 1
                for k in model_keys:
                    out[k].append(row[k])
                out["offsets"].append(offsets)
                out["null_index"].append(null)
                out["example_id"].append(indices[j])
                out["length"].append(len(offsets))
                if has_answers:
                    ans = batch["answers"][j]
                    span = None
                    if ans["text"]:
                        start = ans["answer_start"][0]
                        span = answer_tokens(offsets, start, start + len(ans["text"][0]))
                    out["start_positions"].append(span[0] if span else null)
                    out["end_positions"].append(span[1] if span else null)
            return out

        return map_examples(examples, encode_batch, remove_columns=examples.column_names)

    def reduce_logits(self, logits, facts: Facts):
        import torch

        # (start_logits, end_logits, ...extra outputs such as T5's encoder states) -> [batch, len, 2]
        return torch.stack([logits[0].float(), logits[1].float()], dim=-1)

    # ---- outputs ----------------------------------------------------------
    def decode(self, examples, features, outputs, facts: Facts) -> list[dict[str, Any]]:
        """Per question: ``{text, start, end, score}``; ``text`` is "" (start/end None) for no answer."""
        o = self.options
        outputs = np.asarray(outputs, dtype=np.float32)
        windows: dict[int, list[int]] = {}
        for f, ex in enumerate(features["example_id"]):
            windows.setdefault(ex, []).append(f)
        all_offsets, nulls = features["offsets"], features["null_index"]
        results = []
        for ex, context in enumerate(examples["context"]):
            spans: dict[tuple[int, int], float] = {}
            null_score = None
            for f in windows.get(ex, []):
                offsets = np.asarray(all_offsets[f], dtype=np.int64).reshape(-1, 2)
                n = len(offsets)
                start, end = outputs[f, :n, 0], outputs[f, :n, 1]
                null = float(start[nulls[f]] + end[nulls[f]])
                null_score = null if null_score is None else min(null_score, null)
                valid = (offsets[:, 0] >= 0) & (offsets[:, 1] > offsets[:, 0])
                if not valid.any():
                    continue
                k = min(o.n_best, int(valid.sum()))
                starts = np.argsort(-np.where(valid, start, -np.inf), kind="stable")[:k]
                ends = np.argsort(-np.where(valid, end, -np.inf), kind="stable")[:k]
                for s in starts:
                    for e in ends:
                        if e < s or e - s + 1 > o.max_answer_length:
                            continue
                        cs, ce = _strip_span(context, int(offsets[s, 0]), int(offsets[e, 1]))
                        if ce <= cs:
                            continue
                        score = float(start[s] + end[e])
                        if spans.get((cs, ce), -np.inf) < score:
                            spans[(cs, ce)] = score
            ranked = sorted(spans.items(), key=lambda kv: -kv[1])[: o.n_best]
            scores = [sc for _, sc in ranked] + ([null_score] if self.version_2 and null_score is not None else [])
            probs = np.exp(np.array(scores) - max(scores)) if scores else np.array([])
            probs = probs / probs.sum() if scores else probs
            answer_null = not ranked or (
                self.version_2 and null_score is not None and null_score - ranked[0][1] > o.null_score_diff_threshold
            )
            if answer_null:
                score = float(probs[-1]) if self.version_2 and null_score is not None else 0.0
                results.append({"text": "", "start": None, "end": None, "score": score})
            else:
                (cs, ce), _ = ranked[0]
                results.append({"text": context[cs:ce], "start": cs, "end": ce, "score": float(probs[0])})
        return results

    def score(self, examples, predictions, facts: Facts) -> dict[str, Any]:
        golds = [a["text"] for a in examples["answers"]]
        version_2 = self.version_2 or any(not g for g in golds)
        from ftkit import metrics

        m = metrics.compute("squad", predictions=[p["text"] for p in predictions], references=golds,
                            version_2_with_negative=version_2)
        per_label = {}
        for part, key in (("HasAns", "has_ans"), ("NoAns", "no_ans")):
            if f"{key}_total" in m:
                per_label[part] = {"exact_match": m[f"{key}_exact_match"], "f1": m[f"{key}_f1"],
                                   "support": m[f"{key}_total"]}
        m["per_label"] = per_label
        return m

    error_analysis = "questions with the lowest F1: gold and predicted answers in their context"

    def prediction_rows(self, examples, predictions, facts: Facts) -> list[dict[str, Any]]:
        """Per question: the question, and the context with every gold answer and the predicted span marked;
        severity = 1 - the question's F1 (official normalisation, max over the gold answers)."""
        from ftkit.metrics.squad import squad_scores

        rows = []
        for i, (ex, pred) in enumerate(zip(examples, predictions)):
            answers = ex["answers"]
            golds = list(answers["text"])
            m = squad_scores([golds], [pred["text"]], self.version_2 or not golds)
            marks = [span(s, s + len(t), "gold", "gold") for t, s in zip(answers["text"], answers["answer_start"])]
            if pred["start"] is not None:
                marks.append(span(pred["start"], pred["end"], "predicted", "predicted"))
            fields = [text_field("question", ex["question"]), text_field("context", ex["context"], marks)]
            rows.append(example_row(i, correct=m["exact_match"] == 1.0, severity=1.0 - m["f1"],
                                    note=f"F1 {m['f1']:.2f}", fields=fields, gold=golds or ["(no answer)"],
                                    predicted=pred["text"] or "(no answer)", id=ex.get("id", "")))
        return rows

    def format_table(self, m: dict[str, Any]) -> str:
        lines = [f"{'':<8}{'exact':>10}{'f1':>10}{'questions':>11}",
                 f"{'all':<8}{m['exact_match']:>10.4f}{m['f1']:>10.4f}{m['examples']:>11}"]
        for part, v in m.get("per_label", {}).items():
            lines.append(f"{part:<8}{v['exact_match']:>10.4f}{v['f1']:>10.4f}{v['support']:>11}")
        return "\n".join(lines)

    # ---- predict ----------------------------------------------------------
    def predict_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records are ``{"question": ..., "context": ...}`` (an ``id`` is passed through)."""
        rows = []
        for n, r in enumerate(records, 1):
            for key in ("question", "context"):
                if not isinstance(r.get(key), str) or not r[key].strip():
                    raise FtkitError(
                        f"input record {n}: missing or empty '{key}' (record has: {', '.join(map(str, r)) or 'nothing'})",
                        hint='qa predicts on JSONL lines like {"question": "...", "context": "..."}',
                    )
            rows.append({"id": str(r.get("id", "")), "question": r["question"], "context": r["context"]})
        return rows

    def predict_columns(self) -> list[str]:
        return ["id", "question", "context"]

    def format_prediction(self, example: dict[str, Any], prediction) -> dict[str, Any]:
        out = {"id": example["id"]} if example.get("id") else {}
        out.update({"question": example["question"], "answer": prediction["text"], "start": prediction["start"],
                    "end": prediction["end"], "score": round(prediction["score"], 4)})
        return out

    # ---- model card --------------------------------------------------------
    def card_usage(self, model_meta: dict[str, Any]) -> list[str]:
        """transformers 5 has no question-answering pipeline: show the plain-model code."""
        return [
            "```python",
            "import torch",
            "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
            'tok = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")',
            'model = AutoModelForQuestionAnswering.from_pretrained("PATH/TO/THIS/FOLDER")',
            'question, context = "Who won?", "The Broncos won the game."',
            'enc = tok(question, context, truncation="only_second", return_offsets_mapping=True, return_tensors="pt")',
            'offsets = enc.pop("offset_mapping")[0].tolist()',
            "in_context = torch.tensor([s == 1 for s in enc.sequence_ids(0)])",
            "with torch.no_grad():",
            "    out = model(**enc)",
            "start = int(out.start_logits[0].masked_fill(~in_context, -1e9).argmax())",
            f"end = start + int(out.end_logits[0, start:start + {self.options.max_answer_length}]"
            f".masked_fill(~in_context[start:start + {self.options.max_answer_length}], -1e9).argmax())",
            "answer = context[offsets[start][0]:offsets[end][1]].strip()",
            "```",
            "This reads one window; `ftkit predict` adds sliding windows over long contexts and the n-best span"
            " search" + (", and appends the EOS token this GPT-2 style model uses as its no-answer position"
                         if model_meta.get("family") == "gpt" else "") + ".",
        ]
