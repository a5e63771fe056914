#!/usr/bin/env bash
# Issue 11's measurements in one go (about 40 minutes on 2 cores): MiniLM on full CoNLL-2003 (the NER model
# the ONNX benchmark exports), LoRA vs full fine-tuning on SST-2 (bench/lora_sst2.py; its full run is the
# SST-2 model exported), then bench/onnx_deploy.py. Run it under the CPU lock:
#   flock /tmp/ftkit-cpu.lock bash bench/onnx_lora_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA=${DATA:-/work/shared/data} HF_HUB_OFFLINE=1
D=$DATA/conll2003
.venv/bin/python bench/run_bench.py onnx_ner_conll2003_minilm -- --recipe ner-conll2003 --model minilm \
  --train "$D/eng.train" --validation "$D/eng.testa" --test "$D/eng.testb"
.venv/bin/python bench/lora_sst2.py "$@"
NER_RUN=runs/bench-onnx_ner_conll2003_minilm SST2_RUN=runs/bench-lora-sst2-full .venv/bin/python bench/onnx_deploy.py
