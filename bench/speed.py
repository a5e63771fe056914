"""Time to result, side by side in one run (issue 15): whole-command wall times of ftkit and of the references.

    flock /tmp/ftkit-cpu.lock .venv/bin/python bench/speed.py [--data DIR] [--only sst2,conll,predict]

- SST-2: the first 2,000 sentences of stsa.binary.train, 1 epoch, batch 32, lr 5e-5, MiniLM; dev (872) and test
  (1,821) scored. Plain Trainer with run_glue's default padding to 128, plain Trainer with dynamic padding
  (bench/baseline_sst2_trainer.py), and `ftkit finetune --task classification`.
- CoNLL-2003: the first 3,000 sentences of eng.train, 1 epoch, MiniLM; dev (eng.testa) and test (eng.testb)
  scored. The course-style dynamic-padding script (bench/baseline_ner_course.py) and `ftkit finetune --task ner`.
- Predict: the MiniLM NER model trained above, exported (`ftkit export`), on the 3,453 eng.testb sentences:
  `ftkit predict` as a whole command (and its loop alone, model loaded, in its own process), against
  `transformers.pipeline("token-classification", aggregation_strategy="simple")` (the loop alone, model loaded)
  at its default batch size and at a few others; the entities of both are compared.

Every command runs with a fresh feature cache (so encoding is measured, as the references tokenize too). Prints
the table with ftkit's timing breakdown beside the references and writes bench/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
FTKIT = str(ROOT / ".venv" / "bin" / "ftkit")
PIPELINE_BATCHES = (8, 32, 64)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env.get("BENCH_CWD"))
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    print(f"  {wall:7.1f}s  {' '.join(Path(c).name if c in (PY, FTKIT) else c for c in cmd)[:150]}", flush=True)
    return wall, r


def json_line(stdout: str) -> dict:
    return json.loads([x for x in stdout.splitlines() if x.startswith("{")][-1])


def ftkit_run(args: list[str], out: Path, env: dict[str, str]) -> dict:
    wall, r = timed([FTKIT, "finetune", *args, "--output", str(out), "--overwrite"], env)
    meta = json.loads((out / "run.json").read_text())
    line = [x for x in r.stderr.splitlines() if x.startswith("time ")]
    return {"command": "ftkit finetune " + " ".join(args), "wall_s": round(wall, 1), "timings": meta["timings"],
            "breakdown": line[-1] if line else None, "metrics": meta["metrics"]}


def sst2(data: Path, tmp: Path, env: dict[str, str]) -> dict:
    d = data / "sst2"
    train = tmp / "sst2_train_2000.txt"
    train.write_text("".join((d / "stsa.binary.train").read_text(encoding="utf-8").splitlines(True)[:2000]))
    base = [PY, str(ROOT / "bench" / "baseline_sst2_trainer.py"), str(d), "--train-n", "2000", "--dev"]
    rows = {}
    for name, extra in (() if env.get("BENCH_FTKIT_ONLY") else
                        (("plain_trainer_pad128", ["--pad-to-128"]), ("plain_trainer_dynamic", []))):
        wall, r = timed(base + extra, env)
        j = json_line(r.stdout)
        rows[name] = {"command": " ".join(["python", "bench/baseline_sst2_trainer.py", *base[2:], *extra]),
                      "wall_s": round(wall, 1), "test_accuracy": j["accuracy"], "dev_accuracy": j.get("dev_accuracy")}
    f = ftkit_run(["--task", "classification", "--model", "minilm", "--train", str(train),
                   "--validation", str(d / "stsa.binary.dev"), "--test", str(d / "stsa.binary.test"),
                   "--epochs", "1", "--batch-size", "32", "--learning-rate", "5e-5",
                   "--set", "task_options.line_format=label_text"], tmp / "run-sst2", env)
    f["test_accuracy"] = round(f["metrics"]["test"]["accuracy"], 4)
    f["dev_accuracy"] = round(f["metrics"]["validation"]["accuracy"], 4)
    rows["ftkit"] = f
    if env.get("BENCH_FTKIT_ONLY"):
        return {"rows": rows}
    ratios = {"vs_pad128": round(rows["plain_trainer_pad128"]["wall_s"] / f["wall_s"], 2),
              "vs_dynamic": round(rows["plain_trainer_dynamic"]["wall_s"] / f["wall_s"], 2)}
    acc_gap = round(rows["plain_trainer_dynamic"]["test_accuracy"] - f["test_accuracy"], 4)
    return {"rows": rows, "speedup": ratios, "test_accuracy_gap_vs_dynamic": acc_gap,
            "targets": {">=4x run_glue default": ratios["vs_pad128"] >= 4, ">=1.3x dynamic": ratios["vs_dynamic"] >= 1.3,
                        "accuracy within 1 point": acc_gap <= 0.01}}


def first_sentences(src: Path, n: int, dst: Path) -> None:
    """The first ``n`` sentences of a CoNLL file (document lines kept)."""
    out, count = [], 0
    for line in src.read_text(encoding="utf-8").splitlines(True):
        if not line.strip():
            if out and out[-1].strip() and not out[-1].startswith("-DOCSTART-"):
                count += 1
            out.append(line)
            if count >= n:
                break
            continue
        out.append(line)
    dst.write_text("".join(out), encoding="utf-8")


def conll(data: Path, tmp: Path, env: dict[str, str]) -> dict:
    d = data / "conll2003"
    train = tmp / "conll_train_3000.txt"
    first_sentences(d / "eng.train", 3000, train)
    f = ftkit_run(["--task", "ner", "--model", "minilm", "--train", str(train), "--validation", str(d / "eng.testa"),
                   "--test", str(d / "eng.testb"), "--epochs", "1"], tmp / "run-conll", env)
    f["test_f1"] = round(f["metrics"]["test"]["f1"], 4)
    f["dev_f1"] = round(f["metrics"]["validation"]["f1"], 4)
    if env.get("BENCH_FTKIT_ONLY"):
        return {"rows": {"ftkit": f}}
    wall, r = timed([PY, str(ROOT / "bench" / "baseline_ner_course.py"), str(d), "--train-n", "3000", "--dev"], env)
    j = json_line(r.stdout)
    course = {"command": f"python bench/baseline_ner_course.py {d} --train-n 3000 --dev", "wall_s": round(wall, 1),
              "test_f1": j["f1"], "dev_f1": j.get("dev_f1")}
    ratio = round(course["wall_s"] / f["wall_s"], 2)
    return {"rows": {"course_dynamic": course, "ftkit": f}, "speedup": {"vs_course": ratio},
            "targets": {">=1.3x course": ratio >= 1.3, "F1 not lower": f["test_f1"] >= course["test_f1"]}}


def conll_sentences(path: Path) -> list[str]:
    sents, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if words:
                sents.append(" ".join(words))
            words = []
        else:
            words.append(cols[0])
    if words:
        sents.append(" ".join(words))
    return sents


def pipeline_side(model: str, inputs: str, out: str) -> None:
    """(in its own process) the pipeline loop at its default batch size and at PIPELINE_BATCHES."""
    import torch
    from transformers import pipeline

    sents = Path(inputs).read_text(encoding="utf-8").splitlines()
    t0 = time.time()
    pipe = pipeline("token-classification", model=model, aggregation_strategy="simple", device="cpu")
    load = time.time() - t0
    runs, ents = {}, None
    for bs in (None, *PIPELINE_BATCHES):
        t0 = time.time()
        res = pipe(sents) if bs is None else pipe(sents, batch_size=bs)
        runs["default" if bs is None else str(bs)] = round(time.time() - t0, 1)
        print(f"  pipeline batch_size={bs or 'default'}: {runs['default' if bs is None else str(bs)]}s", flush=True)
        if ents is None:
            ents = [[[e["entity_group"], int(e["start"]), int(e["end"])] for e in r] for r in res]
    Path(out).write_text(json.dumps({"load_s": round(load, 1), "loop_s": runs, "entities": ents,
                                     "torch_threads": torch.get_num_threads()}))


def ftkit_loop_side(model: str, inputs: str, out: str) -> None:
    """(in its own process) ftkit's prediction loop alone, model loaded: what the pipeline side times."""
    from ftkit.engine.inference import Predictor

    records = [{"text": s} for s in Path(inputs).read_text(encoding="utf-8").splitlines()]
    predictor = Predictor.load(model)
    predictor.predict(records[:64])  # warm-up, as the pipeline's first call is not timed apart either
    t0 = time.time()
    predictor.predict(records, batch_size=32)
    Path(out).write_text(json.dumps({"loop_s": round(time.time() - t0, 1)}))


def entities_of(path: Path) -> list[list[list]]:
    return [[[e["label"], e["start"], e["end"]] for e in json.loads(x)["entities"]]
            for x in path.read_text(encoding="utf-8").splitlines()]


def predict(data: Path, tmp: Path, env: dict[str, str]) -> dict:
    run = tmp / "run-conll"
    if not (run / "run.json").exists():
        sys.exit("predict needs the CoNLL run: run with --only conll,predict")
    export = tmp / "export-ner"
    timed([FTKIT, "export", str(run), "--output", str(export), "--overwrite"], env)
    sents = conll_sentences(data / "conll2003" / "eng.testb")
    inputs = tmp / "conll_test.txt"
    inputs.write_text("".join(s + "\n" for s in sents), encoding="utf-8")
    wall, _ = timed([FTKIT, "predict", str(export), "--input", str(inputs), "--output", str(tmp / "preds.jsonl")], env)
    ours = entities_of(tmp / "preds.jsonl")
    # the pipeline's own grouping of sub-tokens (NER task option aggregation=simple)
    wall_simple, _ = timed([FTKIT, "predict", str(export), "--input", str(inputs), "--output",
                            str(tmp / "preds_simple.jsonl"), "--set", "task_options.aggregation=simple"], env)
    simple = entities_of(tmp / "preds_simple.jsonl")
    if env.get("BENCH_FTKIT_ONLY"):
        return {"sentences": len(sents), "ftkit_predict_wall_s": round(wall, 1)}
    timed([PY, __file__, "--ftkit-loop", str(export), str(inputs), str(tmp / "loop.json")], env)
    loop = json.loads((tmp / "loop.json").read_text())["loop_s"]
    timed([PY, __file__, "--pipeline", str(export), str(inputs), str(tmp / "pipe.json")], env)
    p = json.loads((tmp / "pipe.json").read_text())
    theirs = p["entities"]
    same = sum(a == b for a, b in zip(ours, theirs))
    same_simple = sum(a == b for a, b in zip(simple, theirs))
    both = sum(len({tuple(e) for e in a} & {tuple(e) for e in b}) for a, b in zip(ours, theirs))
    total = sum(len(a) + len(b) for a, b in zip(ours, theirs))
    best_bs, best = min(((k, v) for k, v in p["loop_s"].items() if k != "default"), key=lambda kv: kv[1])
    default = p["loop_s"]["default"]
    return {
        "sentences": len(sents), "ftkit_predict_wall_s": round(wall, 1),
        "pipeline": {"load_s": p["load_s"], "loop_s": p["loop_s"], "best_batch_size": int(best_bs),
                     "torch_threads": p["torch_threads"]},
        "ftkit_predict_loop_s": loop,
        "ftkit_predict_simple_aggregation_wall_s": round(wall_simple, 1),
        "speedup": {"vs_pipeline_default": round(default / wall, 2), "vs_pipeline_best": round(best / wall, 2)},
        "speedup_loop_vs_loop": {"vs_pipeline_default": round(default / loop, 2),
                                 "vs_pipeline_best": round(best / loop, 2)},
        "entities": {"sentences_identical": same, "sentence_match_rate": round(same / len(sents), 4),
                     "entity_agreement_f1": round(2 * both / total, 4) if total else 1.0,
                     "ftkit_entities": sum(map(len, ours)), "pipeline_entities": sum(map(len, theirs)),
                     "simple_aggregation": {"sentences_identical": same_simple,
                                            "sentence_match_rate": round(same_simple / len(sents), 4),
                                            "ftkit_entities": sum(map(len, simple))}},
        "speedup_simple_aggregation": {"vs_pipeline_default": round(default / wall_simple, 2),
                                       "vs_pipeline_best": round(best / wall_simple, 2)},
        "targets": {">=5x pipeline default": default / wall >= 5, ">=1.5x pipeline best": best / wall >= 1.5,
                    "identical entities": same == len(sents),
                    "identical entities (--set task_options.aggregation=simple)": same_simple == len(sents)},
    }


def table(res: dict) -> str:
    lines = ["| benchmark | command | wall s | score | ftkit breakdown |", "|---|---|---|---|---|"]
    if "sst2" in res:
        r = res["sst2"]["rows"]
        for k, label in (("plain_trainer_pad128", "plain Trainer, padding to 128"),
                         ("plain_trainer_dynamic", "plain Trainer, dynamic padding"), ("ftkit", "ftkit finetune")):
            lines.append(f"| SST-2 2,000 | {label} | {r[k]['wall_s']} | acc {r[k]['test_accuracy']:.4f} | "
                         f"{r[k].get('breakdown') or ''} |")
    if "conll" in res:
        r = res["conll"]["rows"]
        for k, label in (("course_dynamic", "course script, dynamic padding"), ("ftkit", "ftkit finetune")):
            lines.append(f"| CoNLL 3,000 | {label} | {r[k]['wall_s']} | F1 {r[k]['test_f1']:.4f} | "
                         f"{r[k].get('breakdown') or ''} |")
    if "predict" in res:
        p = res["predict"]
        lines.append(f"| predict 3,453 | ftkit predict (whole command) | {p['ftkit_predict_wall_s']} | "
                     f"sentences identical {p['entities']['sentence_match_rate']:.2%} | |")
        if "ftkit_predict_simple_aggregation_wall_s" in p:
            lines.append(f"| predict 3,453 | ftkit predict --set task_options.aggregation=simple (whole command) | "
                         f"{p['ftkit_predict_simple_aggregation_wall_s']} | sentences identical "
                         f"{p['entities']['simple_aggregation']['sentence_match_rate']:.2%} | |")
        if "ftkit_predict_loop_s" in p:
            lines.append(f"| predict 3,453 | ftkit predict (loop only) | {p['ftkit_predict_loop_s']} | | |")
        for k, v in p["pipeline"]["loop_s"].items():
            lines.append(f"| predict 3,453 | pipeline batch_size={k} (loop only) | {v} | | |")
    for name in ("sst2", "conll", "predict"):
        if name in res:
            lines.append(f"\n{name}: speed-up {res[name]['speedup']}; targets met {res[name]['targets']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("DATA", "/work/shared/data"))
    ap.add_argument("--only", default="sst2,conll,predict")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "speed.json"))
    ap.add_argument("--ftkit-only", action="store_true", help="ftkit's side only (before/after a change)")
    ap.add_argument("--pipeline", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--ftkit-loop", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.pipeline:
        return pipeline_side(*a.pipeline)
    if a.ftkit_loop:
        return ftkit_loop_side(*a.ftkit_loop)
    data, only = Path(a.data), a.only.split(",")
    res: dict = {"name": "speed", "cpus": os.cpu_count(), "machine": platform.platform(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="ftkit-speed-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   FTKIT_CACHE_DIR=str(tmp / "cache"), BENCH_CWD=str(tmp))
        if a.ftkit_only:
            env["BENCH_FTKIT_ONLY"] = "1"
        for name, fn in (("sst2", sst2), ("conll", conll), ("predict", predict)):
            if name in only:
                print(f"{name}:", flush=True)
                res[name] = fn(data, tmp, env)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2) if a.ftkit_only else table(res))


if __name__ == "__main__":
    main()
