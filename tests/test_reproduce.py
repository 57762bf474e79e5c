"""`python -m runs.reproduce`: a worktree at a run's recorded commit with its code.patch applied
holds exactly the code the run ran; its command runs there; and every way it cannot work is
one clear error (exit 2) that leaves nothing behind."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_project, run_python

from runs import reproduce
from scaffold.project_files import project_files
from utils import run_info

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
COMMAND_SH = "#!/usr/bin/env bash\n# Recorded 2026-11-25 13:00:00.\ncd /where/it/ran\npython new_idea.py --lr 0.5\n"
IDEA = "import os, sys\nopen('ran.txt', 'w').write(' '.join([os.getcwd(), sys.executable, *sys.argv[1:]]))\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the project as a git repository with one commit: (folder, commit)."""
    folder = copy_project(tmp_path_factory.mktemp("repo") / "project")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(GIT + command, cwd=folder, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True).stdout.strip()
    return folder, commit


@pytest.fixture
def dirty_run(project: tuple[Path, str], tmp_path: Path, monkeypatch) -> Path:
    """A run directory whose run_info.json and code.patch were recorded by utils/run_info.py
    (as train.py does) while the project had a changed and an untracked file; the project is
    put back to its commit afterwards, so only the records hold those changes."""
    folder, commit = project
    loss = (folder / "loss.py").read_text()
    (folder / "loss.py").write_text(loss + "# an uncommitted tweak\n")
    (folder / "new_idea.py").write_text(IDEA)
    run_dir = tmp_path / "checkpoints" / "base_exp_20261125-130000"
    run_dir.mkdir(parents=True)
    monkeypatch.setattr(run_info, "CODE_ROOT", folder)
    run_info.save_run_info(run_dir)
    (run_dir / "command.sh").write_text(COMMAND_SH)
    (folder / "loss.py").write_text(loss)
    (folder / "new_idea.py").unlink()
    return run_dir


def test_the_worktree_holds_exactly_the_code_the_run_ran(project: tuple[Path, str], dirty_run: Path,
                                                         tmp_path: Path, capsys) -> None:
    folder, commit = project
    expected = {name: (folder / name).read_bytes() for name in project_files(folder)}
    expected["loss.py"] += b"# an uncommitted tweak\n"
    expected["new_idea.py"] = IDEA.encode()
    dest = tmp_path / "reproduced"
    assert reproduce.main([str(dirty_run), "--dest", str(dest)], repo=folder) == 0
    assert {name: (dest / name).read_bytes() for name in project_files(dest)} == expected
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True).stdout.strip()
    assert head == commit
    out = capsys.readouterr().out
    assert f"cd {dest} && {shlex.join([sys.executable, 'new_idea.py', '--lr', '0.5'])}" in out  # this Python
    assert "/where/it/ran" not in out
    assert not (dest / "ran.txt").exists()  # printed, not run


def test_run_runs_the_command_in_the_worktree_with_this_python(project: tuple[Path, str], dirty_run: Path,
                                                               tmp_path: Path) -> None:
    dest = tmp_path / "rerun"
    assert reproduce.main([str(dirty_run), "--dest", str(dest), "--run"], repo=project[0]) == 0
    # The patch's new file ran in the worktree, with this test's Python (the worktree has no .venv).
    assert (dest / "ran.txt").read_text() == f"{dest} {sys.executable} --lr 0.5"


def test_a_command_recorded_with_a_virtualenvs_python_runs_with_this_one(project: tuple[Path, str], dirty_run: Path,
                                                                          tmp_path: Path) -> None:
    """After the README's set-up command.sh says `.venv/bin/python ...`: the worktree has no .venv."""
    (dirty_run / "command.sh").write_text(COMMAND_SH.replace("\npython ", "\n.venv/bin/python "))
    dest = tmp_path / "rerun"
    assert reproduce.main([str(dirty_run), "--dest", str(dest), "--run"], repo=project[0]) == 0
    assert (dest / "ran.txt").read_text() == f"{dest} {sys.executable} --lr 0.5"


def test_the_command_line_tool_uses_the_projects_own_repository(project: tuple[Path, str], dirty_run: Path,
                                                                tmp_path: Path) -> None:
    folder, _ = project
    (dirty_run / "status.json").write_text(json.dumps({"status": "finished", "resumes": [
        {"changed_args": {"epochs": {"was": 10, "now": 20}}}]}))
    result = run_python(["-m", "runs.reproduce", str(dirty_run), "--dest", str(tmp_path / "cli")], cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "resumed with changed flags (--epochs 10 -> 20)" in result.stdout
    assert (tmp_path / "cli" / "new_idea.py").is_file()  # the copy's repository: its own PROJECT_ROOT


def break_run_info(run_dir: Path) -> None:
    (run_dir / "run_info.json").unlink()


def no_commit(run_dir: Path) -> None:
    (run_dir / "run_info.json").write_text(json.dumps({"git_commit": None, "git_dirty": None}))


def unknown_commit(run_dir: Path) -> None:
    (run_dir / "run_info.json").write_text(json.dumps({"git_commit": "1" * 40, "git_dirty": True}))


def patch_missing(run_dir: Path) -> None:
    (run_dir / "code.patch").unlink()


def patch_conflicts(run_dir: Path) -> None:
    lines = (run_dir / "code.patch").read_text().splitlines(keepends=True)
    context = next(i for i, line in enumerate(lines) if line.startswith(" "))
    lines[context] = " a line the commit does not have\n"
    (run_dir / "code.patch").write_text("".join(lines))


def unclosed_quote(run_dir: Path) -> None:
    (run_dir / "command.sh").write_text(COMMAND_SH.replace("--lr 0.5", "--save_prefix 'unclosed"))


def deeply_nested_run_info(run_dir: Path) -> None:
    (run_dir / "run_info.json").write_text("[" * 100_000)


def fifo_command(run_dir: Path) -> None:
    (run_dir / "command.sh").unlink()
    os.mkfifo(run_dir / "command.sh")  # read, it would block for ever


@pytest.mark.parametrize(("damage", "message"), [
    (break_run_info, "has no run_info.json"),
    (unclosed_quote, "command.sh: its command cannot be read as a shell command (No closing quotation)"),
    (deeply_nested_run_info, "run_info.json cannot be read (JSON nested too deeply)"),
    (fifo_command, "has no readable command.sh"),
    (no_commit, "records no git commit: the run was not made in a git checkout"),
    (unknown_commit, f"Commit {'1' * 40} is not in this repository"),
    (patch_missing, "code.patch is missing"),
    (patch_conflicts, "does not apply to commit"),
])
def test_what_cannot_be_reproduced_is_one_clear_error(damage, message: str, project: tuple[Path, str],
                                                      dirty_run: Path, tmp_path: Path, capsys) -> None:
    damage(dirty_run)
    dest = tmp_path / "reproduced"
    assert reproduce.main([str(dirty_run), "--dest", str(dest)], repo=project[0]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not dest.exists()  # nothing half-made is left
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=project[0], capture_output=True, text=True).stdout
    assert str(dest) not in worktrees


def test_an_existing_destination_is_refused(project: tuple[Path, str], dirty_run: Path, tmp_path: Path,
                                            capsys) -> None:
    (tmp_path / "taken").mkdir()
    assert reproduce.main([str(dirty_run), "--dest", str(tmp_path / "taken")], repo=project[0]) == 2
    assert f"--dest {tmp_path / 'taken'} exists" in capsys.readouterr().err
