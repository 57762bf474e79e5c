"""The week-one recipe as flags: warmup and a per-step schedule, early stopping, top-k
checkpoints, augmentation (torchvision v2), MixUp/CutMix, EMA weights, debug subsets and
--fast_dev_run. Each checked by what the run writes (curves, checkpoints, status)."""

import csv
import json
import shlex
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_python, tiny_train_argv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.transforms import v2

import eval as evaluate
import train
from data.augment import Augment, train_transform

pytestmark = pytest.mark.slow  # every test here trains


def only_run(checkpoints: Path) -> Path:
    (run_dir,) = checkpoints.iterdir()
    return run_dir


def metrics(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as file:
        return [{name: float(value) for name, value in row.items() if value} for row in csv.DictReader(file)]


def test_warmup_then_cosine_is_a_smooth_per_step_curve(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=4) + ["--warmup_epochs", "1", "--min_lr", "1e-4",
                                                             "--log_freq", "1"]
    assert train.main(argv) == 0
    events = EventAccumulator(str(only_run(tmp_path)), size_guidance={"scalars": 0})
    events.Reload()
    lr = [e.value for e in events.Scalars("train_step/lr")]  # before each of the 12 steps (3 an epoch)
    assert len(lr) == 12 and lr[0] == pytest.approx(3e-3 / 4)  # the ramp starts at lr / (warmup steps + 1)
    assert lr[:4] == sorted(lr[:4]) and lr[3] == pytest.approx(3e-3)  # up over the first epoch's 3 steps
    assert lr[3:] == sorted(lr[3:], reverse=True) and lr[-1] > 1e-4  # then down, every step
    # metrics.csv: the rate each epoch's last step trained with, never the one after the run (--min_lr)
    assert [row["train/lr"] for row in metrics(only_run(tmp_path))] == pytest.approx(lr[2::3])


def test_early_stopping_says_when_and_keeps_its_counter(tiny_demo: Path, tmp_path: Path, caplog) -> None:
    # train/lr only falls under a cosine schedule: it never improves after epoch 1.
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=10) + ["--monitor", "train/lr", "--monitor_mode", "max",
                                                              "--patience", "2"]
    assert train.main(argv) == 0
    run_dir = only_run(tmp_path)
    assert len(metrics(run_dir)) == 3  # epoch 1 is the best; 2 and 3 without improvement
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["stopped_early"] == {"epoch": 3, "best_epoch": 1}
    assert "Stopped early after epoch 3: train/lr did not improve for 2 epochs" in caplog.text
    assert torch.load(run_dir / "last.pth")["checkpoints"]["epochs_without_improvement"] == 2


def test_top_k_keeps_the_k_best_epochs_and_deletes_the_others(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=5) + ["--save_top_k", "2", "--monitor", "train/loss"]
    assert train.main(argv) == 0
    run_dir = only_run(tmp_path)
    losses = {int(row["epoch"]): row["train/loss"] for row in metrics(run_dir)}
    best_two = sorted(losses, key=losses.get)[:2]
    assert sorted(p.name for p in run_dir.glob("top_epoch_*.pth")) == sorted(f"top_epoch_{e}.pth" for e in best_two)
    for epoch in best_two:
        assert torch.load(run_dir / f"top_epoch_{epoch}.pth")["epoch"] == epoch
    assert not list(run_dir.glob(".*.tmp"))


def test_ema_weights_are_validated_monitored_and_evaluated(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=3) + ["--ema_decay", "0.5", "--monitor", "val_ema/acc"]
    assert train.main(argv) == 0
    run_dir = only_run(tmp_path)
    rows = metrics(run_dir)
    assert {"val_ema/acc", "val_ema/loss"} <= set(rows[0])
    best = torch.load(run_dir / "best.pth")
    assert best["checkpoints"]["best"] == max(row["val_ema/acc"] for row in rows)
    assert best["ema"]["n_averaged"] == 3 * best["epoch"]  # updated after every optimizer step
    argv = ["--load_model_path", str(run_dir), "--ema", "--num_workers", "0", "--save_prefix", "ema"]
    assert evaluate.main(argv) == 0
    result = dict(line.split(": ") for line in (run_dir / "best" / "val_ema" / "result.txt").read_text().splitlines())
    assert float(result["loss"]) == pytest.approx(rows[best["epoch"] - 1]["val_ema/loss"], abs=1e-5)


def test_eval_of_averaged_weights_a_run_never_kept_is_refused(trained_run: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        evaluate.main(["--load_model_path", str(trained_run), "--ema"])
    assert "holds no averaged weights; train with --ema_decay" in capsys.readouterr().err


@pytest.mark.parametrize("augment, expected", [
    (Augment(), []),
    (Augment(crop_padding=4), [v2.RandomCrop]),
    (Augment(hflip=0.5, vflip=0.25), [v2.RandomHorizontalFlip, v2.RandomVerticalFlip]),
    (Augment(policy="randaugment", random_erasing=0.25), [v2.RandAugment, v2.RandomErasing]),
    (Augment(policy="trivialaugment"), [v2.TrivialAugmentWide]),
    (Augment(policy="autoaugment"), [v2.AutoAugment]),
])
def test_each_augmentation_flag_adds_its_v2_transform(augment: Augment, expected: list[type]) -> None:
    steps = [type(step) for step in train_transform(augment, 32).transforms]
    assert steps[0] is v2.Resize and v2.Normalize in steps
    assert [s for s in steps if s not in (v2.Resize, v2.ToDtype, v2.Normalize)] == expected


def test_mixup_and_cutmix_train_with_soft_targets(tiny_demo: Path, tmp_path: Path) -> None:
    assert train.main(tiny_train_argv(tiny_demo, tmp_path) + ["--mixup", "0.2", "--cutmix", "1.0",
                                                              "--label_smoothing", "0.1"]) == 0
    assert metrics(only_run(tmp_path))[0]["train/loss"] > 0


def test_mixup_with_a_loss_that_takes_no_soft_targets_is_refused_before_the_run_folder(
        tiny_demo: Path, tmp_path: Path, caplog) -> None:
    assert train.main(tiny_train_argv(tiny_demo, tmp_path) + ["--mixup", "0.2", "--loss", "l1"]) == 2
    assert "--mixup / --cutmix make soft targets, which --loss l1 does not take" in caplog.text
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_eval_computes_the_loss_validation_did_with_its_flags(tiny_demo: Path, tmp_path: Path) -> None:
    """One loss, built in one place: eval.py takes the run's --label_smoothing as training did."""
    assert train.main(tiny_train_argv(tiny_demo, tmp_path) + ["--label_smoothing", "0.2"]) == 0
    run_dir = only_run(tmp_path)
    assert evaluate.main(["--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"]) == 0
    (result_dir,) = (run_dir / "last").iterdir()
    result = dict(line.split(": ") for line in (result_dir / "result.txt").read_text().splitlines())
    assert float(result["loss"]) == pytest.approx(metrics(run_dir)[-1]["val/loss"], abs=5e-7)
    loss_kwargs = torch.load(run_dir / "last.pth")["loss_kwargs"]
    assert loss_kwargs.items() >= {"loss": "cross_entropy", "label_smoothing": 0.2}.items()


@pytest.mark.parametrize("flag", [["--mixup", "0.2"], ["--aug_policy", "randaugment"], ["--random_erasing", "0.5"]])
def test_augmentation_that_cannot_apply_to_masks_is_refused(flag: list[str], tiny_demo: Path, tmp_path: Path,
                                                            caplog) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path) + ["--data_type", "seg_list", "--model_type", "unet",
                                                   "--train_list", str(tiny_demo / "seg_train.txt"),
                                                   "--val_list", str(tiny_demo / "seg_val.txt"), *flag]
    assert train.main(argv) == 2
    assert f"{flag[0]} {flag[1]} cannot apply to segmentation" in caplog.text
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []  # refused before the run folder was made


def test_limit_batches_train_and_validate_on_the_first_batches(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=2) + ["--limit_train_batches", "2", "--limit_val_batches", "1"]
    assert train.main(argv) == 0
    run_dir = only_run(tmp_path)
    assert torch.load(run_dir / "last.pth")["global_step"] == 4  # 2 batches x 2 epochs
    accuracy = metrics(run_dir)[0]["val/acc"]
    assert (accuracy * 16) == pytest.approx(round(accuracy * 16))  # a share of one batch of 16, not of 30


def test_overfitting_one_batch_drives_the_loss_towards_zero(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path, epochs=25) + ["--overfit_batches", "1", "--scheduler", "none"]
    assert train.main(argv) == 0
    rows = metrics(only_run(tmp_path))
    assert rows[-1]["train/loss"] < 0.05 and rows[-1]["train/loss"] < rows[0]["train/loss"] / 20
    assert rows[-1]["val/acc"] == 1.0  # validated on the same batch, unaugmented


def test_the_readmes_overfit_check_reaches_about_zero(tiny_demo: Path, tmp_path: Path) -> None:
    """The README's command as written (issue 29: without --scheduler none, the cosine ended its
    30 one-batch epochs at lr 0 and train/loss 0.119, not "~0"); on the tiny set's batch of 16."""
    (line,) = [line for line in (REPO / "README.md").read_text().splitlines() if "--overfit_batches" in line]
    flags = shlex.split(line.split("#")[0])[2:]  # after `python train.py`
    assert train.main(tiny_train_argv(tiny_demo, tmp_path) + flags) == 0
    assert metrics(only_run(tmp_path))[-1]["train/loss"] < 0.02


def test_fast_dev_run_runs_one_batch_each_and_keeps_nothing(tiny_demo: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    result = run_python(["train.py", *tiny_train_argv(tiny_demo, checkpoints, epochs=50), "--fast_dev_run"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fast_dev_run: one training and one validation batch ran; nothing is kept." in result.stdout
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []
