"""Are ftkit's NER entities the ones transformers' pipeline finds with the same model?

ftkit labels a word by its first sub-token (as it trains); `pipeline("token-classification")` with
`aggregation_strategy="first"` applies the same rule, "simple" (the default the speed benchmark uses)
groups sub-tokens by their own tags instead. On the CoNLL-2003 test sentences, with an export folder
(default: the MiniLM NER export bench/onnx_deploy.py writes), this compares `Predictor.predict` (what
`ftkit predict` runs) with the pipeline under both strategies: identical sentences and entity agreement.

    flock /tmp/ftkit-cpu.lock .venv/bin/python bench/ner_entity_parity.py [EXPORT_DIR]
writes bench/results/ner_entity_parity.json.
"""

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from onnx_deploy import conll_sentences  # noqa: E402 (the same sentence list as the ONNX benchmark)

DATA = Path(os.environ.get("DATA", ROOT.parent / "shared" / "data"))


def agreement(ours: list[list], theirs: list[list]) -> dict:
    same = sum(a == b for a, b in zip(ours, theirs))
    both = sum(len({tuple(e) for e in a} & {tuple(e) for e in b}) for a, b in zip(ours, theirs))
    total = sum(len(a) + len(b) for a, b in zip(ours, theirs))
    return {"sentences_identical": same, "sentence_match_rate": round(same / len(ours), 4),
            "entity_agreement_f1": round(2 * both / total, 4) if total else 1.0,
            "ftkit_entities": sum(map(len, ours)), "pipeline_entities": sum(map(len, theirs))}


def main() -> None:
    export = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "runs" / "bench-onnx" / "ner-transformers")
    from transformers import pipeline

    from ftkit.engine.inference import Predictor

    sents = conll_sentences(DATA / "conll2003" / "eng.testb")
    t = time.time()
    preds = Predictor.load(export).predict([{"text": s} for s in sents], batch_size=32)
    res = {"export": str(export), "sentences": len(sents), "ftkit_predict_loop_s": round(time.time() - t, 1)}
    ours = [[[e["label"], e["start"], e["end"]] for e in p["entities"]] for p in preds]
    for strategy in ("first", "simple"):
        pipe = pipeline("token-classification", model=str(export), aggregation_strategy=strategy, device="cpu")
        t = time.time()
        out = pipe(sents, batch_size=32)
        theirs = [[[e["entity_group"], int(e["start"]), int(e["end"])] for e in r] for r in out]
        res[f"pipeline_{strategy}"] = {"loop_s": round(time.time() - t, 1), **agreement(ours, theirs)}
        print(strategy, res[f"pipeline_{strategy}"], flush=True)
    (ROOT / "bench" / "results" / "ner_entity_parity.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
