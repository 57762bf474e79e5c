#!/usr/bin/env bash
# The test suite: set up .venv/ with the dev requirements if needed, then run pytest.
# Extra flags go to pytest, e.g. `bash scripts/test.sh -k options -x`. The tests run in up to
# 4 processes (pytest-xdist, one per core); `-n 0` runs them in this one.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh requirements-dev.txt
"$PYTHON" -m pytest -n auto --maxprocesses 4 "$@"
