"""bench/sweep_sst2.sh: sweep (8 trials) vs the default recipe on a 2,000-sentence SST-2 subset.

Everything goes through the real CLI (`ftkit sweep`, `ftkit finetune`, `ftkit compare --json`,
`ftkit report`); the page is then opened in headless Chromium for bench/results/report.png.
Pruning's saving is counted as the steps the pruned trials did not train (their planned steps minus the
step they were stopped at) times the mean seconds per training step of the completed trials.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TRIALS = 8


def ftkit(*args, capture=False):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [str(ROOT / ".venv" / "bin" / "ftkit"), *map(str, args)]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, env=env, cwd=ROOT, text=True,
                          stdout=subprocess.PIPE if capture else None)


def main(data: str) -> None:
    d = Path(data)
    runs = ROOT / "runs"
    sweep_dir, default_dir = runs / "bench-sweep-sst2", runs / "bench-sweep-sst2-default"
    shutil.rmtree(sweep_dir, ignore_errors=True)
    common = ["--recipe", "classification-sst2", "--model", "minilm", "--epochs", "1",
              "--train", d / "stsa.binary.train", "--validation", d / "stsa.binary.dev", "--test", d / "stsa.binary.test",
              "--set", "data.max_train_examples=2000"]
    t0 = time.time()
    # 2,000 sentences / batch 32 = 63 steps: the validation set is scored every 16 steps (4 times)
    ftkit("sweep", *common, "--set", "training.eval_strategy=steps", "--set", "training.eval_steps=16",
          "--space", ROOT / "bench" / "sweep_sst2.space.yaml", "--trials", TRIALS, "--output", sweep_dir)
    t1 = time.time()
    ftkit("finetune", *common, "--output", default_dir, "--overwrite")
    t2 = time.time()
    table = json.loads(ftkit("compare", sweep_dir, default_dir, "--json", capture=True).stdout)
    report = RESULTS / "sweep_sst2_report.html"
    ftkit("report", sweep_dir, default_dir, "--output", report)
    screenshot(report, RESULTS / "report.png")

    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    default_test = json.loads((default_dir / "eval_test.json").read_text())
    best_test = sweep["test"]
    result = {
        "name": "sweep_sst2",
        "data": {"train": "first 2,000 sentences of stsa.binary.train", "validation": "stsa.binary.dev (872)",
                 "test": "stsa.binary.test (1,821)"},
        "model": "minilm", "epochs": 1, "trials": TRIALS, "space": sweep["space"], "sampler": sweep["sampler"],
        "pruner": sweep["pruner"], "startup_trials": sweep["startup_trials"], "selection_metric": sweep["metric"],
        "trial_results": [{k: t.get(k) for k in ("number", "state", "params", "value", "steps", "max_steps",
                                                   "train_time_s")} for t in sweep["trials"]],
        "best_trial": sweep["best_folder"],
        "best_validation_f1": round(sweep["best_value"], 4),
        "best_test_accuracy": round(best_test["accuracy"], 4),
        "best_test_f1": round(best_test["f1"], 4),
        "default_recipe": {"learning_rate": 5e-5, "warmup_ratio": 0.06,
                           "validation_f1": round(json.loads((default_dir / "eval_validation.json").read_text())["f1"], 4),
                           "test_accuracy": round(default_test["accuracy"], 4), "test_f1": round(default_test["f1"], 4),
                           "wall_s": round(t2 - t1)},
        "pruning": sweep["pruning"],
        "sweep_wall_s": round(t1 - t0),
        "compare_rows": len(table["runs"]),
        "cpus": os.cpu_count(),
    }
    (RESULTS / "sweep_sst2.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def screenshot(page: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1280, "height": 1600})
        tab.goto(page.resolve().as_uri())
        tab.screenshot(path=str(out), full_page=False)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "data" / "sst2"))
