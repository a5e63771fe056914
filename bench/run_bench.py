"""Run one ftkit benchmark: finetune with the given flags, re-score with `ftkit eval --json`,
and write bench/results/<name>.json with every scalar metric and the wall times.

Usage: .venv/bin/python bench/run_bench.py NAME [--split test] -- FINETUNE FLAGS...
Example: .venv/bin/python bench/run_bench.py ner_conll2003 -- --recipe ner-conll2003 \
           --train ../shared/data/conll2003/eng.train --validation ../shared/data/conll2003/eng.testa \
           --test ../shared/data/conll2003/eng.testb
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--split", default="test")
    ap.add_argument("flags", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    flags = a.flags[1:] if a.flags[:1] == ["--"] else a.flags
    out = ROOT / "runs" / f"bench-{a.name}"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    ftkit = str(ROOT / ".venv" / "bin" / "ftkit")
    t0 = time.time()
    subprocess.run([ftkit, "finetune", *flags, "--output", str(out), "--overwrite"], check=True, env=env, cwd=ROOT)
    t1 = time.time()
    r = subprocess.run([ftkit, "eval", str(out), "--split", a.split, "--json"], check=True, env=env, cwd=ROOT,
                       capture_output=True, text=True)
    t2 = time.time()
    metrics = json.loads(r.stdout)
    run = json.loads((out / "run.json").read_text())
    result = {
        "name": a.name,
        "command": "ftkit finetune " + " ".join(flags),
        "split": a.split,
        "data": metrics.get("data"),
        "metrics": {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
                    if isinstance(v, (int, float, str)) and k not in ("split", "data")},
        "validation": {k: round(v, 4) for k, v in run["metrics"].get("validation", {}).items()
                       if isinstance(v, float)},
        "train_steps": run["metrics"].get("train_steps"),
        "finetune_wall_s": round(t1 - t0),
        "eval_wall_s": round(t2 - t1),
        "cpus": os.cpu_count(),
    }
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / f"{a.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
