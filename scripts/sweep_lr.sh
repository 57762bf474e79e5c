#!/usr/bin/env bash
# Sweep: the base model's learning rate, 3 values x 3 seeds, into checkpoints/lr_sweep/.
# Extra flags go to every train.py run, e.g. `bash scripts/sweep_lr.sh --epochs 1`; flags of the
# sweep itself come from $SWEEP_FLAGS, e.g. `SWEEP_FLAGS="--jobs 3" bash scripts/sweep_lr.sh`.
# Run it again to continue: finished runs are skipped, interrupted ones resumed.
# Then compare: python -m runs checkpoints/lr_sweep --group_by lr
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
# shellcheck disable=SC2086  # $SWEEP_FLAGS is split into several flags on purpose
"$PYTHON" -m runs.sweep --exp lr_sweep --grid lr=0.001,0.003,0.01 --seeds 0 1 2 ${SWEEP_FLAGS:-} \
    -- --model_type base --data_type list --train_list data/demo/train.txt --val_list data/demo/val.txt \
    --optimizer adamw --scheduler cosine --epochs 10 --batch_size 64 --save_prefix lr_sweep "$@"
