"""`python -m runs` on run directories edited by hand, truncated or corrupted: the table, --csv,
--group_by and --show never crash, show `?` for what cannot be read, and say why."""

import csv
import io
import json
import os
from pathlib import Path

import pytest

from runs import listing as runs

STATUS = {"status": "finished", "started": "2026-11-25T13:00:00+01:00", "ended": "2026-11-25T13:02:05+01:00",
          "epoch": 2, "best": {"val/acc": 0.9}, "best_epoch": 2, "resumes": []}
ARGS = {"model_type": "base", "lr": 0.01, "epochs": 2, "monitor": None, "monitor_mode": None, "seed": 0}
METRICS = "epoch,train/loss,val/acc\n1,1.0,0.5\n2,0.5,0.9\n"


def write_run(folder: Path, **files: str | bytes) -> Path:
    """A finished run's text files, each replaced by `files[name]` when given."""
    folder.mkdir(parents=True)
    contents = {"args.json": json.dumps(ARGS), "status.json": json.dumps(STATUS), "metrics.csv": METRICS,
                "best/val_eval/result.txt": "loss: 0.3\nacc: 0.9\n", "run_info.json": json.dumps({"gpus": []})}
    for name, content in {**contents, **{name.replace("__", "/"): value for name, value in files.items()}}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def run_everything(root: Path, name: str, capsys) -> dict[str, str]:
    """The table, CSV, groups and --show of the runs under root: each must succeed."""
    outputs = {}
    for label, flags in {"table": [], "csv": ["--csv"], "groups": ["--group_by", "lr"], "show": ["--show", name],
                         "sorted": ["--sort", "best", "--desc"], "where": ["--where", "best>0.1"]}.items():
        assert runs.main([str(root), *flags]) == 0, label
        outputs[label] = capsys.readouterr().out
    assert "best None" not in outputs["show"]
    return outputs


def csv_row(out: str, run: str) -> dict[str, str]:
    return next(row for row in csv.DictReader(io.StringIO(out)) if row["run"] == run)


@pytest.mark.parametrize("best", ["0.9", [0.9], None, {"val/acc": 0.9, "val/loss": 0.2}, {"val/acc": "0.9"},
                                  {"val/acc": True}, {}])
def test_a_best_that_is_not_one_number_shows_a_question_mark(tmp_path: Path, best: object, capsys) -> None:
    write_run(tmp_path / "good")
    write_run(tmp_path / "edited", **{"status.json": json.dumps({**STATUS, "best": best})})
    out = run_everything(tmp_path, "edited", capsys)
    assert csv_row(out["csv"], "edited")["best"] == "?" and csv_row(out["csv"], "good")["best"] == "0.9"
    assert "note: edited: status.json: best is " in out["table"]
    assert "best val/acc ?" in out["show"]
    assert "0.9 (n=1)" in out["groups"]  # the group mean counts the one readable value


def test_show_names_the_monitor_even_when_args_leave_it_to_the_default(tmp_path: Path, capsys) -> None:
    """Issue 13: args.json holds "monitor": null (the task's default), and --show printed
    "best None 0.9 at epoch 2"."""
    write_run(tmp_path / "run")
    out = run_everything(tmp_path, "run", capsys)
    assert "2 of 2 epochs done; best val/acc 0.9 at epoch 2" in out["show"]
    write_run(tmp_path / "older", **{"status.json": json.dumps({"status": "finished"}),
                                     "args.json": json.dumps({**ARGS, "monitor": 5, "monitor_mode": [1]})})
    out = run_everything(tmp_path, "older", capsys)  # from metrics.csv, with the default monitor
    assert "best val/acc 0.9 at epoch 2" in out["show"]


HAND_EDITS = {
    "status not an object": {"status.json": "[1, 2]"},
    "status a string": {"status.json": '"running"'},
    "status values of the wrong type": {"status.json": json.dumps({
        **STATUS, "status": ["finished"], "started": 12345, "ended": "not a time", "resumes": 5, "error": {"a": 1},
        "best_epoch": "two", "host": 7, "pid": "123", "heartbeat": []})},
    "resumes with junk": {"status.json": json.dumps({**STATUS, "resumes": [1, {"changed_args": [1]},
                                                                           {"changed_args": {"lr": 5}}]})},
    "nan and infinity": {"status.json": '{"status": "running", "best": {"val/acc": NaN}, "pid": Infinity}',
                         "metrics.csv": "epoch,val/acc\n1,nan\n2,inf\n", "best__val_eval__result.txt": "acc: nan\n"},
    "absurdly nested json": {"status.json": "[" * 100_000 + "]" * 100_000, "args.json": "{\"a\":" * 50_000},
    "args values of the wrong type": {"args.json": json.dumps({**ARGS, "lr": "0.01", "model_type": {"a": 1},
                                                               "exp": [1], "epochs": None})},
    "args not an object": {"args.json": "3"},
    "binary garbage": {"status.json": bytes(range(256)) * 4, "metrics.csv": b"\xff\xfe\x00garbage" * 100,
                       "best__val_eval__result.txt": b"\x80\x81\x82", "run_info.json": b"\xc3\x28"},
    "nul bytes in metrics": {"metrics.csv": "epoch,val/acc\n1,0.5\x00\n"},
    "metrics epoch not whole": {"metrics.csv": "epoch,val/acc\n1,0.5\ninf,0.7\n"},
    "metrics nan epoch": {"metrics.csv": "epoch,val/acc\nnan,0.5\n"},
    "metrics header only": {"metrics.csv": "epoch,val/acc\n"},
    "metrics empty": {"metrics.csv": ""},
    "metrics giant field": {"metrics.csv": "epoch,val/acc\n1," + "9" * 200_000 + "\n"},
    "result lines without names": {"best__val_eval__result.txt": "0.5\n: 0.7\nacc 0.9\nacc: 0.9\n"},
    "run info of the wrong type": {"run_info.json": json.dumps({"gpus": 5, "git_commit": 7, "host": None})},
    "empty files": {"status.json": "", "args.json": "", "run_info.json": ""},
}


@pytest.mark.parametrize("edits", HAND_EDITS.values(), ids=HAND_EDITS.keys())
def test_hand_edited_and_corrupt_files_never_crash_the_listing(tmp_path: Path, edits: dict, capsys) -> None:
    write_run(tmp_path / "good")
    write_run(tmp_path / "edited", **edits)
    out = run_everything(tmp_path, "edited", capsys)
    assert csv_row(out["csv"], "good")["best"] == "0.9"  # the intact run is unaffected


def test_huge_files_are_left_out_with_a_note(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "edited")
    for name in ("status.json", "metrics.csv"):
        with open(run / name, "wb") as file:
            file.truncate(17 * 2**20)  # sparse: cheap to make, 17 MB to read
    out = run_everything(tmp_path, "edited", capsys)
    assert "status.json is too large (over 16 MB" in out["table"]
    assert "metrics.csv is too large" in out["table"]


def test_special_files_are_not_read(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "edited")
    (run / "status.json").unlink()
    os.mkfifo(run / "status.json")  # reading a FIFO would block the listing for ever
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").mkdir()
    out = run_everything(tmp_path, "edited", capsys)
    assert "status.json is unreadable" in out["table"] and "metrics.csv is unreadable" in out["table"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_files_without_read_permission_are_named(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "edited")
    for name in ("status.json", "metrics.csv", "run_info.json"):
        (run / name).chmod(0)
    (run / "best").chmod(0)  # its evaluations cannot be looked into
    try:
        out = run_everything(tmp_path, "edited", capsys)
    finally:
        (run / "best").chmod(0o755)
    assert "status.json is unreadable (PermissionError" in out["table"]
    assert "metrics.csv is unreadable (PermissionError" in out["table"]


def test_sort_by_best_puts_the_best_run_first_whatever_nan_runs_there_are(tmp_path: Path, capsys) -> None:
    """NaN (a diverged run) compares with nothing: sorted among numbers it scrambles them."""
    for name, best in (("nan_a", float("nan")), ("good", 0.9), ("nan_b", float("nan")), ("bad", 0.2),
                       ("middle", 0.5), ("none", None)):
        write_run(tmp_path / name, **{"status.json": json.dumps({**STATUS, "best": {"val/acc": best}})})
    assert runs.main([str(tmp_path), "--sort", "best", "--desc", "--csv"]) == 0
    order = [row["run"] for row in csv.DictReader(io.StringIO(capsys.readouterr().out))]
    assert order == ["good", "middle", "bad", "none", "nan_a", "nan_b"]  # numbers, "?" (unreadable), NaN
    assert runs.main([str(tmp_path), "--sort", "best", "--csv"]) == 0
    order = [row["run"] for row in csv.DictReader(io.StringIO(capsys.readouterr().out))]
    assert order == ["bad", "middle", "good", "none", "nan_a", "nan_b"]


def test_control_characters_in_a_run_folder_name_are_shown_escaped(tmp_path: Path, capsys) -> None:
    name = "evil\n\x1b[31mred\x1b[0m\u202e"
    write_run(tmp_path / name)
    for flags in ([], ["--show", str(tmp_path / name)]):
        assert runs.main([str(tmp_path), *flags]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\u202e" not in out and "evil\\n\\x1b[31mred" in out
    assert runs.main([str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # header, the run, a blank line, the summary


def test_a_dead_runs_duration_ends_at_its_last_sign_of_life(tmp_path: Path, capsys) -> None:
    status = {**STATUS, "status": "running", "ended": None, "host": "elsewhere", "pid": 1,
              "heartbeat": "2020-01-01T10:05:00+00:00", "updated": "2020-01-01T10:05:00+00:00",
              "started": "2020-01-01T10:00:00+00:00"}
    write_run(tmp_path / "dead", **{"status.json": json.dumps(status)})
    assert runs.main([str(tmp_path), "--csv"]) == 0
    row = csv_row(capsys.readouterr().out, "dead")
    assert row["status"] == "dead" and float(row["duration"]) == 300
    assert runs.main([str(tmp_path), "--show", "dead"]) == 0
    assert "took 5m00s" in capsys.readouterr().out
