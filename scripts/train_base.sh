#!/usr/bin/env bash
# Experiment: the small CNN (model/base) on the demo shapes.
# Extra flags are passed on, e.g. `bash scripts/train_base.sh --epochs 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python}" train.py --model_type base --data_type list \
    --train_list data/demo/train.txt --val_list data/demo/val.txt \
    --optimizer adamw --lr 3e-3 --scheduler cosine --epochs 10 --batch_size 64 \
    --save_prefix demo "$@"
