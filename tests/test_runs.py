"""Finding and comparing runs: --exp folders, what counts as a run directory, the runs table
(`python -m runs`: columns, --where, --sort, --csv, --show) on fake run directories,
broken and half-written runs, and the hyper-parameters TensorBoard's HPARAMS tab reads."""

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest
from helpers import run_python, tiny_train_argv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

import eval as evaluate
import options
import train
from runs import listing as runs
from utils.run_search import find_run_dirs, runs_newest_first

ARGS = {"model_type": "base", "data_type": "list", "lr": 0.003, "epochs": 3, "seed": 42, "exp": None,
        "monitor": "val/acc", "monitor_mode": "max", "num_workers": 2, "gpus": None, "batch_size": 64}


def fake_run(parent: Path, name: str, status: str = "finished", metrics: list[tuple] = ((1, 0.5), (2, 0.9), (3, 0.8)),
             results: str | None = None, **args: object) -> Path:
    """A run directory as train.py leaves it, written directly: args.json, status.json,
    metrics.csv (`(epoch, val/acc)` rows) and, with `results`, an evaluation's result.txt."""
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    (run_dir / "args.json").write_text(json.dumps({**ARGS, **args, "run_dir": str(run_dir)}))
    (run_dir / "status.json").write_text(json.dumps({
        "status": status, "started": "2026-11-25T13:00:00+01:00",
        "ended": None if status == "running" else "2026-11-25T13:02:05+01:00"}))
    lines = ["epoch,train/loss,val/loss,val/acc"] + [f"{e},{1 / e},{2 / e},{acc}" for e, acc in metrics]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    if results is not None:
        (run_dir / "best" / "val_eval").mkdir(parents=True)
        (run_dir / "best" / "val_eval" / "result.txt").write_text(results)
    return run_dir


def list_runs(root: Path, *flags: str, capsys) -> tuple[int, str, str]:
    code = runs.main([str(root), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> list[dict[str, str]]:
    """The text table as dicts, cut where the header's columns start."""
    header, *lines = out.split("\n\n")[0].splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    names = header.split()
    return [{name: line[start:end].strip() for name, start, end in zip(names, starts, [*starts[1:], None])}
            for line in lines]


@pytest.fixture
def three_runs(tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    fake_run(root, "base_a", lr=0.003, results="loss: 0.25\nacc: 0.96\nacc/circle: 1.0\n")
    fake_run(root / "sweep", "base_b", lr=0.01, exp="sweep", metrics=[(1, 0.95), (2, 0.97)], epochs=2)
    fake_run(root, "better_c", model_type="better", lr=0.01, status="failed", metrics=[(1, 0.4)])
    return root


@pytest.mark.slow
def test_exp_puts_the_run_in_its_folder_and_eval_still_finds_the_newest_run(tiny_demo: Path, tmp_path: Path) -> None:
    old = fake_run(tmp_path, "base_exp_old")
    os.utime(old, (1, 1))
    assert train.main(tiny_train_argv(tiny_demo, tmp_path) + ["--exp", "lr_sweep"]) == 0
    (run_dir,) = (tmp_path / "lr_sweep").iterdir()
    assert json.loads((run_dir / "args.json").read_text())["exp"] == "lr_sweep"
    assert evaluate.main(["--checkpoints_dir", str(tmp_path), "--num_workers", "0"]) == 0
    (result_dir,) = (run_dir / "best").iterdir()  # the newest run's best.pth was evaluated
    # The evaluation's folder (newer, with its own args.json) is not taken for a run.
    args, _ = options.parse_eval_args(["--checkpoints_dir", str(tmp_path)])
    assert args.load_model_path == str(run_dir / "best.pth") and (result_dir / "args.json").is_file()
    assert runs_newest_first(tmp_path)[0] == run_dir
    assert sorted(find_run_dirs(tmp_path)) == sorted([old, run_dir])


@pytest.mark.parametrize("name", ["a/b", "..", "", ".hidden", "back\\slash", " padded"])
def test_an_experiment_name_must_be_one_visible_folder_name(name: str, tiny_demo: Path, tmp_path: Path,
                                                            capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        options.parse_train_args(tiny_train_argv(tiny_demo, tmp_path) + ["--exp", name])
    assert exit_info.value.code == 2
    assert f"--exp {name!r} is not a folder name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_evaluations_of_loose_checkpoints_are_not_runs(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "exp1", "base_run")
    (tmp_path / "pretrained.pth").write_bytes(b"weights")
    loose_eval = tmp_path / "pretrained" / "val_eval"
    loose_eval.mkdir(parents=True)
    (loose_eval / "args.json").write_text("{}")
    os.utime(run, (1, 1))
    assert list(find_run_dirs(tmp_path)) == [run]
    assert runs_newest_first(tmp_path)[0] == run
    assert runs_newest_first(tmp_path / "missing") == []


def test_table_shows_the_differing_args_best_value_and_newest_evaluation(three_runs: Path, capsys) -> None:
    code, out, _ = list_runs(three_runs, "--columns", "all", capsys=capsys)
    assert code == 0
    rows = {row["run"]: row for row in table_rows(out)}
    header = out.splitlines()[0].split()
    assert header[:7] == ["run", "exp", "status", "started", "duration", "model_type", "data_type"]
    assert {"lr", "epochs", "best", "best_epoch", "eval", "eval/acc", "eval/loss"} <= set(header)
    assert not {"seed", "num_workers", "run_dir", "monitor", "eval/acc/circle"} & set(header)  # equal, noise, per class
    assert rows["base_a"]["best"] == "val/acc 0.9" and rows["base_a"]["best_epoch"] == "2"
    assert rows["base_a"]["eval"] == "best/val_eval" and rows["base_a"]["eval/acc"] == "0.96"
    assert rows["base_b"]["exp"] == "sweep" and rows["base_b"]["lr"] == "0.01"
    assert rows["better_c"]["status"] == "failed" and rows["base_a"]["duration"] == "2m05s"
    assert "3 runs; best = best val/acc (max)" in out


def test_best_follows_the_monitor_and_its_mode(tmp_path: Path, capsys) -> None:
    fake_run(tmp_path, "by_loss", monitor="val/loss", monitor_mode="min", metrics=[(1, 0.1), (2, 0.2), (3, 0.3)])
    code, out, _ = list_runs(tmp_path, "--csv", capsys=capsys)
    (row,) = csv.DictReader(io.StringIO(out))
    assert (float(row["best"]), row["best_epoch"]) == (2 / 3, "3")  # val/loss = 2 / epoch, smallest last


@pytest.mark.parametrize(("condition", "expected"), [
    ("model_type=base", {"base_a", "base_b"}),
    ("model_type!=base", {"better_c"}),
    ("val/acc>0.85", {"base_b"}),  # the last epoch's value: base_a ended at 0.8
    ("best>=0.9", {"base_a", "base_b"}),
    ("epochs<3", {"base_b"}),
    ("lr=1e-2", {"base_b", "better_c"}),  # numbers compare as numbers
    ("exp=", {"base_a", "better_c"}),
    ("eval/acc>0.5", {"base_a"}),  # runs without the value are left out
    ("status=FINISHED", {"base_a", "base_b"}),
    ("started>=2026-11-25", {"base_a", "base_b", "better_c"}),
])
def test_where_filters_on_args_metrics_and_evaluations(three_runs: Path, condition: str, expected: set[str],
                                                       capsys) -> None:
    code, out, _ = list_runs(three_runs, "--where", condition, capsys=capsys)
    assert code == 0
    assert {row["run"] for row in table_rows(out)} == expected


def test_several_where_conditions_must_all_hold(three_runs: Path, capsys) -> None:
    code, out, _ = list_runs(three_runs, "--where", "lr=0.01", "--where", "status=finished", capsys=capsys)
    assert [row["run"] for row in table_rows(out)] == ["base_b"]
    code, out, _ = list_runs(three_runs, "--where", "best>0.99", capsys=capsys)
    assert code == 0 and out.startswith("No run matches best>0.99 (of 3 runs")


@pytest.mark.parametrize(("flags", "message"), [
    (["--where", "lrate>1"], "no run has a column 'lrate'; columns: "),
    (["--where", "just_a_name"], "is not a condition"),
    (["--sort", "speed"], "--sort 'speed': no run has that column"),
])
def test_unknown_columns_and_malformed_conditions_are_one_line_errors(three_runs: Path, flags: list[str],
                                                                      message: str, capsys) -> None:
    code, out, err = list_runs(three_runs, *flags, capsys=capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_sort_by_any_column_with_runs_lacking_it_last(three_runs: Path, capsys) -> None:
    _, out, _ = list_runs(three_runs, "--sort", "best", "--desc", capsys=capsys)
    assert [row["run"] for row in table_rows(out)] == ["base_b", "base_a", "better_c"]
    _, out, _ = list_runs(three_runs, "--sort", "best", capsys=capsys)
    assert [row["run"] for row in table_rows(out)] == ["better_c", "base_a", "base_b"]
    for direction in ([], ["--desc"]):
        _, out, _ = list_runs(three_runs, "--sort", "eval/acc", *direction, capsys=capsys)
        assert [row["run"] for row in table_rows(out)][0] == "base_a"


def test_csv_has_every_column_with_full_precision(three_runs: Path, capsys) -> None:
    code, out, _ = list_runs(three_runs, "--csv", "--sort", "run", capsys=capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["run"] for row in rows] == ["base_a", "base_b", "better_c"]
    assert {"run_dir", "num_workers", "seed", "val/acc", "train/loss", "eval/acc", "path", "problems"} <= set(rows[0])
    assert rows[0]["train/loss"] == str(1 / 3) and rows[0]["duration"] == "125.0"
    assert rows[1]["path"] == str(three_runs / "sweep" / "base_b") and rows[2]["eval"] == ""


def test_show_prints_everything_one_run_records(three_runs: Path, capsys) -> None:
    run_dir = three_runs / "base_a"
    (run_dir / "run_info.json").write_text(json.dumps({"git_commit": "abc123", "git_dirty": True, "host": "box"}))
    (run_dir / "command.sh").write_text("#!/usr/bin/env bash\ncd /somewhere\npython train.py --lr 0.003\n")
    (run_dir / "last.pth").write_bytes(b"\0" * 2048)
    code, out, _ = list_runs(three_runs, "--show", "base_a", capsys=capsys)  # a name found under root
    assert code == 0
    assert "status   finished" in out and "commit abc123 + uncommitted changes in code.patch" in out
    assert f"recreate: python -m runs.reproduce {run_dir}" in out
    assert "command  python train.py --lr 0.003" in out and "in /somewhere" in out
    assert "  lr: 0.003" in out and "  exp: None" in out
    assert "3 of 3 epochs done; best val/acc 0.9 at epoch 2" in out
    assert "last.pth" in out and "2.0 kB" in out
    assert "best/val_eval  ?  loss 0.25  acc 0.96  (+1 per-class values)" in out
    assert runs.main([str(three_runs), "--show", str(three_runs / "sweep" / "base_b")]) == 0  # or a path


def test_half_written_running_and_broken_runs_are_listed_with_what_is_known(three_runs: Path, capsys) -> None:
    broken = fake_run(three_runs, "base_broken", results="loss: 0.5\nacc: oops\n")
    (broken / "args.json").write_text('{"model_type": "ba')  # cut off mid-write
    (broken / "status.json").unlink()
    with open(broken / "metrics.csv", "a") as file:
        file.write("4,0.25,0.5")  # a row cut off
    fake_run(three_runs, "base_running", status="running", metrics=[])
    (three_runs / "empty_folder").mkdir()
    code, out, _ = list_runs(three_runs, capsys=capsys)
    assert code == 0
    rows = {row["run"]: row for row in table_rows(out)}
    assert set(rows) == {"base_a", "base_b", "better_c", "base_broken", "base_running"}
    assert rows["base_broken"]["status"] == "?" and rows["base_broken"]["model_type"] == "?"
    assert rows["base_broken"]["epoch"] == "3" and rows["base_broken"]["eval/loss"] == "0.5"
    assert rows["base_running"]["status"] == "running" and rows["base_running"]["epoch"] == ""
    note = next(line for line in out.splitlines() if line.startswith("note: base_broken:"))
    assert "args.json is unreadable" in note and "status.json is missing" in note
    assert "metrics.csv line 5 is broken" in note and "result.txt line 2" in note
    code, out, _ = list_runs(three_runs, "--show", str(broken), capsys=capsys)
    assert code == 0 and "status   ? (status.json missing" in out and "args.json is unreadable" in out


def test_no_runs_and_no_such_run_are_clear_errors(tmp_path: Path, capsys) -> None:
    code, _, err = list_runs(tmp_path, capsys=capsys)
    assert code == 2 and "No run directories under" in err
    fake_run(tmp_path, "base_a")
    code, _, err = list_runs(tmp_path, "--show", "base_z", capsys=capsys)
    assert code == 2 and "--show base_z: not a run directory" in err


def test_the_command_runs_as_a_module_without_importing_torch(three_runs: Path) -> None:
    code = f"import sys, runs.listing; sys.exit(runs.listing.main([{str(three_runs)!r}]) or 'torch' in sys.modules)"
    result = run_python(["-c", code])
    assert result.returncode == 0, result.stderr
    assert "base_a" in result.stdout  # listed, and torch was never imported


def test_tensorboard_hparams_hold_the_args_and_the_compared_metrics(trained_run: Path) -> None:
    # The hparams in the run's own folder: add_hparams would make a timestamped sub-folder, a
    # second run; so would a steps/ folder (per-step curves share the global-step x axis).
    assert {p.parent for p in trained_run.rglob("events.out.tfevents.*")} == {trained_run}
    events = EventAccumulator(str(trained_run), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    args = json.loads((trained_run / "args.json").read_text())
    assert start.hparams["lr"].number_value == args["lr"]
    assert start.hparams["model_type"].string_value == "base"
    assert start.hparams["monitor"].string_value == "val/acc"
    # Only the flags that identify the run: those always compared, and those set away from their default.
    assert {"model_type", "data_type", "lr", "batch_size", "epochs", "train_list"} <= set(start.hparams)
    assert not {"resume", "debug", "num_workers", "seed"} & set(start.hparams)
    # No experiment record: TensorBoard then collects the metrics of every run (see docs).
    assert "_hparams_/experiment" not in content and "_hparams_/session_end_info" in content
    accuracies = [float(row["val/acc"]) for row in csv.DictReader(open(trained_run / "metrics.csv"))]
    best = events.Scalars("compare/best")  # each epoch: the best so far
    assert [(e.step, e.value) for e in best] == [(3, pytest.approx(accuracies[0])), (6, pytest.approx(max(accuracies)))]


def test_tensorboard_shows_the_validation_confusion_matrix_each_epoch(trained_run: Path) -> None:
    """Issue 26: the confusion matrix was computed every epoch but drawn nowhere."""
    events = EventAccumulator(str(trained_run), size_guidance={"images": 0})
    events.Reload()
    epochs = len((trained_run / "metrics.csv").read_text().splitlines()) - 1
    confusion = events.Images("val/confusion")
    assert len(confusion) == epochs and confusion[-1].width > 100 and confusion[-1].height > 100
    assert "val/predictions" in events.Tags()["images"]


def test_an_evaluation_of_a_checkpoint_written_again_since_is_marked_old(tmp_path: Path, capsys) -> None:
    """Issue 29: during a resume the table showed `best 0.988` beside `eval/acc 0.328`, the
    evaluation of the epoch-1 best.pth, with no word that they are of different checkpoints."""
    run = fake_run(tmp_path, "base_a", results="loss: 1.5\nacc: 0.328\n")
    (run / "best" / "val_eval" / "args.json").write_text("{}")  # the evaluation opened ...
    (run / "best.pth").write_bytes(b"")
    os.utime(run / "best" / "val_eval" / "args.json", (1_000, 1_000))  # ... before best.pth was written again
    code, out, _ = list_runs(tmp_path, capsys=capsys)
    assert code == 0
    assert table_rows(out)[0]["eval"] == "best/val_eval (old)"
    assert "note: base_a: its evaluation best/val_eval (old) is of an earlier best.pth: the run went on after it" in out
    assert f"python eval.py --load_model_path {run}" in out
    _, out, _ = list_runs(tmp_path, "--csv", capsys=capsys)
    assert next(csv.DictReader(io.StringIO(out)))["eval_outdated"] == "True"
    _, out, _ = list_runs(tmp_path, "--show", str(run), capsys=capsys)
    assert "(old: best.pth was written again after it)" in out
    os.utime(run / "best.pth", (500, 500))  # evaluated after the last write: current, no note
    _, out, _ = list_runs(tmp_path, capsys=capsys)
    assert table_rows(out)[0]["eval"] == "best/val_eval" and "note:" not in out


@pytest.fixture
def wide_runs(tmp_path: Path) -> Path:
    """Runs of two tasks with many differing flags and long values: a table too wide to read
    (issue 26: 329 characters) unless it narrows."""
    for i, lr in enumerate((0.001, 0.003, 0.01)):
        fake_run(tmp_path, f"base_experiment_2026-11-25_{i}", lr=lr, weight_decay=0.01 * i, hflip=0.5 * i,
                 crop_padding=i, optimizer=["adamw", "sgd", "adamw"][i], label_smoothing=0.1 * i,
                 train_list=f"data/demo/some/long/folder/train_{i}.txt",
                 results="loss: 0.25\nacc: 0.96\nmacro_f1: 0.9\nacc/circle: 1.0\n")
    seg = fake_run(tmp_path, "unet_segmentation_run", model_type="unet", data_type="seg_list", monitor="", metrics=[])
    status = json.loads((seg / "status.json").read_text())
    (seg / "status.json").write_text(json.dumps({**status, "best": {"val/miou": 0.8125}, "best_epoch": 3}))
    return tmp_path


def test_the_table_fits_100_characters_and_its_notes_name_only_columns_shown(wide_runs: Path, capsys) -> None:
    code, out, _ = list_runs(wide_runs, capsys=capsys)
    assert code == 0
    table, notes = out.split("\n\n", 1)
    assert max(len(line) for line in table.splitlines()) <= 100
    header = table.splitlines()[0].split()
    assert {"run", "status", "best", "lr"} <= set(header)  # lr: the flag that tells runs apart, kept
    rows = {row["run"]: row for row in table_rows(out)}
    assert rows["base_experiment_2026-11-25_2"]["best"] == "val/acc 0.9"  # the best names its metric
    assert rows["unet_segmentation_run"]["best"] == "val/miou 0.8125"
    _, csv_out, _ = list_runs(wide_runs, "--csv", capsys=capsys)
    every_column = set(next(csv.reader(io.StringIO(csv_out))))
    named = {word.strip(";,():") for word in notes.split()} & every_column
    assert named <= set(header), f"the notes name columns the table does not show: {named - set(header)}"
    left_out = int(re.search(r"(\d+) more columns?: --columns all", notes).group(1))
    _, out, _ = list_runs(wide_runs, "--columns", "all", capsys=capsys)
    every_header = out.splitlines()[0].split()
    assert len(every_header) == len(header) + left_out and set(header) <= set(every_header)
    assert {"weight_decay", "label_smoothing", "started"} <= set(every_header)
    assert "more column" not in out


def test_columns_chooses_the_columns_and_refuses_an_unknown_one(wide_runs: Path, capsys) -> None:
    code, out, _ = list_runs(wide_runs, "--columns", "run,lr,eval/acc", capsys=capsys)
    assert code == 0 and out.splitlines()[0].split() == ["run", "lr", "eval/acc"]
    assert "best =" not in out  # the note explains only columns shown
    code, out, err = list_runs(wide_runs, "--columns", "run,no_such_column", capsys=capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--columns 'run,no_such_column': no such column: no_such_column" in err and "fit, all" in err
