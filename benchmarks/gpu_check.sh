#!/usr/bin/env bash
# The day a GPU is lent: the command line, the network's speed and a short mixed-precision training run
# on CUDA, in about 6 minutes (8 at most), as one JSON (benchmarks/gpu_check.py does the work).
#
#   benchmarks/gpu_check.sh [OUT.json]        # default: $OUT/gpu_check.json, else ./gpu_check.json
#
# Without a CUDA GPU it prints one line and exits with status 2. GPU_CHECK_DEVICE=cpu runs the same
# steps on the CPU with tiny sizes (seconds), to check the script itself.
# GPU_CHECK_TRAIN_SECONDS (default 150) and GPU_CHECK_PRECISION (default auto: bf16 where the GPU has
# it, else fp16) set the training run.
set -euo pipefail

cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}/gpu_check.json}"
device="${GPU_CHECK_DEVICE:-cuda}"
python="${PYTHON:-python}"

if [[ "$device" == cpu ]]; then
    exec "$python" benchmarks/gpu_check.py "$out" --device cpu --tiny --train-precision bf16 \
        --train-seconds "${GPU_CHECK_TRAIN_SECONDS:-20}"
fi

if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch here, nothing checked (GPU_CHECK_DEVICE=cpu dry-runs the script)" >&2
    exit 2
fi

# 8 minutes at most, whatever happens inside; gpu_check.py saves its JSON after every step
exec timeout -s TERM 480 "$python" benchmarks/gpu_check.py "$out" --device "$device" \
    --train-seconds "${GPU_CHECK_TRAIN_SECONDS:-150}" --train-precision "${GPU_CHECK_PRECISION:-auto}"
