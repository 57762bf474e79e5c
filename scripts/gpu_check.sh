#!/usr/bin/env bash
# The GPU check (issue 17) in one go, so that a short time on a GPU machine suffices:
#   1. versions: nvidia-smi, Python, torch, CUDA, cuDNN, NCCL;
#   2. the GPU tests, `pytest -m gpu` (tests/test_gpu.py, tests/test_gpu_syncs.py), 4 at a time
#      when pytest-xdist is there, each with a time limit when pytest-timeout is;
#   3. the GPU benchmark, bench/trainer_vs_plain.py --device cuda (template / plain loop);
#   4. a summary: tests passed / failed, epoch-time ratios, images per second.
# About 4 minutes on an H100, 8 at most: every part has a time limit, so the summary always comes.
#
#   bash scripts/gpu_check.sh                   # PYTHON=python3 by default where there is no .venv/
#
# On a machine with a Python that has torch, torchvision, tensorboard, tqdm and pytest (a GPU
# image), run it as above from the repository's root; nothing is installed or downloaded.
# With OUT set, its files go to $OUT/: gpu_check.log (everything printed), junit.xml (the tests),
# bench.txt (the benchmark's figures) and bench_stderr.txt. Without a CUDA GPU, or with
# GPU_CHECK_DRY=1, it checks its set-up, says what it would run, and exits 0.
# Exit code: 0 when every test passed and the benchmark finished, 1 otherwise, 2 for a bad set-up.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
export PYTHONUNBUFFERED=1
OUT_DIR="${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}"
TEST_LIMIT=300   # seconds for all the GPU tests (about 2 minutes expected)
BENCH_LIMIT=150  # seconds for the benchmark (about 1.5 minutes expected)
BENCH_ARGS=(--device cuda --rounds 5 --max_seconds 35)  # 35 s of rounds a configuration, 2 of them

has() { "$PYTHON" -c "import $1" 2>/dev/null; }

print_versions() {
    echo "== versions"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    echo "$(nproc) CPU cores; shared memory for DataLoader workers: $(df -h /dev/shm 2>/dev/null | awk 'NR==2 {print $2}')"
    "$PYTHON" - <<'EOF'
import platform, torch, torch.distributed
print(f"Python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    nccl = torch.cuda.nccl.version() if torch.distributed.is_nccl_available() else "none"
    nccl = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl
    print(f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name()} "
          f"(compute capability {torch.cuda.get_device_capability()}), NCCL {nccl}")
EOF
}

run_tests() {
    echo "== GPU tests: pytest -m gpu"
    # All of tests/ is collected (the marker picks the tests); a module that cannot be imported
    # here must not stop the others.
    local flags=(-m gpu -q -p no:cacheprovider --continue-on-collection-errors --junitxml "$OUT_DIR/junit.xml"
                 --durations=15)
    if has xdist; then flags+=(-n 4 --dist loadscope); fi
    if has pytest_timeout; then flags+=(--timeout 240); fi
    rm -f "$OUT_DIR/junit.xml"
    timeout -k 10 "$TEST_LIMIT" "$PYTHON" -m pytest "${flags[@]}" tests/
}

run_bench() {
    if [ ! -f bench/trainer_vs_plain.py ]; then  # a project made by `python -m scaffold project` has no bench/
        echo "== GPU benchmark: skipped (no bench/trainer_vs_plain.py in this project)"
        return 0
    fi
    echo "== GPU benchmark: bench/trainer_vs_plain.py ${BENCH_ARGS[*]}"
    timeout -k 10 "$BENCH_LIMIT" "$PYTHON" bench/trainer_vs_plain.py "${BENCH_ARGS[@]}" \
        2>"$OUT_DIR/bench_stderr.txt" | tee "$OUT_DIR/bench.txt"
}

summarise() {  # $1: the tests' exit code, $2: the benchmark's, $3: the seconds each took
    echo "== summary"
    "$PYTHON" - "$OUT_DIR/junit.xml" "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
from pathlib import Path
path, code = Path(sys.argv[1]), int(sys.argv[2])
if not path.is_file():
    sys.exit(print(f"tests: no junit.xml (pytest exit code {code}; 124 means it hit its time limit)"))
cases = ET.parse(path).getroot().iter("testcase")
outcome = {}
for case in cases:
    kind = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
    outcome.setdefault(kind, []).append(f"{case.get('classname')}::{case.get('name')} ({float(case.get('time', 0)):.0f} s)")
print("tests: " + ", ".join(f"{len(names)} {kind}" for kind, names in sorted(outcome.items())) + f" (exit code {code})")
for kind in ("failure", "error"):
    for name in outcome.get(kind, []):
        print(f"  {kind.upper()}: {name}")
EOF
    if grep -q '^SUMMARY' "$OUT_DIR/bench.txt" 2>/dev/null; then
        echo "benchmark (template / plain epoch time; images/s of the template; progress-bar compute efficiency):"
        sed -n 's/^SUMMARY /  /p' "$OUT_DIR/bench.txt"
    fi
    if [ "$2" -ne 0 ]; then
        echo "benchmark: exit code $2 (124: time limit); the end of its stderr:"
        tail -n 15 "$OUT_DIR/bench_stderr.txt" 2>/dev/null | tr '\r' '\n' | tail -n 15
    fi
    echo "seconds: $3"
}

main() {
    local gpus
    if ! gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())"); then
        echo "error: $PYTHON cannot import torch; set PYTHON to the Python that has it."
        return 2
    fi
    if [ "${GPU_CHECK_DRY:-0}" = 1 ] || [ "$gpus" = 0 ]; then
        echo "gpu_check: no CUDA GPU here (or GPU_CHECK_DRY=1): skipped. On a GPU it would run"
        echo "  $PYTHON -m pytest -m gpu tests/   (limit ${TEST_LIMIT} s)"
        echo "  $PYTHON bench/trainer_vs_plain.py ${BENCH_ARGS[*]}   (limit ${BENCH_LIMIT} s)"
        return 0
    fi
    local start=$SECONDS tests_code bench_code timing
    print_versions
    run_tests
    tests_code=$?
    timing="tests $((SECONDS - start))"
    start=$SECONDS
    run_bench
    bench_code=$?
    timing="$timing, benchmark $((SECONDS - start))"
    summarise "$tests_code" "$bench_code" "$timing"
    [ "$tests_code" -eq 0 ] && [ "$bench_code" -eq 0 ]
}

mkdir -p "$OUT_DIR"
echo "gpu_check: output in $OUT_DIR"
main 2>&1 | tee "$OUT_DIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
