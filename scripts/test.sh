#!/usr/bin/env bash
# The test suite: set up .venv/ with the dev requirements if needed, then run pytest.
# Extra flags go to pytest, e.g. `bash scripts/test.sh -k options -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh requirements-dev.txt
"$PYTHON" -m pytest "$@"
