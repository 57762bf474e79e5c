#!/usr/bin/env bash
# Experiment: the small CNN (model/base) on the demo shapes, with random shifts and
# horizontal flips (the shapes look the same mirrored; digits or text would not).
# Extra flags are passed on, e.g. `bash scripts/train_base.sh --epochs 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" train.py --model_type base --data_type list \
    --train_list data/demo/train.txt --val_list data/demo/val.txt \
    --crop_padding 4 --hflip 0.5 \
    --optimizer adamw --lr 3e-3 --scheduler cosine --epochs 10 --batch_size 64 \
    --save_prefix demo "$@"
