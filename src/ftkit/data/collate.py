"""The one collator: keep the columns a task declares, pad them with the matching transformers collator.

Features carry bookkeeping columns (``example_id``, ``length``, ``word_ids``, ``offsets``...) that
decoding needs and the model must never see; a task declares its model columns
(``Task.model_columns``) and how its labels are padded (``Task.label_padding``).
"""

from __future__ import annotations

from typing import Any, Sequence


class ColumnCollator:
    """``features -> batch``: drop every column not in ``columns``, then pad.

    ``label_padding``: ``none`` (one label per example), ``tokens`` (per-token labels padded
    with -100), ``seq2seq`` (target sequences padded with -100). ``float_labels`` casts the
    labels to float (multi-label BCE, regression).
    """

    def __init__(self, tokenizer, columns: Sequence[str], label_padding: str = "none", float_labels: bool = False):
        from transformers import DataCollatorForSeq2Seq, DataCollatorForTokenClassification, DataCollatorWithPadding

        if label_padding == "tokens":
            self.base = DataCollatorForTokenClassification(tokenizer)
        elif label_padding == "seq2seq":
            self.base = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
        elif label_padding == "none":
            self.base = DataCollatorWithPadding(tokenizer)
        else:
            raise ValueError(f"unknown label_padding {label_padding!r}")
        self.columns = frozenset(columns)
        self.float_labels = float_labels

    def __call__(self, features: list[dict[str, Any]]):
        batch = self.base([{k: v for k, v in f.items() if k in self.columns} for f in features])
        if self.float_labels and "labels" in batch:
            batch["labels"] = batch["labels"].float()
        return batch
