"""train.py end to end on tiny settings: every file of the run directory, curves, checkpoints."""

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import run_bash, run_python, tiny_train_argv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train

RUN_FILES = {"args.json", "args.txt", "command.sh", "metrics.csv", "log.txt", "status.json", "run_info.json",
             "last.pth", "best.pth", "epoch_1.pth", "epoch_2.pth"}


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_run_directory_holds_every_file(trained_run: Path) -> None:
    names = {p.name for p in trained_run.iterdir()}
    assert RUN_FILES <= names
    assert any(name.startswith("events.out.tfevents") for name in names)


def test_metrics_csv_has_one_row_per_epoch_with_every_scalar(trained_run: Path) -> None:
    rows = read_metrics(trained_run)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    columns = list(rows[0])  # contains, in order, not equals: a metric a user adds is one more column
    expected = ["epoch", "train/lr", "train/loss", "train/acc", "val/loss", "val/acc"]
    assert columns[0] == "epoch" and [name for name in columns if name in expected] == expected
    for name in ("train/loss", "train/acc", "train/lr", "val/loss", "val/acc"):
        assert all(0 <= float(row[name]) < 10 for row in rows), name


def test_tensorboard_holds_the_same_curves_and_pictures(trained_run: Path) -> None:
    events = EventAccumulator(str(trained_run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = read_metrics(trained_run)
    epoch_ends = [e.step for e in events.Scalars("compare/epoch")]  # one x axis for all: the global step
    assert [e.value for e in events.Scalars("compare/epoch")] == [1, 2] and epoch_ends == [3, 6]
    for name in ("train/loss", "train/acc", "val/loss", "val/acc"):
        logged = events.Scalars(name)
        assert [e.step for e in logged] == epoch_ends
        assert [round(e.value, 5) for e in logged] == [round(float(row[name]), 5) for row in rows]
    assert {"train/predictions", "val/predictions"} <= set(events.Tags()["images"])
    assert "train/lr" not in events.Tags()["scalars"]  # metrics.csv's per-epoch rate: TensorBoard has train_step/lr
    assert [e.value for e in events.Scalars("compare/last")] == pytest.approx([float(row["val/acc"]) for row in rows])
    assert 0 < events.Scalars("time/data_efficiency")[0].value <= 1  # timings: TensorBoard only
    assert events.Scalars("time/epoch_seconds")[0].value > 0


def test_checkpoints_are_plain_dicts_that_torch_load_reads(trained_run: Path) -> None:
    rows = read_metrics(trained_run)
    accuracies = [float(row["val/acc"]) for row in rows]
    best = torch.load(trained_run / "best.pth")  # weights_only=True, today's default
    last = torch.load(trained_run / "last.pth")
    assert {"model", "optimizer", "scheduler", "epoch", "checkpoints", "metrics", "args", "run_id"} <= set(best)
    assert last["epoch"] == 2 and torch.load(trained_run / "epoch_1.pth")["epoch"] == 1
    assert best["checkpoints"]["best"] == max(accuracies) == best["metrics"]["val/acc"]
    assert best["epoch"] == accuracies.index(max(accuracies)) + 1
    assert best["args"]["model_type"] == "base" and "run_dir" not in best["args"]
    # Every keyword the model was built with: the data's, and its own flags' (width: BaseNet's, by default).
    assert best["model_kwargs"].items() >= {"num_classes": 5, "in_channels": 3, "width": 32}.items()
    assert all(best["args"][name] == value for name, value in best["model_kwargs"].items() if name in best["args"])
    assert best["loss_kwargs"].items() >= {"loss": "cross_entropy", "label_smoothing": 0.0}.items()  # the default


def test_log_txt_holds_what_was_printed(trained_run: Path) -> None:
    log = (trained_run / "log.txt").read_text()
    assert "epoch 1/2: train/lr" in log and "epoch 2/2: train/lr" in log
    assert f"Run directory: {trained_run}" in log and "Best val/acc" in log


@pytest.mark.slow
def test_train_py_as_a_user_runs_it_and_command_sh_reruns_it(tiny_demo: Path, tmp_path: Path) -> None:
    result = run_python(["train.py", *tiny_train_argv(tiny_demo, tmp_path), "--save_prefix", "cli"])
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    assert {"last.pth", "best.pth", "metrics.csv"} <= {p.name for p in run_dir.iterdir()}
    rerun = run_bash(run_dir / "command.sh", cwd=tmp_path)  # command.sh goes back to the right folder
    assert rerun.returncode == 0, rerun.stderr
    runs = sorted(tmp_path.iterdir())
    assert len(runs) == 2 and all((r / "best.pth").is_file() for r in runs)
    first, second = (json.loads((r / "args.json").read_text()) for r in runs)
    assert first == second  # args.json holds the flags only; the folder is the run's own


@pytest.mark.slow
def test_bad_flag_exits_2_with_one_message_and_no_traceback(tmp_path: Path) -> None:
    result = run_python(["train.py", "--batch_size", "0", "--checkpoints_dir", str(tmp_path)])
    assert result.returncode == 2
    assert "error: --batch_size 0 must be 1 or more" in result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_list_line_found_later_is_also_one_message(tiny_demo: Path, tmp_path: Path) -> None:
    bad_list = tmp_path / "train.txt"
    bad_list.write_text((tiny_demo / "train.txt").read_text() + "images/train/00000.png\n")
    argv = tiny_train_argv(tiny_demo, tmp_path / "ckpt") + ["--train_list", str(bad_list)]
    result = run_python(["train.py", *argv])
    assert result.returncode == 2
    assert f"Malformed line {bad_list}:61" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_unknown_monitor_is_reported_with_the_recorded_names(tiny_demo: Path, tmp_path: Path, caplog) -> None:
    assert train.main(tiny_train_argv(tiny_demo, tmp_path) + ["--monitor", "val/f1"]) == 2
    assert "--monitor val/f1 is not a recorded value; recorded: train/acc" in caplog.text


def test_a_diverging_loss_stops_the_run_naming_epoch_and_step(tiny_demo: Path, tmp_path: Path, caplog) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path) + ["--optimizer", "sgd", "--lr", "1e30", "--scheduler", "none"]
    assert train.main(argv) == 2
    assert "The loss became nan at epoch 1, step" in caplog.text


@pytest.mark.slow
def test_fine_tuning_from_a_run_directory_loads_its_best_weights(trained_run: Path, tiny_demo: Path,
                                                                 tmp_path: Path, caplog) -> None:
    assert train.main(tiny_train_argv(tiny_demo, tmp_path) + ["--load_model_path", str(trained_run)]) == 0
    assert f"Weights from {trained_run / 'best.pth'}: loaded 20 of the model's 20 tensors" in caplog.text


@pytest.mark.slow
def test_a_missing_image_read_by_a_worker_process_is_one_message(tiny_demo: Path, tmp_path: Path) -> None:
    bad_list = tmp_path / "train.txt"
    bad_list.write_text(f"{tiny_demo}/images/train/00000.png 0\n{tiny_demo}/gone.png 1\n")
    argv = tiny_train_argv(tiny_demo, tmp_path / "ckpt") + ["--train_list", str(bad_list), "--num_workers", "1",
                                                            "--batch_size", "1"]
    result = run_python(["train.py", *argv])
    assert result.returncode == 2
    assert f"error: The image {tiny_demo}/gone.png (listed at {bad_list}:2) does not exist." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_last_batch_of_one_never_reaches_batchnorm(tiny_demo: Path, tmp_path: Path) -> None:
    """60 samples in batches of 59 would leave a batch of 1, which BatchNorm cannot train on."""
    argv = tiny_train_argv(tiny_demo, tmp_path) + ["--model_type", "resnet18"]
    argv[argv.index("--batch_size") + 1] = "59"
    assert train.main(argv) == 0


def test_a_batch_larger_than_the_training_set_is_refused(tiny_demo: Path, tmp_path: Path, caplog) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path)
    argv[argv.index("--batch_size") + 1] = "100"
    assert train.main(argv) == 2
    assert "--batch_size 100 is larger than the 60 training samples" in caplog.text
