#!/usr/bin/env bash
# SST-2 parity check over several seeds: ftkit (recipe classification-sst2, 1 epoch) and the plain Trainer
# reference (bench/baseline_sst2_trainer.py), same model, budget and hyperparameters.
#   SEEDS="1 2 3"            seeds to run
#   RUNNERS="ftkit plain"    which sides to run
#   VARIANT=name EXTRA="..." extra ftkit flags, e.g. VARIANT=random EXTRA="--set training.group_by_length=false"
# Appends one JSON line per run to bench/results/classification_sst2_seeds.jsonl and rewrites the summary
# bench/results/classification_sst2_seeds.json (mean, standard deviation, min, max per runner/variant).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}/sst2
SEEDS=${SEEDS:-"1 2 3"}
RUNNERS=${RUNNERS:-"ftkit plain"}
VARIANT=${VARIANT:-default}
EXTRA=${EXTRA:-}
LOG=bench/results/classification_sst2_seeds.jsonl
for s in $SEEDS; do
  if [[ " $RUNNERS " == *" ftkit "* ]]; then
    # shellcheck disable=SC2086
    .venv/bin/python bench/run_bench.py "sst2_seed_tmp" -- --recipe classification-sst2 --model minilm \
      --epochs 1 --seed "$s" --train "$D/stsa.binary.train" --validation "$D/stsa.binary.dev" \
      --test "$D/stsa.binary.test" $EXTRA >/dev/null
    .venv/bin/python -c "import json; r=json.load(open('bench/results/sst2_seed_tmp.json')); \
print(json.dumps({'runner':'ftkit','variant':'$VARIANT','seed':$s,'accuracy':r['metrics']['accuracy'],'wall_s':r['finetune_wall_s']}))" >> "$LOG"
    rm bench/results/sst2_seed_tmp.json
  fi
  if [[ " $RUNNERS " == *" plain "* ]]; then
    HF_HUB_OFFLINE=1 .venv/bin/python bench/baseline_sst2_trainer.py "$D" --seed "$s" | tail -1 >> "$LOG"
  fi
done
.venv/bin/python - <<'PY'
import json, statistics
rows = [json.loads(l) for l in open("bench/results/classification_sst2_seeds.jsonl")]
groups = {}
for r in rows:
    key = r["runner"] if r["runner"] != "ftkit" else f"ftkit:{r.get('variant', 'default')}"
    groups.setdefault(key, []).append(r["accuracy"])
out = {k: {"mean": round(statistics.mean(v), 4), "stdev": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0,
           "min": min(v), "max": max(v), "n": len(v)} for k, v in groups.items()}
json.dump({"summary": out, "runs": rows}, open("bench/results/classification_sst2_seeds.json", "w"), indent=2)
print(json.dumps(out, indent=2))
PY
