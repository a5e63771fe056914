#!/usr/bin/env bash
# Classification: MiniLM, 1 epoch on SST-2 stsa.binary.train (6,920), dev 872, test accuracy on 1,821;
# then the plain-Trainer reference with the same model, budget and hyperparameters.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}/sst2
.venv/bin/python bench/run_bench.py classification_sst2 -- --recipe classification-sst2 --model minilm --epochs 1 \
  --train "$D/stsa.binary.train" --validation "$D/stsa.binary.dev" --test "$D/stsa.binary.test" "$@"
HF_HUB_OFFLINE=1 .venv/bin/python bench/baseline_sst2_trainer.py "$D" | tee bench/results/classification_sst2_plain_trainer.txt
