#!/usr/bin/env bash
# Quality benchmark for extractive QA: MiniLM on SQuAD v1.1 dev split by article (recipe
# qa-squad-dev-split: train on articles 0-37, 8,582 questions; test on articles 38-47, 1,988 questions).
# Not comparable to published SQuAD numbers (those train on train-v1.1.json). Needs ../shared/data.
# Usage: bench/qa_squad_dev_split.sh [extra ftkit flags]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${DEV:-../shared/data/squad_v1/dev-v1.1.json}
OUT=${OUT:-runs/bench-qa-squad-dev-split}
export HF_HUB_OFFLINE=1
start=$(date +%s)
.venv/bin/ftkit finetune --recipe qa-squad-dev-split --model minilm \
  --train "$DEV" --test "$DEV" --output "$OUT" --overwrite "$@"
end=$(date +%s)
.venv/bin/ftkit eval "$OUT" --split test --json > "$OUT/eval_test_cli.json"
python3 - "$OUT" $((end - start)) <<'PY'
import json, sys, os
out, wall = sys.argv[1], int(sys.argv[2])
m = json.load(open(f"{out}/eval_test_cli.json"))
res = {"benchmark": "qa-squad-dev-split (SQuAD v1.1 dev articles 0:38 -> 38:48)", "model": "minilm",
       "exact_match": round(m["exact_match"], 4), "f1": round(m["f1"], 4), "questions": m["examples"],
       "wall_time_s": wall, "cpus": os.cpu_count()}
json.dump(res, open("bench/results/qa_squad_dev_split.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PY
