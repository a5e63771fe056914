"""Request models of ``POST /predict``: per task, the input shapes ``ftkit predict`` reads.

``{"inputs": [...]}``, each input either a string (a text line, as ``ftkit predict`` reads plain text:
``{"text": line}``) or an object with the task's fields. Unknown fields and wrong types are rejected by
pydantic with the path of the field (``inputs[2].context``), so a typo is a 422, never a silently empty
prediction. A task without a model here (a plugin) takes any JSON object and its own
``predict_rows`` or ``predict_examples`` validates it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, model_validator
from pydantic_core import PydanticCustomError


class InputRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_record(self, task) -> dict[str, Any]:
        """The record as ``ftkit predict`` would read it from a JSONL line."""
        return self.model_dump(exclude_none=True)


class OneOfInput(InputRecord):
    """A record with exactly one of the two fields in ``one_of``."""

    one_of: ClassVar[tuple[str, str]]

    @model_validator(mode="after")
    def _exactly_one(self):
        a, b = self.one_of
        if (getattr(self, a) is None) == (getattr(self, b) is None):
            raise PydanticCustomError("one_of", "give exactly one of '{a}' or '{b}'", {"a": a, "b": b})
        return self


class NerInput(OneOfInput):
    """Raw text (split into words by ftkit) or pre-split ``tokens``."""

    one_of = ("text", "tokens")
    text: Optional[StrictStr] = None
    tokens: Optional[list[StrictStr]] = None


class ClassificationInput(InputRecord):
    """A text, plus ``text_pair`` for models trained on sentence pairs."""

    text: StrictStr
    text_pair: Optional[StrictStr] = None


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: StrictInt = Field(ge=0)
    end: StrictInt = Field(ge=0)
    type: Optional[StrictStr] = None


class RelationInput(InputRecord):
    """Text with ``<e1>..</e1>``/``<e2>..</e2>`` markers, or plain text with ``head``/``tail`` character spans."""

    text: StrictStr
    head: Optional[Span] = None
    tail: Optional[Span] = None
    id: Optional[Union[StrictStr, StrictInt]] = None

    def to_record(self, task) -> dict[str, Any]:
        # the model's own field names (task_options.text_field/head_field/tail_field) as its JSONL reads them
        o = task.options
        rec = {o.text_field: self.text}
        for name, span in ((o.head_field, self.head), (o.tail_field, self.tail)):
            if span is not None:
                rec[name] = span.model_dump(exclude_none=True)
        if self.id is not None:
            rec["id"] = self.id
        return rec


class QAInput(InputRecord):
    """A question about a context; ``id`` is passed through to the answer."""

    question: StrictStr
    context: StrictStr
    id: Optional[Union[StrictStr, StrictInt]] = None


class TranslationInput(OneOfInput):
    """A source sentence (``text`` is accepted too, as a plain line is)."""

    one_of = ("source", "text")
    source: Optional[StrictStr] = None
    text: Optional[StrictStr] = None


class AnyInput(InputRecord):
    """A plugin task's record: any JSON object; the task's ``check_predict_records`` checks it."""

    model_config = ConfigDict(extra="allow")


#: task name -> (input model, whether a plain string is an input)
INPUTS: dict[str, tuple[type[InputRecord], bool]] = {
    "ner": (NerInput, True),
    "classification": (ClassificationInput, True),
    "relation": (RelationInput, True),
    "qa": (QAInput, False),
    "translation": (TranslationInput, True),
}

EXAMPLES: dict[str, list[Any]] = {
    "ner": ["EU rejects German call to boycott British lamb .", {"tokens": ["Peter", "Blackburn"]}],
    "classification": ["a gripping , beautifully acted film", {"text": "A man plays.", "text_pair": "Someone plays."}],
    "relation": ["The <e1>company</e1> fabricates plastic <e2>chairs</e2>.",
                 {"text": "Bill Gates founded Microsoft.", "head": {"start": 0, "end": 10, "type": "PERSON"},
                  "tail": {"start": 19, "end": 28, "type": "ORG"}}],
    "qa": [{"question": "Who won?", "context": "The Broncos won the game."}],
    "translation": ["A man is playing a guitar.", {"source": "Two dogs run on the beach."}],
}


def input_model(task_name: str) -> tuple[type[InputRecord], bool]:
    return INPUTS.get(task_name, (AnyInput, True))


def request_model(task_name: str) -> type[BaseModel]:
    """The body model of ``POST /predict`` for a task."""
    record, strings = input_model(task_name)

    def text_line(value: Any) -> Any:
        if isinstance(value, str):
            if not strings:
                raise PydanticCustomError("object_expected", "{task} inputs are objects with the fields {fields}",
                                          {"task": task_name, "fields": ", ".join(record.model_fields)})
            return {"text": value}
        if not isinstance(value, (dict, BaseModel)):
            shape = "a text string or an object" if strings else "an object"
            raise PydanticCustomError("input_type", "an input is {shape} with the fields {fields}, not {kind}",
                                      {"shape": shape, "fields": ", ".join(record.model_fields),
                                       "kind": type(value).__name__})
        return value

    item = Annotated[record, BeforeValidator(text_line, json_schema_input_type=Union[str, record] if strings else record)]

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": EXAMPLES.get(task_name, ["text"])}]})
        inputs: list[item] = Field(min_length=1, description=f"{task_name} inputs, the shapes `ftkit predict` reads")

    PredictRequest.__name__ = PredictRequest.__qualname__ = f"{task_name.capitalize()}PredictRequest"
    return PredictRequest


def input_chars(record: dict[str, Any]) -> int:
    """Characters of text in one input record (all its strings, nested lists and objects included)."""
    if isinstance(record, str):
        return len(record)
    if isinstance(record, dict):
        return sum(input_chars(v) for v in record.values())
    if isinstance(record, (list, tuple)):
        return sum(input_chars(v) for v in record)
    return 0


def field_path(loc: tuple) -> str:
    """``("body", "inputs", 2, "context")`` -> ``inputs[2].context`` (a JSON body's own path)."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"
