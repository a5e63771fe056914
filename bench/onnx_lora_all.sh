#!/usr/bin/env bash
# Issue 11's measurements in one go (about 35 minutes on 2 cores): MiniLM on full CoNLL-2003 and full
# fine-tuning on SST-2 (the two models bench/onnx_deploy.py exports), then ONNX/int8 quality, speed and
# parity, then LoRA variants on SST-2 against that full fine-tuning (bench/lora_sst2.py). Run it under the
# CPU lock:   flock /tmp/ftkit-cpu.lock bash bench/onnx_lora_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA=${DATA:-/work/shared/data} HF_HUB_OFFLINE=1
D=$DATA/conll2003
.venv/bin/python bench/run_bench.py onnx_ner_conll2003_minilm -- --recipe ner-conll2003 --model minilm \
  --train "$D/eng.train" --validation "$D/eng.testa" --test "$D/eng.testb"
.venv/bin/python bench/lora_sst2.py full
NER_RUN=runs/bench-onnx_ner_conll2003_minilm SST2_RUN=runs/bench-lora-sst2-full .venv/bin/python bench/onnx_deploy.py
.venv/bin/python bench/lora_sst2.py ${LORA_VARIANTS:-lora_r8_qv_lr1e-3 lora_r16_qkvo_lr1e-3 lora_r8_qv_lr5e-4}
