#!/usr/bin/env bash
# Before/after of the prediction loop (issue 15): a MiniLM NER model (the demo recipe, 30 steps: latency does not
# depend on how well it is trained), exported, then Predictor.predict timed with the code of BEFORE (a git
# revision, default: the commit before the batched loop) and with this checkout, on the 3,453 CoNLL test sentences.
#   flock /tmp/ftkit-cpu.lock bench/predict_latency.sh [BEFORE_REV]
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:-af0244a}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false FTKIT_CACHE_DIR="$T/cache"
.venv/bin/ftkit finetune --task ner --model minilm --max-steps 30 --output "$T/run" 2>/dev/null >/dev/null
.venv/bin/ftkit export "$T/run" --output "$T/export" 2>/dev/null
awk 'NF==0 || $1=="-DOCSTART-" {if (s!="") print s; s=""; next} {s = (s=="" ? $1 : s " " $1)} END {if (s!="") print s}' \
  "${DATA:-/work/shared/data}/conll2003/eng.testb" > "$T/test.txt"
mkdir -p "$T/before" && git archive "$BEFORE" src | tar -x -C "$T/before"
rm -f bench/results/predict_latency.json
PYTHONPATH="$T/before/src" .venv/bin/python bench/predict_latency.py "$T/export" "$T/test.txt" before bench/results/predict_latency.json >/dev/null
.venv/bin/python bench/predict_latency.py "$T/export" "$T/test.txt" after bench/results/predict_latency.json
