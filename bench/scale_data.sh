#!/usr/bin/env bash
# Corpora larger than memory: peak RSS (/usr/bin/time -v) and wall time of `ftkit validate`, of
# `ftkit finetune --max-steps 10` (MiniLM) and of the second finetune (cache hit), on CoNLL-2003 eng.train
# repeated to 15,000 and 1,000,000 sentences, a 1,000,000-line classification JSONL and a 200,000-record QA
# JSONL (all generated under bench/.scale_data, never committed); --workers 2 against --workers 1.
# Results: bench/results/scale_data.json. Sizes: CONLL_SIZES=15000,1000000 CLS_LINES=1000000 QA_RECORDS=200000;
# ONLY=workers REPEAT=2 reruns just the --workers 2 / --workers 1 comparison (kept as "workers_rerun").
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
exec flock /tmp/ftkit-cpu.lock .venv/bin/python bench/scale_data.py "$@"
