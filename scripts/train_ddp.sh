#!/usr/bin/env bash
# Experiment: the base model with DistributedDataParallel, one process per GPU (or, without
# GPUs, 2 CPU processes with gloo). Set NPROC to the number of GPUs to use.
# Extra flags are passed on, e.g. `bash scripts/train_ddp.sh --epochs 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" -m torch.distributed.run --nproc_per_node="${NPROC:-2}" train.py \
    --model_type base --data_type list --batch_size 32 --epochs 10 --save_prefix ddp "$@"
