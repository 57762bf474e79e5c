"""The checkpoint writer's windows: a process killed between last.pth and the names linked to
it (best.pth, epoch_<N>.pth, top-k), status.json's progress against what is on disk, and
weights that an epoch's last update broke. The kill is `os._exit` at the exact point, in a
child process (`killed_while_linking`), never a timer."""

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import run_python, start_training, tiny_train_argv

import eval as evaluate
import train
from runs import listing as runs
from utils.errors import UserError

pytestmark = pytest.mark.slow

KILL_AT_LINK = textwrap.dedent("""
    import os, sys
    from utils import checkpoints
    real_link, links = checkpoints.link_or_copy, []

    def link_or_die(source, target, data=None):
        links.append(target.name)
        if links.count(sys.argv[1]) == int(sys.argv[2]):
            os._exit(137)  # killed (SIGKILL, the OOM killer, power loss) after last.pth, before this link
        real_link(source, target, data)

    checkpoints.link_or_copy = link_or_die
    import train
    sys.exit(train.main(sys.argv[3:]))
""")


def killed_while_linking(name: str, time: int, argv: list[str]) -> Path:
    """Train in a child process that dies just before linking `name` for the `time`-th time;
    returns the run folder it leaves."""
    result = run_python(["-c", KILL_AT_LINK, name, str(time), *argv])
    assert result.returncode == 137, result.stderr[-2000:]
    (run_dir,) = Path(argv[argv.index("--checkpoints_dir") + 1]).iterdir()
    return run_dir


def epoch_of(path: Path) -> int:
    return torch.load(path, mmap=True)["epoch"]


def status_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def test_a_kill_before_the_first_best_link_loses_no_best_pth(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    """Epoch 1 is the best of the three (a larger train/loss is "better" here), and the process
    dies after its last.pth, before best.pth and epoch_1.pth were linked: the resumed run
    links them again, so it ends with both, and eval.py evaluates best.pth."""
    argv = tiny_train_argv(tiny_demo, tmp_path / "ckpt", epochs=3) + [
        "--scheduler", "none", "--monitor", "train/loss", "--monitor_mode", "max", "--save_freq", "1"]
    run_dir = killed_while_linking("best.pth", 1, argv)
    assert epoch_of(run_dir / "last.pth") == 1 and not (run_dir / "best.pth").exists()
    assert "epoch" not in status_of(run_dir)  # status.json never names an epoch that is not on disk
    with pytest.raises(SystemExit):  # until it is resumed, eval.py says how to get best.pth
        evaluate.main(["--load_model_path", str(run_dir), "--num_workers", "0"])
    assert f"`python train.py --resume {run_dir}` writes it" in capsys.readouterr().err
    assert train.main(["--resume", str(run_dir)]) == 0
    status = status_of(run_dir)
    assert status["status"] == "finished" and status["best_epoch"] == 1
    assert epoch_of(run_dir / "best.pth") == 1 and epoch_of(run_dir / "epoch_1.pth") == 1
    assert evaluate.main(["--load_model_path", str(run_dir), "--num_workers", "0"]) == 0


def test_a_kill_in_the_last_epochs_window_is_finished_by_resuming(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    """Killed after the last epoch's last.pth, before its best.pth and top-k links: the run was
    at N/N, dead, with a stale best.pth and the wrong top-k file. --resume (what a sweep runs
    for a dead point) finishes it: every name holds what last.pth says, status finished."""
    argv = tiny_train_argv(tiny_demo, tmp_path / "ckpt", epochs=2) + [
        "--scheduler", "none", "--monitor", "train/loss", "--save_top_k", "1"]
    run_dir = killed_while_linking("best.pth", 2, argv)
    assert epoch_of(run_dir / "last.pth") == 2 and epoch_of(run_dir / "best.pth") == 1
    assert status_of(run_dir)["epoch"] == 1  # the progress of epoch 2 waits for its files
    assert train.main(["--resume", str(run_dir)]) == 0
    assert epoch_of(run_dir / "best.pth") == 2
    assert sorted(p.name for p in run_dir.glob("top_epoch_*.pth")) == ["top_epoch_2.pth"]
    status = status_of(run_dir)
    assert (status["status"], status["epoch"], status["best_epoch"]) == ("finished", 2, 2)
    capsys.readouterr()
    assert runs.main([str(tmp_path / "ckpt"), "--csv"]) == 0
    assert ",finished," in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):  # finished now: nothing more to do without a larger --epochs
        train.main(["--resume", str(run_dir)])


def test_status_names_no_epoch_whose_checkpoint_a_full_disk_kept_off_the_disk(tiny_demo: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    from utils import checkpoints

    real_write, calls = checkpoints.atomic_write_bytes, []

    def write(path, data, mode=None, **options):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's last.pth
            raise OSError(28, "No space left on device")
        real_write(path, data, mode, **options)

    monkeypatch.setattr(checkpoints, "atomic_write_bytes", write)
    assert train.main(tiny_train_argv(tiny_demo, tmp_path, epochs=2) + ["--monitor", "train/loss"]) == 2
    (run_dir,) = tmp_path.iterdir()
    status = status_of(run_dir)
    assert (status["status"], status["epoch"], status["best_epoch"]) == ("failed", 1, 1)
    assert epoch_of(run_dir / "best.pth") == 1


def test_weights_broken_by_an_epochs_last_update_are_never_saved(tiny_demo: Path, tmp_path: Path) -> None:
    trainer, run = start_training(tiny_train_argv(tiny_demo, tmp_path, epochs=3) + ["--print_freq", "1"])
    real_step = trainer.optimizer_step
    steps_per_epoch = len(trainer.train_loader)

    def step_that_breaks_the_weights_at_the_end_of_epoch_2() -> None:
        real_step()
        if trainer.global_step == 2 * steps_per_epoch - 1:  # epoch 2's last update: its loss was finite
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    trainer.optimizer_step = step_that_breaks_the_weights_at_the_end_of_epoch_2
    try:
        with pytest.raises(UserError) as raised:
            trainer.train(run)
    finally:
        run.close()
    message = str(raised.value)
    assert f"The weights became non-finite (nan or inf) at epoch 2, step {steps_per_epoch - 1}" in message
    assert "last.pth, from epoch 1, is the last checkpoint saved" in message
    for name in ("last.pth", "best.pth"):
        checkpoint = torch.load(run.path / name)
        assert checkpoint["epoch"] == 1 and all(value.isfinite().all() for value in checkpoint["model"].values()
                                                if value.is_floating_point())
    assert (run.path / "metrics.csv").read_text().count("\n") == 2  # its header and epoch 1: none of epoch 2


def test_a_loss_that_diverges_before_any_save_says_nothing_was_saved(tiny_demo: Path, tmp_path: Path) -> None:
    trainer, run = start_training(tiny_train_argv(tiny_demo, tmp_path, epochs=1))
    trainer.loss_fn = lambda pred, label: pred.sum() * float("nan")
    try:
        with pytest.raises(UserError, match="The loss became nan at epoch 1, step 0.*no checkpoint was saved"):
            trainer.train(run)
    finally:
        run.close()
    assert not (run.path / "last.pth").exists()
    assert os.listdir(run.path)  # the run's records are there: only no checkpoint
