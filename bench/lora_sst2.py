"""LoRA vs full fine-tuning on full SST-2 (stsa.binary), MiniLM, 1 epoch, side by side.

For each variant: `ftkit finetune` under /usr/bin/time -v (peak RSS), then test accuracy, validation
accuracy, wall time and the trainable share from run.json. Results are merged into
bench/results/lora_sst2.json (one entry per variant), so variants can be run one at a time.

Usage: flock /tmp/ftkit-cpu.lock .venv/bin/python bench/lora_sst2.py [VARIANT ...]   (default: all)
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DATA", "/work/shared/data")) / "sst2"
RESULTS = ROOT / "bench" / "results" / "lora_sst2.json"
BASE = ["--recipe", "classification-sst2", "--model", "minilm", "--epochs", "1",
        "--train", str(DATA / "stsa.binary.train"), "--validation", str(DATA / "stsa.binary.dev"),
        "--test", str(DATA / "stsa.binary.test")]
VARIANTS = {
    "full": [],                                                          # the recipe: lr 5e-5, every weight
    "lora_r8_qv_lr5e-4": ["--peft", "lora", "--learning-rate", "5e-4"],
    "lora_r8_qv_lr1e-3": ["--peft", "lora", "--learning-rate", "1e-3"],
    "lora_r16_qkvo_lr1e-3": ["--peft", "lora", "--learning-rate", "1e-3", "--set", "peft.r=16",
                             "--set", "peft.alpha=32", "--set", "peft.target_modules=[query,key,value,dense]"],
    "lora_r8_qv_lr5e-5": ["--peft", "lora", "--learning-rate", "5e-5"],  # full fine-tuning's learning rate
}


def run_variant(name: str, flags: list[str]) -> dict:
    out = ROOT / "runs" / f"bench-lora-sst2-{name}"
    cmd = [str(ROOT / ".venv" / "bin" / "ftkit"), "finetune", *BASE, *flags, "--output", str(out), "--overwrite"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    t0 = time.time()
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    run = json.loads((out / "run.json").read_text())
    m = run["metrics"]
    p = run["parameters"]
    return {
        "command": "ftkit finetune " + " ".join([*BASE, *flags]),
        "test_accuracy": round(m["test"]["accuracy"], 4),
        "validation_accuracy": round(m["validation"]["accuracy"], 4),
        "train_loss": round(m["train_loss"], 4),
        "train_steps": m["train_steps"],
        "parameters": p,
        "trainable_share": round(p["trainable"] / p["total"], 5),
        "peft": run["peft"],
        "finetune_wall_s": round(wall, 1),
        "train_wall_s": run["wall_time_s"],
        "peak_rss_mb": round(rss_kb / 1024),
        "cpus": os.cpu_count(),
    }


def main(names: list[str]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in names or list(VARIANTS):
        print(f"== {name}", flush=True)
        results[name] = run_variant(name, VARIANTS[name])
        print(json.dumps(results[name], indent=2), flush=True)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
