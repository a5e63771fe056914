"""Does torch.compile pay on this CPU for a one-epoch run? (issue 15: ship --compile only if it does)

    flock /tmp/ftkit-cpu.lock .venv/bin/python bench/compile_probe.py [DATA_DIR]

The plain-Trainer SST-2 script (bench/baseline_sst2_trainer.py: MiniLM, first 2,000 sentences, 1 epoch, batch
32, dynamic padding, dev and test scored) with and without ``TrainingArguments(torch_compile=True)``; whole-command
wall time, compile time included. Writes bench/results/compile_probe.json.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
data = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/sst2"
env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
res = {"name": "compile_probe", "cpus": os.cpu_count(), "train_sentences": 2000}
for name, extra in (("eager", []), ("torch_compile", ["--compile"])):
    cmd = [str(ROOT / ".venv/bin/python"), str(ROOT / "bench/baseline_sst2_trainer.py"), data, "--train-n", "2000",
           "--dev", *extra]
    t0 = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/tmp")
    wall = time.time() - t0
    if r.returncode != 0:
        res[name] = {"failed": r.stderr[-1500:], "wall_s": round(wall, 1)}
    else:
        j = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])
        res[name] = {"wall_s": round(wall, 1), "test_accuracy": j["accuracy"], "dev_accuracy": j.get("dev_accuracy")}
    print(name, res[name], flush=True)
if "failed" not in res["eager"] and "failed" not in res["torch_compile"]:
    res["compile_speedup"] = round(res["eager"]["wall_s"] / res["torch_compile"]["wall_s"], 3)
    res["pays"] = res["compile_speedup"] > 1.0
(ROOT / "bench/results/compile_probe.json").write_text(json.dumps(res, indent=2) + "\n")
print(json.dumps(res, indent=2))
