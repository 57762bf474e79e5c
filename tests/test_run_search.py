"""utils/run_search.py: what a run directory is and finding every one once, through experiment
folders, symbolic links (loops included) and folders that cannot be read; the newest run that
eval.py and predict.py take without --load_model_path, and the unfinished ones they refuse."""

import json
import os
import shutil
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import options
from runs import listing
from utils.errors import UserError
from utils.run_search import find_run_dirs, is_run_dir, newest_matching_run, runs_newest_first


def make_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "args.json").write_text(json.dumps({"model_type": "base", "lr": 0.01}))
    return folder


def test_runs_are_found_in_experiment_folders_but_never_inside_a_run(tmp_path: Path) -> None:
    top, nested = make_run(tmp_path / "base_a"), make_run(tmp_path / "sweep" / "deeper" / "base_b")
    make_run(top / "best" / "val_eval")  # an evaluation inside a run: not a run
    (tmp_path / ".hidden").mkdir()
    make_run(tmp_path / ".hidden" / "base_c")
    assert list(find_run_dirs(tmp_path)) == [top, nested]
    assert list(find_run_dirs(top)) == [top]
    assert list(find_run_dirs(tmp_path / "missing")) == []
    assert not is_run_dir(tmp_path / "missing")


def test_a_symlink_loop_lists_each_run_once(tmp_path: Path, capsys) -> None:
    """Issue 12: `ln -s .. loop` inside an experiment folder listed its run about 40 times."""
    run = make_run(tmp_path / "sweep" / "base_a")
    (tmp_path / "sweep" / "loop").symlink_to("..")  # sweep/loop -> tmp_path: a cycle
    (tmp_path / "self").symlink_to(".")
    assert list(find_run_dirs(tmp_path)) == [run]
    assert listing.main([str(tmp_path), "--csv"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 2  # header and one run


def test_two_links_to_one_run_list_it_once_and_a_linked_in_folder_is_searched(tmp_path: Path) -> None:
    elsewhere = make_run(tmp_path / "big_disk" / "base_far")
    root = tmp_path / "checkpoints"
    run = make_run(root / "base_a")
    (root / "a_link").symlink_to(run)
    (root / "far").symlink_to(elsewhere.parent)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    found = list(find_run_dirs(root))
    assert found == [root / "a_link", root / "far" / "base_far"]  # name order; the first path wins
    assert len({path.resolve() for path in found}) == 2


def test_newest_run_is_the_one_whose_args_were_written_last(tmp_path: Path) -> None:
    old, new = make_run(tmp_path / "z_old"), make_run(tmp_path / "exp" / "a_new")
    os.utime(old / "args.json", (1, 1))
    assert runs_newest_first(tmp_path)[0] == new
    assert runs_newest_first(tmp_path / "missing") == []


def test_a_folder_that_cannot_be_read_is_skipped_and_named(tmp_path: Path, monkeypatch, capsys) -> None:
    run = make_run(tmp_path / "base_a")
    locked = tmp_path / "locked"
    make_run(locked / "base_hidden_from_us")
    real_scandir = os.scandir

    def scandir(path):  # as for a folder without read permission (root reads everything)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    unreadable: list[Path] = []
    assert list(find_run_dirs(tmp_path, unreadable)) == [run]
    assert unreadable == [locked]
    assert listing.main([str(tmp_path)]) == 0
    assert f"note: {locked} cannot be read; runs in it are not listed" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders without read permission")
def test_a_folder_without_permissions_is_skipped(tmp_path: Path) -> None:
    run = make_run(tmp_path / "base_a")
    locked = make_run(tmp_path / "locked" / "base_b").parent
    locked.chmod(0)
    try:
        assert list(find_run_dirs(tmp_path)) == [run]
    finally:
        locked.chmod(0o755)


# The picking of a run by eval.py and predict.py without --load_model_path (issue 29: a run
# still training, or interrupted, was evaluated without a word).
STATES = {  # status.json of a run in each state; "running" on another host with a fresh heartbeat: alive
    "finished": {"status": "finished", "epoch": 10, "best": {"val/acc": 0.988}},
    "running": {"status": "running", "host": "another-host", "pid": 4242, "epoch": 1},  # + a heartbeat of now
    "interrupted": {"status": "interrupted", "epoch": 1},
    "dead": {"status": "running", "host": socket.gethostname(), "pid": 2**31 - 2, "epoch": 3},
    "failed": {"status": "failed", "error": "RuntimeError: out of memory", "epoch": 2},
}


def write_status(run: Path, state: str) -> None:
    """The run's status.json in `state`; a live one's heartbeat is of now (not of when the tests
    were collected: on a busy machine that can be over STALE_HEARTBEAT_S ago)."""
    beat = {"heartbeat": datetime.now(timezone.utc).isoformat()} if state == "running" else {}
    (run / "status.json").write_text(json.dumps(STATES[state] | beat))


def run_in_state(root: Path, name: str, state: str, age: float) -> Path:
    """A run whose args.json is `age` seconds old (the newest run has the smallest age)."""
    run = make_run(root / name)
    write_status(run, state)
    os.utime(run / "args.json", (time.time() - age, time.time() - age))
    return run


@pytest.mark.parametrize("state, words", [("running", "is still running (process 4242 on another-host; after epoch 1"),
                                           ("interrupted", "is interrupted after epoch 1 (resume it: python train.py "
                                                           "--resume"),
                                           ("dead", "is dead (status.json says running, but its process"),
                                           ("failed", "is failed after epoch 2 (RuntimeError: out of memory)")])
def test_the_newest_run_is_refused_unless_it_finished(tmp_path: Path, state: str, words: str) -> None:
    done = run_in_state(tmp_path, "base_done", "finished", age=100)
    newest = run_in_state(tmp_path, "base_new", state, age=1)
    with pytest.raises(UserError) as refused:
        newest_matching_run(str(tmp_path), {})
    message = str(refused.value)
    assert f"the newest run, {newest}, {words}" in message
    assert f"the newest finished one: --load_model_path {done}" in message
    assert f"add --allow_unfinished (or --load_model_path {newest}) to take this one anyway" in message
    assert newest_matching_run(str(tmp_path), {}, allow_unfinished=True) == str(newest)


def test_the_run_taken_is_named_with_its_state(tmp_path: Path, capsys) -> None:
    run = run_in_state(tmp_path, "base_done", "finished", age=1)
    assert newest_matching_run(str(tmp_path), {"model_type": "base"}, prog="predict.py") == str(run)
    said = capsys.readouterr().err
    assert f"predict.py: no --load_model_path given: taking the newest run, {run}: finished after epoch 10, " \
           "best val/acc 0.988." in said


def test_eval_and_predict_refuse_a_running_run_with_exit_code_2(trained_run: Path, tmp_path: Path, capsys) -> None:
    """Through the real command lines: one message naming the run, exit code 2; asked, they take it."""
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    write_status(run, "running")
    for parse, extra in ((options.parse_eval_args, []), (options.parse_predict_args, ["--input", str(tmp_path)])):
        with pytest.raises(SystemExit) as exited:
            parse(["--checkpoints_dir", str(tmp_path), *extra])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("error: No --load_model_path given, and the newest run") and str(run) in error
        args, _ = parse(["--checkpoints_dir", str(tmp_path), "--allow_unfinished", *extra])
        assert args.load_model_path == str(run / "best.pth")
        assert f"taking the newest run, {run}: still running" in capsys.readouterr().err
