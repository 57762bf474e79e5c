"""torchrun: 2 CPU processes (gloo) train for an epoch; rank 0 alone writes the run directory,
and the validation accuracy equals a single-process evaluation of the saved weights."""

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import ONE_TORCHRUN_AT_A_TIME, REPO, run_python, tiny_train_argv

import eval as evaluate

pytestmark = [pytest.mark.slow, ONE_TORCHRUN_AT_A_TIME]  # torchrun processes


@pytest.fixture(scope="module")
def ddp_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoints = tmp_path_factory.mktemp("ddp")
    argv = tiny_train_argv(tiny_demo, checkpoints, epochs=1) + ["--save_prefix", "ddp"]
    result = run_python(["-m", "torch.distributed.run", "--nproc_per_node=2", "train.py", *argv], cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = checkpoints.iterdir()
    return run_dir


def test_rank_0_alone_writes_one_run_directory(ddp_run: Path) -> None:
    names = {p.name for p in ddp_run.iterdir()}
    assert {"args.json", "metrics.csv", "last.pth", "best.pth", "log.txt", "status.json"} <= names
    assert len([n for n in names if n.startswith("events.out.tfevents") and "hparams" not in n]) == 1  # one writer
    assert json.loads((ddp_run / "status.json").read_text())["status"] == "finished"
    assert "-m torch.distributed.run --nproc_per_node=2 train.py" in (ddp_run / "command.sh").read_text()
    assert "x 2 process(es)" in (ddp_run / "log.txt").read_text()


def test_validation_covers_the_set_once_and_equals_a_single_process_eval(ddp_run: Path) -> None:
    with open(ddp_run / "metrics.csv") as file:
        val_acc = float(next(csv.DictReader(file))["val/acc"])
    assert evaluate.main(["--load_model_path", str(ddp_run / "last.pth"), "--num_workers", "0"]) == 0
    (result_dir,) = (ddp_run / "last").iterdir()
    result = dict(line.split(": ") for line in (result_dir / "result.txt").read_text().splitlines())
    assert float(result["acc"]) == pytest.approx(val_acc, abs=5e-7)  # result.txt has 6 decimals
    assert len((result_dir / "predictions.csv").read_text().splitlines()) == 1 + 30  # every sample once


def test_a_ddp_checkpoint_loads_into_a_plain_model(ddp_run: Path) -> None:
    from model.base import BaseNet
    state = torch.load(ddp_run / "last.pth")["model"]
    assert not any(name.startswith("module.") for name in state)
    BaseNet(num_classes=5).load_state_dict(state)  # strict: raises if anything does not fit


def test_torchrun_evaluation_writes_the_same_predictions_in_order(ddp_run: Path) -> None:
    argv = ["eval.py", "--load_model_path", str(ddp_run / "best.pth"), "--num_workers", "0", "--batch_size", "7",
            "--save_prefix", "ddp"]
    result = run_python(["-m", "torch.distributed.run", "--nproc_per_node=2", *argv], cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    single = run_python(["eval.py", "--load_model_path", str(ddp_run / "best.pth"), "--num_workers", "0",
                         "--save_prefix", "one"], cwd=REPO)
    assert single.returncode == 0, single.stderr[-3000:]
    two, one = (ddp_run / "best" / "val_ddp"), (ddp_run / "best" / "val_one")
    assert (two / "predictions.csv").read_text() == (one / "predictions.csv").read_text()
    assert (two / "result.txt").read_text().splitlines()[1] == (one / "result.txt").read_text().splitlines()[1]


def test_gpus_flag_under_torchrun_is_refused(monkeypatch) -> None:
    import options
    from utils.errors import UserError
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun tells each process
    with pytest.raises(UserError, match="--gpus 0 is for a single process; under torchrun"):
        options.check_gpus([0])


def test_uneven_validation_shards_do_not_hang(tiny_demo: Path, tmp_path: Path) -> None:
    """17 validation samples, batches of 8, 2 processes: one process has 2 batches, the other 1."""
    val = tmp_path / "val.txt"
    val.write_text("".join((tiny_demo / "val.txt").read_text().splitlines(keepends=True)[:17]))
    (tmp_path / "classes.txt").write_text((tiny_demo / "classes.txt").read_text())
    val.write_text(val.read_text().replace("images/", f"{tiny_demo}/images/"))
    argv = tiny_train_argv(tiny_demo, tmp_path / "ckpt") + ["--val_list", str(val), "--batch_size", "8"]
    result = run_python(["-m", "torch.distributed.run", "--nproc_per_node=2", "train.py", *argv], cwd=REPO,
                        timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]


def test_an_evaluation_set_smaller_than_the_processes_is_refused() -> None:
    from utils.distributed import ShardSampler
    from utils.errors import UserError
    with pytest.raises(UserError, match="The evaluation set has 1 sample\\(s\\), fewer than the 2 processes"):
        ShardSampler(1, rank=1, world_size=2)
