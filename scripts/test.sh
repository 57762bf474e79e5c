#!/usr/bin/env bash
# The test suite: set up .venv/ with the dev requirements if needed, then run pytest.
# Extra flags go to pytest, e.g. `bash scripts/test.sh -k options -x`. The tests run in up to
# 4 processes (pytest-xdist, one per core; tests that start torchrun stay on one of them);
# `-n 0` runs them in this one. A Python without pytest-xdist runs them in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh requirements-dev.txt
parallel=()
if "$PYTHON" -c "import xdist" 2>/dev/null; then
    parallel=(-n auto --maxprocesses 4 --dist loadgroup)
fi
"$PYTHON" -m pytest ${parallel[@]+"${parallel[@]}"} "$@"
