#!/usr/bin/env bash
# Evaluate a segmentation run on the demo masks: result.txt (mean IoU, pixel accuracy, IoU
# per class), predicted masks, and pictures (input | prediction | truth, and an overlay).
#   bash scripts/eval_seg.sh --load_model_path checkpoints/<run dir>
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" eval.py --data_type seg_list --val_list data/demo/seg_val.txt --save_viz "$@"
