#!/usr/bin/env bash
# SST-2 parity check over several seeds: ftkit (recipe classification-sst2, 1 epoch) and the plain Trainer
# reference (bench/baseline_sst2_trainer.py), same model, budget and hyperparameters, seeds 1..N.
# Writes bench/results/classification_sst2_seeds.json (per-seed accuracies, mean and standard deviation).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}/sst2
SEEDS=${SEEDS:-"1 2 3"}
LOG=bench/results/classification_sst2_seeds.jsonl
: > "$LOG"
for s in $SEEDS; do
  .venv/bin/python bench/run_bench.py "classification_sst2_seed$s" -- --recipe classification-sst2 --model minilm \
    --epochs 1 --seed "$s" --train "$D/stsa.binary.train" --validation "$D/stsa.binary.dev" \
    --test "$D/stsa.binary.test" >/dev/null
  .venv/bin/python -c "import json,sys; r=json.load(open('bench/results/classification_sst2_seed$s.json')); \
print(json.dumps({'runner':'ftkit','seed':$s,'accuracy':r['metrics']['accuracy'],'wall_s':r['finetune_wall_s']}))" >> "$LOG"
  rm bench/results/classification_sst2_seed$s.json
  HF_HUB_OFFLINE=1 .venv/bin/python bench/baseline_sst2_trainer.py "$D" --seed "$s" | tail -1 >> "$LOG"
done
.venv/bin/python - <<'PY'
import json, statistics
rows = [json.loads(l) for l in open("bench/results/classification_sst2_seeds.jsonl")]
out = {"runs": rows}
for runner in ("ftkit", "plain_trainer"):
    accs = [r["accuracy"] for r in rows if r["runner"] == runner]
    out[runner] = {"mean": round(statistics.mean(accs), 4), "stdev": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
                   "min": min(accs), "max": max(accs), "n": len(accs)}
json.dump(out, open("bench/results/classification_sst2_seeds.json", "w"), indent=2)
print(json.dumps(out, indent=2))
PY
rm bench/results/classification_sst2_seeds.jsonl
