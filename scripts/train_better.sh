#!/usr/bin/env bash
# Experiment: the small ResNet (model/better) on the demo shapes, SGD with momentum.
# Extra flags are passed on, e.g. `bash scripts/train_better.sh --epochs 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" train.py --model_type better --data_type list \
    --train_list data/demo/train.txt --val_list data/demo/val.txt \
    --crop_padding 4 --hflip 0.5 \
    --optimizer sgd --lr 0.05 --momentum 0.9 --weight_decay 5e-4 --scheduler cosine \
    --epochs 10 --batch_size 64 --save_prefix demo "$@"
