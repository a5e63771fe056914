#!/usr/bin/env bash
# Translation: BERT2BERT warm-started from MiniLM (encoder and decoder both initialised from the
# checkpoint, Rothe et al. 2020) on Multi30k en->de; sacreBLEU BLEU/chrF on test2016 (1,000 sentences).
# Default budget here: 1 epoch on the first 5,000 training pairs, greedy decoding, no dev pass.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}/multi30k
.venv/bin/python bench/run_bench.py translation_multi30k -- --recipe translation-multi30k --model minilm \
  --train "$D/train" --validation "$D/val" --test "$D/test_2016_flickr" --epochs 1 \
  --set data.max_train_examples=5000 --set data.validation=null --set task_options.num_beams=1 "$@"
