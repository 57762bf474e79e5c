#!/usr/bin/env bash
# Evaluate a base run on the demo validation list, with pictures.
#   bash scripts/eval_base.sh --load_model_path checkpoints/<run dir>
# Without --load_model_path: the newest run under checkpoints/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" eval.py --model_type base --val_list data/demo/val.txt --save_viz "$@"
