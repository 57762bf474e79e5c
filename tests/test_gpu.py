"""The template on a CUDA GPU: mixed precision, channels_last, torch.compile, torchrun (NCCL),
DataParallel, a GPU checkpoint evaluated on the CPU, --deterministic runs, SIGKILL + --resume.

Marked `gpu`: skipped without CUDA (tests/conftest.py), so the suite on a CPU is unchanged;
`pytest -m gpu` or scripts/gpu_check.sh runs them where a GPU is. Every run is a real
`python train.py` / `eval.py` process, as a user starts it, on a small demo set: 320 training
images (20 steps of 16 an epoch) and 32 validation images (two full batches, so torch.compile
sees one batch shape). The tests are grouped in classes so that `pytest -n 4 --dist loadscope`
(what gpu_check.sh runs) works through the groups side by side, each group's fixtures made once.
"""

import csv
import math
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from helpers import ONE_TORCHRUN_AT_A_TIME, REPO, run_python, start_and_stop

from data.demo_data import generate_demo_data

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
VAL_SAMPLES = 32
# Train and eval flags per case; --amp takes one value, so "all" pairs bf16 with the others.
SPEED_FLAGS = {
    "bf16": ["--amp", "bf16"],
    "fp16": ["--amp", "fp16"],
    "channels_last": ["--channels_last"],
    "compile": ["--compile"],
    "all": ["--amp", "bf16", "--channels_last", "--compile"],
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu") / "demo"
    generate_demo_data(root, num_train=320, num_val=VAL_SAMPLES)
    return root


def flags(demo: Path, checkpoints: Path, epochs: int = 2) -> list[str]:
    """Two workers: batches come pinned from the loader's pin-memory thread, as on a real GPU run."""
    return ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"),
            "--checkpoints_dir", str(checkpoints), "--epochs", str(epochs), "--batch_size", "16",
            "--num_workers", "2", "--print_freq", "100", "--save_freq", "100"]


def train(argv: list[str], checkpoints: Path, launcher: Sequence[str] = ()) -> Path:
    """Run train.py (under `launcher`, e.g. torchrun); the run directory, checked to be on the GPU."""
    result = run_python([*launcher, "train.py", *argv])
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = checkpoints.iterdir()
    assert " on cuda:0 x " in (run_dir / "log.txt").read_text()  # not silently on the CPU
    return run_dir


def evaluate(run_dir: Path, output: Path, extra: Sequence[str] = (), launcher: Sequence[str] = ()) -> dict:
    """eval.py on the run's best.pth; result.txt as {name: value}."""
    argv = ["eval.py", "--load_model_path", str(run_dir), "--num_workers", "2", "--output_dir", str(output), *extra]
    result = run_python([*launcher, *argv])
    assert result.returncode == 0, result.stderr[-3000:]
    (result_file,) = output.rglob("result.txt")
    return {name: float(value) for name, value in (line.split(": ") for line in result_file.read_text().splitlines())}


def metrics_rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as file:
        return [{name: float(value) for name, value in row.items()} for row in csv.DictReader(file)]


def assert_trained_and_evaluated(run_dir: Path, result: dict, epochs: int = 2) -> None:
    """Finite losses every epoch, and eval.py's accuracy of best.pth equal to that epoch's
    validation (up to one sample: cuDNN may pick other kernels in another process)."""
    rows = metrics_rows(run_dir)
    assert [row["epoch"] for row in rows] == list(range(1, epochs + 1))
    assert all(math.isfinite(row["train/loss"]) and math.isfinite(row["val/loss"]) for row in rows)
    assert abs(result["acc"] - max(row["val/acc"] for row in rows)) <= 1 / VAL_SAMPLES + 1e-6


def speed_flags_case(demo: Path, tmp_path: Path, name: str) -> None:
    checkpoints = tmp_path / "checkpoints"
    run_dir = train(flags(demo, checkpoints) + SPEED_FLAGS[name], checkpoints)
    result = evaluate(run_dir, tmp_path / "eval", SPEED_FLAGS[name])
    assert_trained_and_evaluated(run_dir, result)
    scaler = torch.load(run_dir / "last.pth")["scaler"]
    assert bool(scaler) == ("fp16" in SPEED_FLAGS[name])  # GradScaler on (and saved) with fp16 only
    if scaler:
        assert math.isfinite(scaler["scale"]) and scaler["scale"] > 0


class TestMixedPrecisionAndLayout:
    @pytest.mark.parametrize("name", ["bf16", "fp16", "channels_last"])
    def test_two_epochs_then_eval(self, demo: Path, tmp_path: Path, name: str) -> None:
        speed_flags_case(demo, tmp_path, name)


class TestCompile:
    """Slowest group: Inductor compiles the training and the evaluation graphs in each process."""

    @pytest.mark.parametrize("name", ["compile", "all"])
    def test_two_epochs_then_eval(self, demo: Path, tmp_path: Path, name: str) -> None:
        speed_flags_case(demo, tmp_path, name)


TORCHRUN = ("-m", "torch.distributed.run", "--nproc_per_node=1")


@ONE_TORCHRUN_AT_A_TIME
class TestMultiGpu:
    def test_torchrun_one_process_trains_and_evaluates(self, demo: Path, tmp_path: Path) -> None:
        """What a user types; with one process the template runs as a single process (no NCCL:
        utils/distributed.py takes torchrun for absent when WORLD_SIZE is 1; see the next test)."""
        checkpoints = tmp_path / "checkpoints"
        run_dir = train(flags(demo, checkpoints), checkpoints, TORCHRUN)
        assert "x 1 process(es)" in (run_dir / "log.txt").read_text()
        assert_trained_and_evaluated(run_dir, evaluate(run_dir, tmp_path / "eval", launcher=TORCHRUN))

    def test_one_rank_nccl_process_group_trains_and_evaluates(self, demo: Path, tmp_path: Path) -> None:
        """The multi-process code on one GPU: NCCL group, DDP wrapper, all-reduced metric sums,
        rank-0 buffers, gathered predictions (tests/one_rank_ddp.py says why a shim)."""
        checkpoints = tmp_path / "checkpoints"
        shim = (*TORCHRUN, str(REPO / "tests" / "one_rank_ddp.py"))
        result = run_python([*shim, "train.py", *flags(demo, checkpoints)])
        assert result.returncode == 0, result.stderr[-3000:]
        assert "process group: initialized True" in result.stdout and "nccl" in result.stdout, result.stdout[-2000:]
        (run_dir,) = checkpoints.iterdir()
        assert " on cuda:0 x 1 process(es)" in (run_dir / "log.txt").read_text()
        assert_trained_and_evaluated(run_dir, evaluate(run_dir, tmp_path / "eval", launcher=shim))

    @pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DataParallel needs two GPUs")
    def test_data_parallel_on_two_gpus(self, demo: Path, tmp_path: Path) -> None:
        checkpoints = tmp_path / "checkpoints"
        run_dir = train(flags(demo, checkpoints) + ["--gpus", "0", "1"], checkpoints)
        state = torch.load(run_dir / "last.pth")["model"]
        assert not any(name.startswith("module.") for name in state)  # loads into a plain model
        result = evaluate(run_dir, tmp_path / "eval", ["--gpus", "0", "1"])
        assert_trained_and_evaluated(run_dir, result)


def resume_flags(demo: Path, checkpoints: Path) -> list[str]:
    """Three epochs, --deterministic: on a GPU, bitwise equal runs need deterministic kernels."""
    return flags(demo, checkpoints, epochs=3) + ["--deterministic"]


def only_run(checkpoints: Path) -> Path:
    (run_dir,) = checkpoints.iterdir()
    return run_dir


def assert_same_run(ours: Path, theirs: Path) -> None:
    """Bitwise equal final weights, the same step count and the same metrics.csv."""
    mine, reference = torch.load(ours / "last.pth"), torch.load(theirs / "last.pth")
    assert mine["global_step"] == reference["global_step"] == 60
    for name, tensor in reference["model"].items():
        assert torch.equal(mine["model"][name], tensor), name
    assert (ours / "metrics.csv").read_text() == (theirs / "metrics.csv").read_text()


@pytest.fixture(scope="module")
def deterministic_runs(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two runs with the same flags and seed (TestReproducible's only)."""
    runs = []
    for name in ("first", "second"):
        checkpoints = tmp_path_factory.mktemp(name)
        runs.append(train(resume_flags(demo, checkpoints), checkpoints))
    return runs


class TestReproducible:
    def test_two_deterministic_runs_are_identical(self, deterministic_runs: list[Path]) -> None:
        assert_same_run(*deterministic_runs)

    def test_a_gpu_checkpoint_evaluates_on_the_cpu_with_the_same_result(self, deterministic_runs, tmp_path) -> None:
        """Equal up to float rounding: cuDNN convolutions use TF32 on the GPU, so a sample near a
        tie may flip and the loss differs in the third digit at most."""
        on_gpu = evaluate(deterministic_runs[0], tmp_path / "gpu")
        on_cpu = evaluate(deterministic_runs[0], tmp_path / "cpu", ["--gpus", "-1"])
        assert on_cpu.keys() == on_gpu.keys()
        assert abs(on_cpu["acc"] - on_gpu["acc"]) <= 1 / VAL_SAMPLES + 1e-6
        assert on_cpu["loss"] == pytest.approx(on_gpu["loss"], rel=1e-2)

    def test_sigkill_mid_epoch_then_resume_ends_bit_identical(self, demo, deterministic_runs, tmp_path) -> None:
        """Saved every step; killed at a mid-epoch checkpoint after the first epoch (the process
        is frozen while that is checked: helpers.start_and_stop waits for events, no sleeps)."""
        argv = resume_flags(demo, tmp_path) + ["--save_every_steps", "1"]
        mid_epoch = lambda c: c["epoch"] >= 1 and c["step_in_epoch"] > 0  # noqa: E731
        process = start_and_stop(argv, tmp_path, mid_epoch, signal.SIGKILL)
        assert process.returncode == -signal.SIGKILL, process.output[-3000:]
        run_dir = only_run(tmp_path)
        assert torch.load(run_dir / "last.pth")["step_in_epoch"] > 0
        result = run_python(["train.py", "--resume", str(run_dir)])
        assert result.returncode == 0, result.stderr[-3000:]
        assert_same_run(run_dir, deterministic_runs[0])
