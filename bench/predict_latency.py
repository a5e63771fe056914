"""Before/after of the prediction loop alone (issue 15): `Predictor.predict` per call and over a file.

    flock /tmp/ftkit-cpu.lock .venv/bin/python bench/predict_latency.py MODEL_DIR SENTENCES.txt LABEL OUT.json

Loads ``MODEL_DIR`` (an NER export) once, then times ``Predictor.predict`` on one sentence (50 calls: what
`ftkit serve` pays per small request batch) and on all sentences at batch 32 (the loop of `ftkit predict`).
Run it once with the code before a change (``PYTHONPATH=<old checkout>/src``) and once after; the label
names the side. Results are merged into OUT.json under ``LABEL``.
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import ftkit
from ftkit.engine.inference import Predictor

model, sentences, label, out = sys.argv[1:5]
sents = [s for s in Path(sentences).read_text(encoding="utf-8").splitlines() if s.strip()]
p = Predictor.load(model)
p.predict([{"text": sents[0]}])  # warm-up
one = []
for s in sents[:50]:
    t0 = time.perf_counter()
    p.predict([{"text": s}])
    one.append(time.perf_counter() - t0)
t0 = time.perf_counter()
res = p.predict([{"text": s} for s in sents], batch_size=32)
loop = time.perf_counter() - t0
entities = [[[e["label"], e["start"], e["end"]] for e in r["entities"]] for r in res]
row = {"ftkit_source": str(Path(ftkit.__file__).parent), "torch_threads": torch.get_num_threads(),
       "one_sentence_ms_median": round(1000 * statistics.median(one), 1), "sentences": len(sents),
       "file_loop_s": round(loop, 2), "entities": sum(map(len, entities))}
path = Path(out)
data = json.loads(path.read_text()) if path.exists() else {}
data[label] = row
side = Path(tempfile.gettempdir()) / "ftkit-predict-latency"
side.mkdir(exist_ok=True)
(side / f"{label}.json").write_text(json.dumps(entities))
if {"before", "after"} <= set(data):
    b, a = data["before"], data["after"]
    same = json.loads((side / "before.json").read_text()) == json.loads((side / "after.json").read_text())
    data["speedup"] = {"one_sentence": round(b["one_sentence_ms_median"] / a["one_sentence_ms_median"], 2),
                       "file_loop": round(b["file_loop_s"] / a["file_loop_s"], 2), "identical_entities": same}
path.write_text(json.dumps(data, indent=2) + "\n")
print(json.dumps(data, indent=2))
