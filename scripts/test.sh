#!/usr/bin/env bash
# The test suite: set up .venv/ with the dev requirements if needed, then run pytest.
# Extra flags go to pytest, e.g. `bash scripts/test.sh -k options -x`. The tests run in up to
# 4 processes (pytest-xdist, one per core; tests that start torchrun stay on one of them), the
# fast subset in one; `-n 0` runs them all in this one, as does a Python without pytest-xdist.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh requirements-dev.txt
parallel=()
# The fast subset (-m "not slow") runs in this one process: there a worker's start (importing
# torch) costs more than its share of the tests (on 2 cores: 23 s and 22 s of CPU, against
# 27 s and 46 s of CPU in 2 workers).
case " $* " in
    *"not slow"*) ;;
    *) if "$PYTHON" -c "import xdist" 2>/dev/null; then parallel=(-n auto --maxprocesses 4 --dist loadgroup); fi ;;
esac
"$PYTHON" -m pytest ${parallel[@]+"${parallel[@]}"} "$@"
