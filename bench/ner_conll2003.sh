#!/usr/bin/env bash
# Quality benchmark for issue "NER end to end": MiniLM, 1 epoch on the full CoNLL-2003 train
# (eng.train), model selection on eng.testa, scored on eng.testb. Needs ../shared/data.
# Usage: bench/ner_conll2003.sh [extra ftkit flags]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/conll2003}
OUT=${OUT:-runs/bench-ner-conll2003}
export HF_HUB_OFFLINE=1
start=$(date +%s)
.venv/bin/ftkit finetune --recipe ner-conll2003 --model minilm \
  --train "$DATA/eng.train" --validation "$DATA/eng.testa" --test "$DATA/eng.testb" \
  --output "$OUT" --overwrite "$@"
end=$(date +%s)
.venv/bin/ftkit eval "$OUT" --split test --json > "$OUT/eval_test_cli.json"
python3 - "$OUT" $((end - start)) <<'PY'
import json, sys, platform, os
out, wall = sys.argv[1], int(sys.argv[2])
m = json.load(open(f"{out}/eval_test_cli.json"))
res = {"benchmark": "ner-conll2003 (eng.train 1 epoch -> eng.testb)", "model": "minilm",
       "f1": round(m["f1"], 4), "precision": round(m["precision"], 4), "recall": round(m["recall"], 4),
       "accuracy": round(m["accuracy"], 4), "wall_time_s": wall, "cpus": os.cpu_count(),
       "per_label_f1": {k: round(v["f1"], 4) for k, v in m["per_label"].items()}}
json.dump(res, open("bench/results/ner_conll2003.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PY
