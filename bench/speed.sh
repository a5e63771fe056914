#!/usr/bin/env bash
# Time to result (issue 15): ftkit against the plain-Trainer and course-style references, side by side in one run;
# SST-2 (2,000 sentences), CoNLL-2003 (3,000 sentences), and `ftkit predict` against the token-classification
# pipeline on the 3,453 CoNLL test sentences. Prints the table, writes bench/results/speed.json.
#   flock /tmp/ftkit-cpu.lock bench/speed.sh [--only sst2,conll,predict]
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python bench/speed.py --data "${DATA:-/work/shared/data}" "$@"
