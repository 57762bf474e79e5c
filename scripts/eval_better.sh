#!/usr/bin/env bash
# Evaluate a better run on the demo validation list.
#   bash scripts/eval_better.sh --load_model_path checkpoints/<run dir>
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
"$PYTHON" eval.py --model_type better --val_list data/demo/val.txt "$@"
