"""ONNX deployment, side by side in one run: quality of int8 vs fp32, prediction speed, parity.

Needs two trained MiniLM runs (paths overridable):
  NER_RUN  (default runs/bench-ner_conll2003: bench/ner_conll2003.sh, 1 epoch on full CoNLL-2003)
  SST2_RUN (default runs/bench-lora-sst2-full: bench/lora_sst2.py full, 1 epoch on full SST-2)

1. export each run as transformers (safetensors), ONNX fp32 and ONNX int8 (`ftkit export`);
2. quality: `ftkit eval DIR --data TEST --json` for the run (PyTorch), ONNX fp32 and ONNX int8: entity F1 on
   the CoNLL-2003 test set (3,453 sentences), accuracy on the SST-2 test set (1,821 sentences);
3. speed: `ftkit predict` on the 3,453 CoNLL-2003 test sentences, batch 32: PyTorch eager, ONNX fp32,
   ONNX int8 (end to end, the command as a user runs it, and the predict loop alone in one process: the
   three in turn, five rounds, the best of each), and
   `transformers.pipeline("token-classification", aggregation_strategy="simple", batch_size=32)` on the
   exported folder;
4. parity: raw logits of ONNX fp32 vs PyTorch on 64 real test sentences of each task (max abs diff) and
   identical predictions.

Writes bench/results/onnx_deploy.json. Run under the CPU lock:
  flock /tmp/ftkit-cpu.lock .venv/bin/python bench/onnx_deploy.py
  flock /tmp/ftkit-cpu.lock .venv/bin/python bench/onnx_deploy.py --speed-only   # step 3 again, same exports
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DATA", "/work/shared/data"))
NER_RUN = Path(os.environ.get("NER_RUN", ROOT / "runs" / "bench-ner_conll2003"))
SST2_RUN = Path(os.environ.get("SST2_RUN", ROOT / "runs" / "bench-lora-sst2-full"))
CONLL_TEST = DATA / "conll2003" / "eng.testb"
SST2_TEST = DATA / "sst2" / "stsa.binary.test"
OUT = ROOT / "runs" / "bench-onnx"
FTKIT = str(ROOT / ".venv" / "bin" / "ftkit")
ENV = dict(os.environ, HF_HUB_OFFLINE="1")
#: predict-loop timings per backend (taken in turns; the best is reported)
ROUNDS = int(os.environ.get("ROUNDS", "5"))


def sh(*args, **kw) -> tuple[subprocess.CompletedProcess, float]:
    t = time.time()
    r = subprocess.run(list(map(str, args)), env=ENV, cwd=ROOT, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")
    return r, time.time() - t


def conll_sentences(path: Path) -> list[str]:
    sents, cur = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            if cur:
                sents.append(" ".join(cur))
                cur = []
        elif not line.startswith("-DOCSTART-"):
            cur.append(line.split()[0])
    if cur:
        sents.append(" ".join(cur))
    return sents


def export_all(run: Path, name: str) -> dict[str, Path]:
    dirs = {"pytorch": run}
    for kind, flags in (("transformers", []), ("onnx", ["--format", "onnx"]),
                        ("onnx_int8", ["--format", "onnx", "--quantize", "int8"])):
        d = OUT / f"{name}-{kind}"
        _, wall = sh(FTKIT, "export", run, "--output", d, "--overwrite", *flags)
        print(f"  export {name} {kind}: {wall:.1f}s, {sum(f.stat().st_size for f in d.iterdir()) / 1e6:.1f} MB",
              flush=True)
        dirs[kind] = d
    return dirs


def quality(dirs: dict[str, Path], data: Path, keys: list[str]) -> dict:
    out = {}
    for kind in ("pytorch", "onnx", "onnx_int8"):
        r, wall = sh(FTKIT, "eval", dirs[kind], "--data", data, "--json")
        m = json.loads(r.stdout)
        out[kind] = {**{k: round(m[k], 4) for k in keys}, "eval_wall_s": round(wall, 1)}
        print(f"  {kind}: {out[kind]}", flush=True)
    return out


def speed(dirs: dict[str, Path], sentences: list[str]) -> dict:
    from ftkit.engine.inference import Predictor

    inputs = OUT / "conll_test_sentences.txt"
    inputs.write_text("\n".join(sentences) + "\n")
    n = len(sentences)
    records = [{"text": s} for s in sentences]
    res, predictors = {}, {}
    for kind in ("pytorch", "onnx", "onnx_int8"):
        _, wall = sh(FTKIT, "predict", dirs[kind], "--input", inputs, "--output", OUT / f"pred-{kind}.jsonl",
                     "--batch-size", 32)
        res[kind] = {"cli_wall_s": round(wall, 1), "cli_sentences_per_s": round(n / wall, 1)}
        predictors[kind] = Predictor.load(dirs[kind])
        predictors[kind].predict(records[:64])  # warm-up
    # the predict loop alone, the three backends in turn, ROUNDS times: the best of each (this machine's
    # neighbours make single timings vary by 20%; taking turns exposes every backend to the same noise)
    loops: dict[str, list[float]] = {kind: [] for kind in predictors}
    for _ in range(ROUNDS):
        for kind, p in predictors.items():
            t = time.time()
            p.predict(records, batch_size=32)
            loops[kind].append(time.time() - t)
    for kind in predictors:
        loop = min(loops[kind])
        res[kind].update({"predict_loop_s": round(loop, 2), "predict_loop_rounds_s": [round(x, 2) for x in loops[kind]],
                          "sentences_per_s": round(n / loop, 1)})
        print(f"  {kind}: {res[kind]}", flush=True)
    del predictors
    import torch
    from transformers import pipeline

    nlp = pipeline("token-classification", model=str(dirs["transformers"]), aggregation_strategy="simple",
                   batch_size=32, device=-1)
    nlp(sentences[:64])
    t = time.time()
    with torch.inference_mode():
        nlp(sentences)
    loop = time.time() - t
    res["transformers_pipeline"] = {"predict_loop_s": round(loop, 1), "sentences_per_s": round(n / loop, 1)}
    print(f"  pipeline: {res['transformers_pipeline']}", flush=True)
    base = res["pytorch"]["sentences_per_s"]
    res["int8_vs_eager_predict_loop"] = round(res["onnx_int8"]["sentences_per_s"] / base, 2)
    rounds = [a / b for a, b in zip(loops["pytorch"], loops["onnx_int8"])]  # the same round, side by side
    res["int8_vs_eager_each_round"] = [round(r, 2) for r in rounds]
    res["int8_vs_eager_median_round"] = round(statistics.median(rounds), 2)
    res["onnx_fp32_vs_eager_predict_loop"] = round(res["onnx"]["sentences_per_s"] / base, 2)
    res["int8_vs_eager_cli"] = round(res["onnx_int8"]["cli_sentences_per_s"] / res["pytorch"]["cli_sentences_per_s"], 2)
    return res


def parity(dirs: dict[str, Path], records: list[dict]) -> dict:
    import torch

    from ftkit.engine.inference import Predictor

    eager, onnx = Predictor.load(dirs["pytorch"]), Predictor.load(dirs["onnx"])
    examples = eager.task.predict_examples(records)
    features = eager.task.encode(examples, eager.tokenizer, eager.facts, train=False)
    batch = eager.task.collator(eager.tokenizer, eager.facts)([features[i] for i in range(len(features))])
    with torch.no_grad():
        ref = eager.model(**{k: batch[k] for k in onnx.model.input_names})
    got = onnx.model.run(batch)
    diff = max(float(np.abs(g - ref[k].numpy()).max()) for g, k in zip(got, onnx.model.output_names))
    same = eager.predict(records) == onnx.predict(records)
    return {"sentences": len(records), "max_abs_diff_logits": diff, "identical_predictions": same}


RESULT = ROOT / "bench" / "results" / "onnx_deploy.json"


def save(result: dict) -> None:
    """Written after every stage: an interrupted run keeps what it measured."""
    RESULT.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["--speed-only"]:  # the speed part again, on the exports of an earlier full run
        result = json.loads(RESULT.read_text())
        run = Path(result.get("ner_run", NER_RUN))  # the run the exports were made from
        dirs = {"pytorch": run if run.is_absolute() else ROOT / run,
                **{k: OUT / f"ner-{k}" for k in ("transformers", "onnx", "onnx_int8")}}
        print("== speed (3,453 CoNLL-2003 test sentences, batch 32)", flush=True)
        result["speed_conll2003_test"] = speed(dirs, conll_sentences(CONLL_TEST))
        save(result)
        print(json.dumps(result["speed_conll2003_test"], indent=2))
        return
    result: dict = {"cpus": os.cpu_count(), "ner_run": str(NER_RUN), "sst2_run": str(SST2_RUN)}
    sentences = conll_sentences(CONLL_TEST)
    assert len(sentences) == 3453, len(sentences)
    print("== exports", flush=True)
    ner, sst2 = export_all(NER_RUN, "ner"), export_all(SST2_RUN, "sst2")
    result["model_mb"] = {k: round(sum(f.stat().st_size for f in d.iterdir() if f.suffix in (".onnx", ".safetensors"))
                                   / 1e6, 1) for k, d in ner.items() if k != "pytorch"}
    print("== parity (64 real test sentences)", flush=True)
    sst2_lines = [{"text": line.split(" ", 1)[1]} for line in SST2_TEST.read_text().splitlines()[:64]]
    result["parity"] = {"ner": parity(ner, [{"text": s} for s in sentences[:64]]), "sst2": parity(sst2, sst2_lines)}
    print(json.dumps(result["parity"]), flush=True)
    save(result)
    print("== quality", flush=True)
    result["quality"] = {"ner_conll2003_test": quality(ner, CONLL_TEST, ["f1", "precision", "recall"]),
                         "sst2_test": quality(sst2, SST2_TEST, ["accuracy", "f1"])}
    q = result["quality"]
    result["int8_minus_fp32_points"] = {
        "ner_f1": round(100 * (q["ner_conll2003_test"]["onnx_int8"]["f1"] - q["ner_conll2003_test"]["onnx"]["f1"]), 2),
        "sst2_accuracy": round(100 * (q["sst2_test"]["onnx_int8"]["accuracy"] - q["sst2_test"]["onnx"]["accuracy"]), 2)}
    save(result)
    print("== speed (3,453 CoNLL-2003 test sentences, batch 32)", flush=True)
    result["speed_conll2003_test"] = speed(ner, sentences)
    save(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
