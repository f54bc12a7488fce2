#!/usr/bin/env bash
# The GPU bench on a bare GPU machine, in under 8 minutes: install what the image lacks, measure, print one table.
#
# Before (here, where pip and the data are): bash bench/gpu_prepare.sh   -> .gpu/ (wheels, model, SciFact; git-ignored)
# On the device (the `device` tool's run, carrying .gpu):  bash bench/gpu.sh
# Without a GPU the same script runs bench/gpu.py's CPU fallback (float32) on a small dataset: GPU_DATA=folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-bench}"
mkdir -p "$OUT"
if [ "${GPU_WHEELS:-1}" = 1 ] && ls .gpu/whl/*.whl > /dev/null 2>&1; then  # what the GPU image lacks (its python3 has torch, transformers, ST); GPU_WHEELS=0: use this environment as it is
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DATA="${GPU_DATA:-.gpu/data/scifact}"
MODEL="${GPU_MODEL:-$( [ -d .gpu/model ] && echo .gpu/model || echo all-MiniLM-L6-v2 )}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: CPU fallback"
timeout "${GPU_TIMEOUT:-460}" python3 bench/gpu.py --data "$DATA" --model "$MODEL" --out "$OUT" ${GPU_ARGS:-} 2>&1 \
    | grep -v -E "it/s\]|s/it\]|Batches|Loading weights" | tee "$OUT/log.txt"
