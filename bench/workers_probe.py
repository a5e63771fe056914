"""Read + lint + encode throughput, --workers 1 vs 2 (issue 9's target: 2 workers >= 1.6x one), on CoNLL-2003
eng.train repeated to N sentences, in one process through the engine's own functions, cache off.

    flock /tmp/ftkit-cpu.lock .venv/bin/python bench/workers_probe.py 1000000 2,1
writes bench/results/scale_data_workers.json (run it on a quiet machine: both cores are measured)."""
import json
import os, sys, time, tempfile
from pathlib import Path
os.environ["FTKIT_CACHE_DIR"] = tempfile.mkdtemp()
n = int(sys.argv[1]); order = sys.argv[2].split(",")
src = (Path(os.environ.get("DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "conll2003" / "eng.train").read_text().split("\n\n")
blocks = [b for b in src if b.strip() and not b.startswith("-DOCSTART-")]
out = Path(tempfile.mkdtemp()) / f"conll_{n}.txt"
with out.open("w") as f:
    for i in range(n):
        f.write(blocks[i % len(blocks)].strip() + "\n\n")
from ftkit.config import resolve
from ftkit.engine.splits import read_splits
from ftkit.engine.models import load_facts
from ftkit.engine.feature_cache import encode_cached
from ftkit.tasks import make_task
results = {"sentences": n, "cpus": os.cpu_count(), "runs": []}
for w in order:
    w = int(w)
    os.environ["FTKIT_CACHE_DIR"] = tempfile.mkdtemp()
    cfg, _ = resolve("ner", None, {"data.train": str(out), "data.workers": w})
    task = make_task("ner", cfg.task_options, "probe")
    t = time.time(); task, splits, labels = read_splits(task, cfg); tr = time.time() - t
    info, task, facts, tok = load_facts(cfg, task, splits["train"], labels)
    t = time.time(); feats = encode_cached(task, facts, splits["train"], tok, train=True, workers=w); te = time.time() - t
    print(f"workers {w}: read {tr:.1f}s encode {te:.1f}s total {tr+te:.1f}s ({len(feats)} features)", flush=True)
    results["runs"].append({"workers": w, "read_lint_s": round(tr, 1), "encode_s": round(te, 1),
                            "total_s": round(tr + te, 1), "features": len(feats)})
best = {w: min(r["total_s"] for r in results["runs"] if r["workers"] == w) for w in {r["workers"] for r in results["runs"]}}
if 1 in best and 2 in best:
    results["speedup_2_vs_1"] = round(best[1] / best[2], 2)
    print("workers 2 vs 1:", results["speedup_2_vs_1"])
res = Path(__file__).resolve().parent / "results" / "scale_data_workers.json"
res.write_text(json.dumps(results, indent=2) + "\n")
