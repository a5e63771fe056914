#!/usr/bin/env bash
# Quality benchmark for relation extraction: MiniLM on the full SemEval-2010 Task 8 train (10% held out
# for model selection), scored with the official (9+1)-way directed macro-F1 on TEST_FILE_FULL.TXT.
# Needs ../shared/data. Usage: bench/relation_semeval2010.sh [extra ftkit flags, e.g. --set task_options.pooling=cls]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/semeval2010_task8}
OUT=${OUT:-runs/bench-relation-semeval2010}
export HF_HUB_OFFLINE=1
start=$(date +%s)
.venv/bin/ftkit finetune --recipe relation-semeval2010 --model minilm \
  --train "$DATA/TRAIN_FILE.TXT" --test "$DATA/TEST_FILE_FULL.TXT" \
  --output "$OUT" --overwrite "$@"
end=$(date +%s)
.venv/bin/ftkit eval "$OUT" --split test --json > "$OUT/eval_test_cli.json"
python3 - "$OUT" $((end - start)) <<'PY'
import json, sys, os
out, wall = sys.argv[1], int(sys.argv[2])
m = json.load(open(f"{out}/eval_test_cli.json"))
pooling = json.load(open(f"{out}/model/ftkit.json"))["task_options"]["pooling"]
res = {"benchmark": "relation-semeval2010 (TRAIN_FILE 90% -> TEST_FILE_FULL)", "model": "minilm", "pooling": pooling,
       "official_macro_f1": round(m["f1"], 4), "micro_f1": round(m["micro_f1"], 4), "accuracy": round(m["accuracy"], 4),
       "wall_time_s": wall, "cpus": os.cpu_count(),
       "per_type_f1": {k: round(v["f1"], 4) for k, v in m["per_type"].items()}}
json.dump(res, open(f"bench/results/relation_semeval2010_{pooling}.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PY
