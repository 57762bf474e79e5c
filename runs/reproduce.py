"""`python -m runs.reproduce`: get back the exact code a run ran, and run its command again.

    python -m runs.reproduce checkpoints/<run dir>                  # the code, and the command to run
    python -m runs.reproduce checkpoints/<run dir> --run            # ... and run it there
    python -m runs.reproduce checkpoints/<run dir> --dest ../check  # in a folder of your choice

From the run's run_info.json and code.patch (see utils/run_info.py): a git worktree of this
repository at the recorded commit (`git worktree add --detach`), with the run's uncommitted
changes (untracked files included) applied, so its files are the code the run ran. Then the
run's command (the last line of its command.sh) is printed to run from that worktree, or run
there with --run, using this Python. The rerun is a new run in the worktree's checkpoints/.
Works for an evaluation's result folder too (its command is the eval.py one).

Standard library and the `git` command only. Remove the worktree when done with
`git worktree remove --force <dest>`.
"""

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

from runs.reader import read_json, resume_changes, resume_entries
from utils.errors import UserError
from utils.small_files import read_json_file, read_small_text

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PYTHON = re.compile(r"python[0-9.]*")  # an interpreter's file name: python, python3, python3.11


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `git <args>` in `repo`; the finished process (check its returncode)."""
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise UserError("Reproducing a run needs the `git` command, which was not found; install git.") from None


def recorded_code(run_dir: Path) -> tuple[str, Path | None]:
    """The run's commit and its code.patch (None when the tree was clean), from run_info.json."""
    try:
        info = read_json_file(run_dir / "run_info.json")  # a regular file, not absurdly nested
    except FileNotFoundError:
        raise UserError(f"{run_dir} has no run_info.json, so which code made it is unknown; give a run "
                        "directory made by train.py (or an evaluation's result folder).") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{run_dir}/run_info.json cannot be read ({error}); the code cannot be recreated.") from None
    commit = info.get("git_commit") if isinstance(info, dict) else None
    if not isinstance(commit, str) or not commit.strip():
        raise UserError(f"{run_dir}/run_info.json records no git commit: the run was not made in a git "
                        "checkout, so its code cannot be recreated.")
    patch = run_dir / "code.patch"
    if patch.is_file():
        return commit, patch
    if info.get("git_dirty"):
        raise UserError(f"{run_dir}/run_info.json says the code had uncommitted changes, but code.patch is "
                        "missing: the exact code cannot be recreated.")
    return commit, None


def recorded_command(run_dir: Path) -> list[str]:
    """The command of command.sh (its last line; the `cd` line before it names the folder it
    ran in, which is replaced by the worktree)."""
    try:
        lines = read_small_text(run_dir / "command.sh").splitlines()
    except (OSError, ValueError):
        raise UserError(f"{run_dir} has no readable command.sh, so the run's command is unknown.") from None
    commands = [line for line in lines if line.strip() and not line.startswith(("#", "cd "))]
    if not commands:
        raise UserError(f"{run_dir}/command.sh holds no command.")
    try:
        return shlex.split(commands[-1])
    except ValueError as error:  # an unclosed quote (edited by hand?)
        raise UserError(f"{run_dir}/command.sh: its command cannot be read as a shell command ({error}): "
                        f"{commands[-1][:200]}") from None


def with_this_python(command: list[str]) -> list[str]:
    """The command with this Python in place of the one it was recorded with (`python`, or a
    virtualenv's `.venv/bin/python`, which the worktree does not have)."""
    if command and PYTHON.fullmatch(Path(command[0]).name):
        return [sys.executable, *command[1:]]
    return command


def repository_root(repo: Path) -> Path:
    """The top folder of the git repository holding `repo`."""
    result = git(repo, "rev-parse", "--show-toplevel")
    if result.returncode != 0:
        raise UserError(f"This project ({repo}) is not a git repository, so no commit can be checked out; "
                        "run this from the clone the run was made in.")
    return Path(result.stdout.strip())


def check_commit(repo: Path, commit: str) -> None:
    """The commit must exist in this repository (it may be in a clone that was never pushed)."""
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise UserError(f"Commit {commit} is not in this repository ({repo}); fetch it (git fetch --all) or "
                        "run this from the clone the run was made in.")


def make_worktree(repo: Path, dest: Path, commit: str, patch: Path | None) -> None:
    """`git worktree add --detach dest commit`, then `git apply patch` there. If the patch does
    not apply, the worktree is removed again: no half-recreated code is left behind."""
    if dest.exists():
        raise UserError(f"--dest {dest} exists; choose a new folder (or remove it).")
    added = git(repo, "worktree", "add", "--detach", str(dest), commit)
    if added.returncode != 0:
        raise UserError(f"git worktree add {dest} {commit} failed: {last_line(added.stderr)}")
    if patch is None:
        return
    applied = git(dest, "apply", "--binary", str(patch.resolve()))
    if applied.returncode != 0:
        git(repo, "worktree", "remove", "--force", str(dest))
        raise UserError(f"{patch} does not apply to commit {commit[:12]} ({last_line(applied.stderr)}); the "
                        "run's code cannot be recreated. The worktree was removed again.")


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"


def resume_notes(run_dir: Path) -> list[str]:
    """What command.sh does not say: flags changed when the run was resumed (status.json)."""
    status = read_json(run_dir / "status.json", problems=[], required=False) or {}
    changed = {name: change for resume in resume_entries(status) for name, change in resume_changes(resume).items()}
    if not changed:
        return []
    described = ", ".join(f"--{name} {change.get('was')} -> {change.get('now')}" for name, change in changed.items())
    return [f"The run was resumed with changed flags ({described}); the command above is the original one."]


def build_parser() -> argparse.ArgumentParser:
    usage_and_examples = "\n\n".join(__doc__.split("\n\n")[:3])
    parser = argparse.ArgumentParser(prog="python -m runs.reproduce", description=usage_and_examples,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="the run directory (or an evaluation's result folder)")
    parser.add_argument("--dest", type=Path, default=None,
                        help="new folder for the worktree (default: <project>-<run dir name> beside the project)")
    parser.add_argument("--run", action="store_true", help="also run the command in the worktree, with this Python")
    return parser


def reproduce(run_dir: Path, dest: Path | None, repo: Path) -> tuple[Path, list[str]]:
    """Make the worktree with the run's code; returns it and the command to run there."""
    commit, patch = recorded_code(run_dir)
    command = recorded_command(run_dir)
    repo = repository_root(repo)
    check_commit(repo, commit)
    dest = dest.resolve() if dest else repo.parent / f"{repo.name}-{run_dir.resolve().name}"
    make_worktree(repo, dest, commit, patch)
    changes = f" + {patch.name}" if patch else ""
    print(f"The code of {run_dir} (commit {commit[:12]}{changes}) is in the git worktree {dest}.")
    return dest, command


def main(argv: list[str] | None = None, repo: Path = PROJECT_ROOT) -> int:
    """Entry point; a UserError becomes one line on stderr and exit code 2. With --run, the exit
    code is the command's."""
    args = build_parser().parse_args(argv)
    try:
        dest, command = reproduce(args.run_dir, args.dest, repo)
        command = with_this_python(command)  # this environment: the worktree has no .venv
        print(f"Its command, to run from there:\n  cd {shlex.quote(str(dest))} && {shlex.join(command)}")
        for note in [*resume_notes(args.run_dir), "Relative paths in the command now resolve in the worktree, "
                     "where files git does not track (your data) are missing; the new run goes to its checkpoints/."]:
            print(f"Note: {note}")
        print(f"Remove the worktree when done: git worktree remove --force {shlex.quote(str(dest))}")
        if not args.run:
            return 0
        sys.stdout.flush()
        try:
            return subprocess.run(command, cwd=dest).returncode
        except OSError as error:
            raise UserError(f"The run's command cannot be started in {dest}: {command[0]!r} "
                            f"({error.strerror or error}).") from None
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
