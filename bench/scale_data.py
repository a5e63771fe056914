"""Corpora larger than memory: peak RSS and wall time of `ftkit validate` and `ftkit finetune` as data grows.

Run through `bench/scale_data.sh` (which holds the CPU lock). Generates, under bench/.scale_data/
(never committed):

- CoNLL-2003 eng.train repeated to 15,000 and to 1,000,000 sentences (the -DOCSTART- lines dropped);
- a 1,000,000-line classification JSONL (SST-2 stsa.binary.train sentences repeated);
- a 200,000-record flat QA JSONL (SQuAD v1.1 dev questions repeated, ids made unique).

For each corpus: `ftkit validate`, a first `ftkit finetune --max-steps 10` (MiniLM, empty caches), the
second one (cache hit), each under `/usr/bin/time -v` (peak RSS = "Maximum resident set size" of the
largest process, wall = "Elapsed"); the finetune logs give the read+lint time ("data read and checked")
and the encode time ("features ready"). On the large CoNLL and classification corpora the first
finetune runs again with `--workers 1`, for the read+lint+encode throughput of 2 workers against 1.
Results: bench/results/scale_data.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".scale_data"
DATA = Path(os.environ.get("DATA") or next((p for p in (ROOT.parent / "shared" / "data", Path("/work/shared/data")) if p.exists()), ROOT.parent / "shared" / "data"))
FTKIT = str(ROOT / ".venv" / "bin" / "ftkit")
SIZES = [int(x) for x in os.environ.get("CONLL_SIZES", "15000,1000000").split(",")]
ONLY = os.environ.get("ONLY")  # "workers": only the --workers 2 / --workers 1 comparison on the largest CoNLL
CLS_LINES = int(os.environ.get("CLS_LINES", "1000000"))
QA_RECORDS = int(os.environ.get("QA_RECORDS", "200000"))


def conll(n: int) -> Path:
    out = WORK / f"conll_{n}.txt"
    if out.exists():
        return out
    text = (DATA / "conll2003" / "eng.train").read_text(encoding="utf-8")
    sentences = [s.strip("\n") for s in text.split("\n\n") if s.strip() and not s.startswith("-DOCSTART-")]
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(sentences[i % len(sentences)] + "\n\n")
    return out


def classification(n: int) -> Path:
    out = WORK / f"sst2_{n}.jsonl"
    if out.exists():
        return out
    lines = [line.split(" ", 1) for line in (DATA / "sst2" / "stsa.binary.train").read_text().splitlines() if line]
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            label, text = lines[i % len(lines)]
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    return out


def qa(n: int) -> Path:
    out = WORK / f"squad_{n}.jsonl"
    if out.exists():
        return out
    doc = json.loads((DATA / "squad_v1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    flat = [{"id": q["id"], "title": a["title"], "context": p["context"], "question": q["question"],
             "answers": {"text": [x["text"] for x in q["answers"]],
                         "answer_start": [x["answer_start"] for x in q["answers"]]}}
            for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]]
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            r = flat[i % len(flat)]
            f.write(json.dumps({**r, "id": f"{r['id']}-{i // len(flat)}"}) + "\n")
    return out


def timed(args: list[str], env: dict[str, str]) -> dict:
    """Run a command under /usr/bin/time -v: exit code, wall seconds, peak RSS in GB, ftkit's timing lines."""
    started = time.time()
    p = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True, env={**os.environ, **env})
    wall = time.time() - started
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", p.stderr)
    out = {"exit": p.returncode, "wall_s": round(wall, 1), "peak_rss_gb": round(rss_kb / 1024 / 1024, 3),
           # (user + system) / wall over the whole command: 200% is both cores busy all the time
           "cpu_percent": int(cpu.group(1)) if cpu else None}
    for key, pattern in (("read_s", r"data read and checked in ([\d.]+)s"), ("encode_s", r"features ready in ([\d.]+)s")):
        m = re.search(pattern, p.stderr)
        if m:
            out[key] = float(m.group(1))
    if "read_s" in out and "encode_s" in out:
        out["read_encode_s"] = round(out["read_s"] + out["encode_s"], 1)
    if p.returncode not in (0, 1):
        out["stderr_tail"] = p.stderr.strip().splitlines()[-3:]
    print(f"  {' '.join(args[1:4])} ... -> {out}", file=sys.stderr, flush=True)
    return out


def corpus(name: str, task: str, path: Path, units: int, extra: list[str], workers_compare: bool) -> dict:
    cache = WORK / f"cache-{name}"
    env = {"FTKIT_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = WORK / f"run-{name}"
    result: dict = {"task": task, "file": path.name, "bytes": path.stat().st_size, "examples": units}
    print(f"{name}: {units} examples, {path.stat().st_size / 1e6:.0f} MB", file=sys.stderr, flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    result["validate"] = timed([FTKIT, "validate", "--task", task, "--train", str(path), *extra], env)
    finetune = [FTKIT, "finetune", "--task", task, "--model", "minilm", "--train", str(path), "--max-steps", "10",
                "--output", str(run), "--overwrite", *extra]
    shutil.rmtree(cache, ignore_errors=True)  # the first finetune reads and encodes everything
    result["finetune_first"] = timed(finetune, env)
    result["finetune_cached"] = timed(finetune, env)
    first, cached = result["finetune_first"], result["finetune_cached"]
    if "read_encode_s" in first and "read_encode_s" in cached:
        result["cached_read_encode_fraction"] = round(cached["read_encode_s"] / first["read_encode_s"], 4)
    if workers_compare:
        shutil.rmtree(cache, ignore_errors=True)
        result["finetune_first_workers_1"] = timed(finetune + ["--workers", "1"], env)
        one = result["finetune_first_workers_1"]
        if "read_encode_s" in one and "read_encode_s" in first:
            result["workers_2_speedup"] = round(one["read_encode_s"] / first["read_encode_s"], 2)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    return result


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": {"cpus": os.cpu_count(), "workers_default": len(os.sched_getaffinity(0))},
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "corpora": {}}
    out = ROOT / "bench" / "results" / "scale_data.json"

    def save():
        out.write_text(json.dumps(results, indent=2) + "\n")

    if ONLY == "workers":
        n = max(SIZES)
        path, cache = conll(n), WORK / "cache-workers"
        env = {"FTKIT_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        runs: dict = {"2": [], "1": []}
        for _ in range(int(os.environ.get("REPEAT", "1"))):
            for w in ("2", "1"):
                shutil.rmtree(cache, ignore_errors=True)
                runs[w].append(timed([FTKIT, "finetune", "--task", "ner", "--model", "minilm", "--train", str(path),
                                      "--max-steps", "10", "--output", str(WORK / "run-workers"), "--overwrite",
                                      "--workers", w], env))
        shutil.rmtree(cache, ignore_errors=True)
        best = {w: min(r["read_encode_s"] for r in rs) for w, rs in runs.items()}
        results = json.loads(out.read_text()) if out.exists() else results
        results["workers_rerun"] = {"corpus": f"conll_{n}", "runs": runs, "best_read_encode_s": best,
                                    "workers_2_speedup": round(best["1"] / best["2"], 2),
                                    "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        save()
        print(json.dumps(results["workers_rerun"], indent=2))
        return
    for n in SIZES:
        results["corpora"][f"conll_{n}"] = corpus(f"conll_{n}", "ner", conll(n), n, [], n == max(SIZES))
        save()
    results["corpora"][f"classification_{CLS_LINES}"] = corpus(
        f"classification_{CLS_LINES}", "classification", classification(CLS_LINES), CLS_LINES, [], True)
    save()
    results["corpora"][f"qa_{QA_RECORDS}"] = corpus(f"qa_{QA_RECORDS}", "qa", qa(QA_RECORDS), QA_RECORDS, [], False)
    c = results["corpora"]
    small, large = c.get(f"conll_{min(SIZES)}"), c.get(f"conll_{max(SIZES)}")
    if small and large and small is not large:
        results["targets"] = {
            "rss_ratio_validate": round(large["validate"]["peak_rss_gb"] / small["validate"]["peak_rss_gb"], 2),
            "rss_ratio_finetune": round(large["finetune_first"]["peak_rss_gb"] / small["finetune_first"]["peak_rss_gb"], 2),
            "rss_ratio_target": 1.5,
            "workers_2_speedup": {k: v.get("workers_2_speedup") for k, v in c.items() if "workers_2_speedup" in v},
            "workers_2_speedup_target": 1.6,
            "cached_read_encode_fraction": {k: v.get("cached_read_encode_fraction") for k, v in c.items()},
            "cached_read_encode_fraction_target": 0.05,
        }
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    print(json.dumps(results.get("targets", {}), indent=2))


if __name__ == "__main__":
    main()
