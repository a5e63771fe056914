"""Where to cut a set of inputs into forward passes: the cost model of `ftkit.engine.batched.plan_batches`,
measured, and what the plan buys against one pass per `batch_size` inputs.

1. The cost of one forward pass of the MiniLM NER export on this machine for a grid of (inputs, sub-tokens):
   a least-squares fit `ms = a + b * inputs * positions` gives the per-pass cost in positions (a / b), the
   constant `CPU_PASS_POSITIONS` stands for.
2. `Predictor.predict` on random groups of 32 and 64 CoNLL-2003 test sentences (what `ftkit serve` hands the
   model under load: inputs of any length), with the plan and with every group as one pass (padded to its
   longest sentence), interleaved, best of 3; and on the whole test set (3,453 sentences, batch 32), where
   sorted batches are alike and the plan should change little.

    flock /tmp/ftkit-cpu.lock .venv/bin/python bench/batch_plan.py [--model runs/serve-bench-ner-export]

Writes bench/results/batch_plan.json.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def pass_costs(model_dir: str) -> dict:
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode():
        for n, length in [(1, 16), (4, 16), (8, 16), (32, 16), (1, 64), (8, 64), (32, 64), (8, 128), (32, 128)]:
            x = {"input_ids": torch.randint(1000, 2000, (n, length)),
                 "attention_mask": torch.ones(n, length, dtype=torch.long)}
            for _ in range(3):
                model(**x)
            best = min(_timed(lambda: model(**x)) for _ in range(10))
            rows.append({"inputs": n, "positions": length, "ms": round(best * 1000, 2)})
    return {"passes": rows, **fit(rows)}


def fit(rows: list[dict]) -> dict:
    """``ms = a + b * inputs * positions``, least squares on relative errors (each pass weighs alike: plain
    least squares would fit the 650 ms passes and leave the 8 ms ones, where the fixed cost shows, to chance)."""
    w = np.array([1 / r["ms"] for r in rows])
    x = np.array([[1.0, r["inputs"] * r["positions"]] for r in rows]) * w[:, None]
    a, b = np.linalg.lstsq(x, np.array([r["ms"] for r in rows]) * w, rcond=None)[0]
    return {"fit_ms_per_pass": round(float(a), 2), "fit_ms_per_position": round(float(b), 4),
            "pass_cost_in_positions": round(float(a / b), 1)}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def predict_times(model_dir: str, data: Path) -> dict:
    from serve_load import conll_sentences

    from ftkit.engine import batched
    from ftkit.engine.inference import Predictor

    sentences = conll_sentences(data)
    records = [{"text": s} for s in sentences]
    predictor = Predictor.load(model_dir)
    predictor.predict(records[:64])
    rng = random.Random(0)
    shuffled = rng.sample(records, len(records))

    def run(groups, batch_size, planned: bool) -> float:
        limit = batched.PLAN_LIMIT
        batched.PLAN_LIMIT = limit if planned else 0  # 0: every batch_size inputs one pass, as before the plan
        try:
            return _timed(lambda: [predictor.predict(g, batch_size=batch_size) for g in groups])
        finally:
            batched.PLAN_LIMIT = limit

    out = {}
    for size in (32, 64):
        groups = [shuffled[i:i + size] for i in range(0, 1600, size)]
        times = {"planned": [], "one_pass_per_group": []}
        for _ in range(3):
            times["planned"].append(run(groups, size, True))
            times["one_pass_per_group"].append(run(groups, size, False))
        n = sum(len(g) for g in groups)
        best = {k: min(v) for k, v in times.items()}
        out[f"random_groups_of_{size}"] = {
            "sentences": n, **{f"{k}_s": round(v, 2) for k, v in best.items()},
            **{f"{k}_sentences_per_s": round(n / v, 1) for k, v in best.items()},
            "speedup": round(best["one_pass_per_group"] / best["planned"], 2)}
        print(out[f"random_groups_of_{size}"], flush=True)
    times = {"planned": [], "fixed_chunks": []}
    for _ in range(2):
        times["planned"].append(run([records], 32, True))
        times["fixed_chunks"].append(run([records], 32, False))
    best = {k: min(v) for k, v in times.items()}
    out["whole_test_set_batch_32"] = {"sentences": len(records), **{f"{k}_s": round(v, 2) for k, v in best.items()},
                                      "speedup": round(best["fixed_chunks"] / best["planned"], 2)}
    print(out["whole_test_set_batch_32"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "runs/serve-bench-ner-export"))
    ap.add_argument("--data", default=os.path.join(os.environ.get("DATA", str(ROOT.parent / "shared/data")),
                                                   "conll2003/eng.testb"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    from ftkit.engine.batched import CPU_PASS_POSITIONS

    datasets.disable_progress_bars()
    result = {"name": "batch_plan", "model": args.model, "cpus": os.cpu_count(),
              "cpu_pass_positions_constant": CPU_PASS_POSITIONS}
    result["pass_cost"] = pass_costs(args.model)
    print(json.dumps(result["pass_cost"]), flush=True)
    result["predict"] = predict_times(args.model, Path(args.data))
    path = ROOT / "bench/results/batch_plan.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
