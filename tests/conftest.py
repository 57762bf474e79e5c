"""Shared fixtures: a tiny demo data set and one trained run. Helper functions live in
tests/helpers.py (imported as `from helpers import ...`), not here.

Tests never touch the repository's own checkpoints/ or data/: everything is written
under pytest's temporary folders.
"""

from pathlib import Path

import pytest
import torch
from helpers import tiny_train_argv

from data.demo_data import generate_demo_data


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `gpu` need CUDA: skipped without it, so the suite on a CPU is unchanged."""
    if item.get_closest_marker("gpu") and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small copy of the demo set (60 train, 30 val images): same generator, fewer samples."""
    root = tmp_path_factory.mktemp("data") / "demo"
    generate_demo_data(root, num_train=60, num_val=30)
    return root


@pytest.fixture(scope="session")
def trained_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 2-epoch training run (in this process), shared by the tests that read it."""
    import train

    checkpoints = tmp_path_factory.mktemp("checkpoints")
    argv = tiny_train_argv(tiny_demo, checkpoints, epochs=2) + ["--save_freq", "1"]
    assert train.main(argv) == 0
    (run_dir,) = checkpoints.iterdir()
    return run_dir
