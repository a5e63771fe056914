#!/usr/bin/env bash
# Load test of `ftkit serve` on the MiniLM NER export (see serve_load.py). Run it alone on the machine:
#   flock /tmp/ftkit-cpu.lock bench/serve_load.sh
# The model: MiniLM fine-tuned on full CoNLL-2003 eng.train with the ner-conll2003 recipe for 300 steps
# (--max-steps 300: a quarter epoch, to keep the set-up short; it is trained once and kept in runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}/conll2003
RUN=runs/serve-bench-ner
EXPORT=runs/serve-bench-ner-export
if [ ! -f "$EXPORT/ftkit.json" ]; then
  if [ ! -f "$RUN/run.json" ]; then
    .venv/bin/ftkit finetune --recipe ner-conll2003 --model minilm --train "$D/eng.train" \
      --validation "$D/eng.testa" --test "$D/eng.testb" --max-steps 300 --output "$RUN" --overwrite
  fi
  .venv/bin/ftkit export "$RUN" --output "$EXPORT" --overwrite
fi
.venv/bin/python bench/serve_load.py --model "$EXPORT" --data "$D/eng.testb" "$@"
