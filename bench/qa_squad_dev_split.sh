#!/usr/bin/env bash
# Extractive QA (non-standard split, see the recipe): MiniLM trained on SQuAD v1.1 dev articles 0-37
# (8,582 questions), scored with the official v1.1 EM/F1 on articles 38-47 (1,988 questions).
# Default budget here: the first 3,000 training questions, 1 epoch, 256-token windows, stride 64.
set -euo pipefail
cd "$(dirname "$0")/.."
F=${DATA:-../shared/data}/squad_v1/dev-v1.1.json
.venv/bin/python bench/run_bench.py qa_squad_dev_split -- --recipe qa-squad-dev-split --model minilm \
  --train "$F" --test "$F" --epochs 1 --set data.max_train_examples=3000 --set training.max_length=256 --set task_options.doc_stride=64 "$@"
