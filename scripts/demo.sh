#!/usr/bin/env bash
# The main job: set up .venv/ if needed, train the base model on the demo data (generated
# on first use), then evaluate its best checkpoint. Extra flags go to train.py, e.g.
#   bash scripts/demo.sh --epochs 3
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh requirements.txt
checkpoints_dir="${CHECKPOINTS_DIR:-checkpoints}"
"$PYTHON" train.py --model_type base --save_prefix demo --checkpoints_dir "$checkpoints_dir" "$@"
# With no --load_model_path, eval.py takes best.pth of the newest run: the one just trained.
"$PYTHON" eval.py --checkpoints_dir "$checkpoints_dir" --save_viz
