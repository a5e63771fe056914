#!/usr/bin/env bash
# NER quality: MiniLM, 1 epoch on full CoNLL-2003 eng.train, best checkpoint by eng.testa F1, scored on eng.testb.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}/conll2003
.venv/bin/python bench/run_bench.py ner_conll2003 -- --recipe ner-conll2003 --model minilm \
  --train "$D/eng.train" --validation "$D/eng.testa" --test "$D/eng.testb" "$@"
