#!/usr/bin/env bash
# Relation extraction: MiniLM on SemEval-2010 Task 8 (10% of TRAIN_FILE held out for model selection),
# official directed macro-F1 on the 2,717 TEST_FILE_FULL sentences; entity-start vs [CLS] pooling, same budget.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}/semeval2010_task8
for pooling in entity_start cls; do
  .venv/bin/python bench/run_bench.py "relation_semeval2010_${pooling}" -- --recipe relation-semeval2010 \
    --model minilm --train "$D/TRAIN_FILE.TXT" --test "$D/TEST_FILE_FULL.TXT" \
    --set "task_options.pooling=${pooling}" "$@"
done
