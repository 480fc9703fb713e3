#!/usr/bin/env bash
# One prepared run for a session lent a GPU machine (15 minutes of device time in all):
# the shipped denoisers timed on the GPU (issue 28 asks for both models there), then
# networks trained on the GPU with the repository's recipes, the data simulated on the
# machine's cores. Everything lands in $OUT: session.log and one folder per model
# (config.json + model.safetensors), at most 8 files, as the device tool brings back.
#
# On the device (its python3 holds torch, numpy, scipy, scikit-image, numba):
#     run(command="bash scripts/device_session.sh", timeout_s=540)
# Rehearse it here first, on the CPU and tiny:
#     PYTHON=.venv/bin/python DEVICE=cpu STEPS=20 POOL=48 OUT=/tmp/dev bash scripts/device_session.sh
#
# WHICH: the training script's models, trained in that order (default: em-denoise's two
# stages); STEPS, POOL: override every recipe's steps and pool (default: the recipes').
# The weights are written when each model ends; a model cut off by the time limit
# leaves its best validation so far, marked "complete": false in its config.json.
# Then, here: copy a finished folder into src/em_restore/weights, score it with
# benchmarks/bench_models.py --held-out --model L=FOLDER, and write its card.
set -uo pipefail
OUT=${OUT:-/tmp/em-restore-device}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
WHICH=${WHICH:-quality-base quality}
WORKERS=${WORKERS:-$(($(nproc) > 3 ? $(nproc) - 2 : 1))}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    if [ "$DEVICE" != cpu ]; then
        "$PY" benchmarks/bench_models.py --no-quality --gpu-only
    fi
    # shellcheck disable=SC2086  # WHICH is a list of model keys
    "$PY" scripts/train_default_models.py --which $WHICH --device "$DEVICE" \
        --workers "$WORKERS" --threads 4 --out "$OUT" \
        ${STEPS:+--steps "$STEPS"} ${POOL:+--pool "$POOL"}
    status=$?
    rm -f "$OUT"/*/training-state.pt # too large to come back (a fresh machine cannot resume)
    ls -l "$OUT"/*/
    date -u
    exit $status
} 2>&1 | tee "$OUT/session.log"
