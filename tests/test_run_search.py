"""utils/run_search.py: what a run directory is and finding every one once, through experiment
folders, symbolic links (loops included) and folders that cannot be read."""

import json
import os
from pathlib import Path

import pytest

from runs import listing
from utils.run_search import find_run_dirs, is_run_dir, runs_newest_first


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
