#!/usr/bin/env bash
# The experiment loop on SST-2: a sweep of 8 trials (MiniLM, 1 epoch on the first 2,000 sentences of
# stsa.binary.train, learning rate and warm-up searched, median pruning on 4 validation evaluations per
# trial), its report, and the best trial's test accuracy against the default recipe's (same data, budget).
# Results: bench/results/sweep_sst2.json, sweep_sst2_report.html, report.png.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/sweep_sst2.py "${DATA:-../shared/data}/sst2" "$@"
