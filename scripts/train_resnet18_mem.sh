#!/usr/bin/env bash
# Experiment: torchvision's ResNet-18 (random init) on the demo shapes held in memory.
# Extra flags are passed on, e.g. `bash scripts/train_resnet18_mem.sh --epochs 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" train.py --model_type resnet18 --data_type list --in_memory \
    --train_list data/demo/train.txt --val_list data/demo/val.txt \
    --optimizer adamw --lr 1e-3 --weight_decay 0.05 --scheduler step --lr_step_size 4 \
    --epochs 10 --batch_size 128 --save_prefix mem "$@"
