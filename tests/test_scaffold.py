"""python -m scaffold: a new project, model or data set in one command, and never a half-written tree.

Every command runs on a copy of the project in a temporary folder, never on this repository.
The new names start with `scaffold` so as not to meet the models and data sets you add
(e.g. by following the README: my_net, my_set).
"""

import difflib
import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from helpers import copy_project, run_bash, run_python, tiny_train_argv

from scaffold import commands as scaffold
from scaffold import file_transaction
from scaffold.commands import TEMPLATE_ONLY
from scaffold.project_files import project_files

TINY = ["--epochs", "1", "--batch_size", "16", "--num_workers", "0"]
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
# What a used checkout holds besides its files, and a new project must not: outputs, data, environments.
LEFTOVERS = [".venv/bin/python", "checkpoints/base_demo_1/best.pth", "data/demo/train.txt",
             "data/downloads/MNIST/raw.gz", "utils/__pycache__/old.cpython-39.pyc", ".pytest_cache/README.md"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A used copy of the template (with run outputs, data, an environment): the source of new
    projects, and the tree the refused commands must leave alone."""
    root = copy_project(tmp_path_factory.mktemp("template") / "template")
    for leftover in LEFTOVERS:
        (root / leftover).parent.mkdir(parents=True, exist_ok=True)
        (root / leftover).write_text("not part of the project\n")
    return root


@pytest.fixture
def project(tmp_path: Path, tiny_demo: Path) -> Path:
    """A fresh copy to add a model or data set to, with the tiny demo set in place."""
    root = copy_project(tmp_path / "project")
    shutil.copytree(tiny_demo, root / "data" / "demo")
    return root


def run_scaffold(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_python(["-m", "scaffold", *args], cwd=cwd, env=env)


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file (bytes and mode) and folder (None) under root; byte caches left out."""
    tree = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" not in path.parts:
            tree[path.relative_to(root).as_posix()] = (path.read_bytes(), path.stat().st_mode) \
                if path.is_file() else None
    return tree


def added_and_removed(before: str, after: str) -> list[str]:
    """The `+` and `-` lines of the unified diff from `before` to `after`."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# --- a new project ---------------------------------------------------------------------------

def project_files_of_a_project(template: Path) -> list[str]:
    """The template's files a new project starts with: all but its own benchmarks and figures."""
    return [name for name in project_files(template) if not name.startswith(TEMPLATE_ONLY)]


def test_new_project_is_a_clean_copy_with_its_name(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "new"
    result = run_scaffold(["project", str(dest), "--name", "my-project"], cwd=template)
    assert result.returncode == 0, result.stderr
    files = project_files(dest)
    assert files == project_files_of_a_project(template) and "model/model_entry.py" in files
    assert "bench/trainer_vs_plain.py" in project_files(template) and "docs/performance.md" not in files
    readme = (dest / "README.md").read_text()
    assert "template-only" not in readme and "## Performance" not in readme and "bench/" not in readme
    assert not set(LEFTOVERS) & set(files)
    assert [p.name for p in (dest / "checkpoints").iterdir()] == [".gitkeep"]
    assert not (dest / ".git").exists() and not (dest / ".venv").exists() and not (dest / "data" / "demo").exists()
    assert (dest / "README.md").read_text().splitlines()[0] == "# my-project"
    assert '\nname = "my-project"\n' in (dest / "pyproject.toml").read_text()
    def labels(project: Path) -> set[str]:
        return {ET.parse(p).getroot().find("configuration").get("name") for p in (project / ".run").glob("*.run.xml")}

    assert "train_base" in labels(template) and labels(dest) == {f"my-project {label}" for label in labels(template)}
    assert os.access(dest / "scripts" / "train_base.sh", os.X_OK)


def test_new_project_from_a_git_checkout_has_what_git_would_clone(template: Path, tmp_path: Path) -> None:
    """In a git checkout git lists the files (.gitignore applies): the same set as the walk."""
    source = shutil.copytree(template, tmp_path / "checkout", symlinks=True)
    subprocess.run(["git", "init", "-q"], cwd=source, check=True)
    result = run_scaffold(["project", str(tmp_path / "new"), "--name", "from_git"], cwd=source)
    assert result.returncode == 0, result.stderr
    assert project_files(tmp_path / "new") == project_files_of_a_project(template)


def test_non_empty_destination_is_refused_unless_force(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine\n")
    before = snapshot(dest)
    assert_one_line_error(run_scaffold(["project", str(dest)], cwd=template), str(dest), "not empty", "--force")
    assert snapshot(dest) == before
    result = run_scaffold(["project", str(dest), "--force"], cwd=template)
    assert result.returncode == 0, result.stderr
    assert (dest / "notes.txt").read_text() == "mine\n" and (dest / "train.py").is_file()
    assert '\nname = "taken"\n' in (dest / "pyproject.toml").read_text()  # the folder's name


@pytest.mark.parametrize("name", ["my project", "-dash", "dot.", "a/b", "ünï"])
def test_invalid_project_name_is_refused(template: Path, tmp_path: Path, name: str) -> None:
    assert_one_line_error(run_scaffold(["project", str(tmp_path / "new"), f"--name={name}"], cwd=template),
                          repr(name), "letters, digits")
    assert not (tmp_path / "new").exists()


def test_destination_inside_the_template_is_refused(template: Path) -> None:
    before = snapshot(template)
    assert_one_line_error(run_scaffold(["project", "my-project"], cwd=template), "inside the template")
    assert snapshot(template) == before


def test_git_makes_a_repository_with_exactly_one_commit(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "new"
    result = run_scaffold(["project", str(dest), "--name", "my-project", "--git"], cwd=template, env=GIT_IDENTITY)
    assert result.returncode == 0, result.stderr

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=dest, capture_output=True, text=True, check=True).stdout

    assert git("rev-list", "--count", "HEAD").strip() == "1"
    assert git("status", "--porcelain") == ""
    assert git("ls-files").split() == project_files_of_a_project(template)


@pytest.mark.slow
def test_failed_git_commit_leaves_no_folder(template: Path, tmp_path: Path) -> None:
    """A pre-commit hook that refuses (set through git's environment config) makes the commit fail."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-commit").write_text("#!/bin/sh\necho refused by the hook >&2\nexit 1\n")
    (hooks / "pre-commit").chmod(0o755)
    env = {**GIT_IDENTITY, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath",
           "GIT_CONFIG_VALUE_0": str(hooks)}
    result = run_scaffold(["project", str(tmp_path / "new"), "--git"], cwd=template, env=env)
    assert_one_line_error(result, "`git commit` failed (refused by the hook)", "nothing was written")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_new_project_passes_its_own_tests(template: Path, tmp_path: Path) -> None:
    """The README's test command in the new project, on a fast part of its suite."""
    dest = tmp_path / "new"
    assert run_scaffold(["project", str(dest), "--name", "my-project"], cwd=template).returncode == 0
    result = run_bash(dest / "scripts" / "test.sh", ["-q", "-p", "no:cacheprovider", "tests/test_model.py",
                                                     "tests/test_options.py"], cwd=dest)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_new_project_dry_run_writes_nothing(template: Path, tmp_path: Path) -> None:
    result = run_scaffold(["project", str(tmp_path / "new"), "--git", "--dry-run"], cwd=template)
    assert result.returncode == 0, result.stderr
    assert "create README.md" in result.stdout and "Dry run: nothing was written." in result.stdout
    assert not (tmp_path / "new").exists()


def test_failed_new_project_leaves_no_folder(template: Path, tmp_path: Path, monkeypatch) -> None:
    fail_on_write(monkeypatch, 10)
    with pytest.raises(OSError, match="disk full"):
        scaffold.new_project(template, tmp_path / "new", "my-project")
    assert list(tmp_path.iterdir()) == []


def test_force_never_writes_through_a_linked_sub_folder(template: Path, tmp_path: Path) -> None:
    """A sub-folder of the destination that links elsewhere: the project's files would go there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "recipes.md").write_text("my own notes\n")  # named like one of the template's docs
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "docs").symlink_to(outside)
    before = snapshot(tmp_path)
    assert_one_line_error(run_scaffold(["project", str(dest), "--force"], cwd=template),
                          f"{dest / 'docs'} is a symbolic link (to {outside})", "outside the destination")
    assert snapshot(tmp_path) == before and (outside / "recipes.md").read_text() == "my own notes\n"


def test_sigterm_while_writing_a_project_puts_every_file_back(template: Path, tmp_path: Path, monkeypatch,
                                                              capsys) -> None:
    real_write, count = file_transaction.atomic_write_bytes, [0]

    def write_then_sigterm(path: Path, data: bytes, mode: int | None) -> None:
        real_write(path, data, mode)
        count[0] += 1
        if count[0] == 20:
            os.kill(os.getpid(), signal.SIGTERM)  # a cluster or a shell stops the command here

    def guard(number, frame):  # a regression fails this test instead of ending the test process
        raise RuntimeError("SIGTERM reached the test's own handler")

    monkeypatch.setattr(file_transaction, "atomic_write_bytes", write_then_sigterm)
    previous = signal.signal(signal.SIGTERM, guard)
    try:
        code = scaffold.main(["project", str(tmp_path / "new")], root=template)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 128 + signal.SIGTERM
    assert "stopped by SIGTERM; every file was put back as it was" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


KILLED_AT_WRITE = """
import os, sys
from pathlib import Path
from scaffold import commands, file_transaction
real_write, count = file_transaction.atomic_write_bytes, [0]
def write_or_die(path, data, mode=None):
    count[0] += 1
    if count[0] == 30:
        os._exit(137)  # SIGKILL: nothing can be put back
    real_write(path, data, mode)
file_transaction.atomic_write_bytes = write_or_die
sys.exit(commands.main(sys.argv[2:], root=Path(sys.argv[1])))
"""


@pytest.mark.slow
def test_a_project_half_written_by_a_killed_command_is_finished_by_the_same_command(template: Path,
                                                                                   tmp_path: Path) -> None:
    dest = tmp_path / "new"
    killed = run_python(["-c", KILLED_AT_WRITE, str(template), "project", str(dest), "--name", "my-project"])
    assert killed.returncode == 137 and (dest / ".scaffold-incomplete").is_file()
    result = run_scaffold(["project", str(dest), "--name", "my-project"], cwd=template)
    assert result.returncode == 0, result.stderr
    assert project_files(dest) == project_files_of_a_project(template)
    assert not (dest / ".scaffold-incomplete").exists()


# --- a new model or data set -----------------------------------------------------------------

@pytest.mark.slow
def test_add_model_writes_package_entry_and_script_and_it_trains(project: Path) -> None:
    entry_before = (project / "model" / "model_entry.py").read_text()
    result = run_scaffold(["model", "scaffold_net"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (project / "model" / "scaffold_net").iterdir()} == {"__init__.py", "model.py"}
    entry_after = (project / "model" / "model_entry.py").read_text()
    assert added_and_removed(entry_before, entry_after) == ["+from model.scaffold_net import ScaffoldNet",
                                                            '+    "scaffold_net": ScaffoldNet,']
    lines = entry_after.splitlines()
    assert lines[lines.index('    "scaffold_net": ScaffoldNet,') + 1] == "}"  # after the last entry
    assert lines[lines.index("from model.scaffold_net import ScaffoldNet") - 1].startswith("from model.")  # beside them
    script = project / "scripts" / "train_scaffold_net.sh"
    assert os.access(script, os.X_OK)
    assert {"set -euo pipefail", 'cd "$(dirname "$0")/.."'} <= set(script.read_text().splitlines())
    assert '"$PYTHON" train.py --model_type scaffold_net' in script.read_text()
    result = run_bash(script, [*TINY, "--width", "8"], cwd=project)  # its own flag, from its constructor
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (p for p in (project / "checkpoints").iterdir() if p.is_dir())
    assert run_dir.name.startswith("scaffold_net_") and (run_dir / "best.pth").is_file()
    assert torch.load(run_dir / "best.pth")["model_kwargs"]["width"] == 8


@pytest.mark.slow
def test_add_dataset_writes_module_and_entry_and_it_trains(project: Path) -> None:
    entry_before = (project / "data" / "data_entry.py").read_text()
    result = run_scaffold(["dataset", "scaffold_set"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "data" / "scaffold_set.py").is_file()
    entry_after = (project / "data" / "data_entry.py").read_text()
    assert added_and_removed(entry_before, entry_after) == ["+from data.scaffold_set import build_scaffold_set",
                                                            '+    "scaffold_set": build_scaffold_set,']
    lines = entry_after.splitlines()
    assert lines[lines.index('    "scaffold_set": build_scaffold_set,') + 1] == "}"
    assert lines[lines.index("from data.scaffold_set import build_scaffold_set") - 1].startswith("from data.")
    argv = tiny_train_argv(project / "data" / "demo", project / "checkpoints") + ["--data_type", "scaffold_set",
                                                                                  "--image_size", "16"]
    result = run_python(["train.py", *argv], cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (p for p in (project / "checkpoints").iterdir() if p.is_dir())
    saved = json.loads((run_dir / "args.json").read_text())
    assert (saved["data_type"], saved["image_size"]) == ("scaffold_set", 16) and (run_dir / "best.pth").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("task, metric", [("multilabel", "val/map"), ("regression", "val/mae")])
def test_a_dataset_for_several_labels_or_numbers_trains_on_the_demo_table(task: str, metric: str,
                                                                          project: Path) -> None:
    result = run_scaffold(["dataset", f"{task}_set", "--task", task], cwd=project)
    assert result.returncode == 0, result.stderr
    demo = project / "data" / "demo"
    argv = tiny_train_argv(demo, project / f"runs_{task}")[4:] + ["--data_type", f"{task}_set", "--train_list",
                                                          str(demo / "train.csv"), "--val_list", str(demo / "val.csv")]
    result = run_python(["train.py", *argv], cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (project / f"runs_{task}").iterdir()
    assert metric in (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")


@pytest.mark.slow
def test_generated_model_passes_the_model_tests(project: Path) -> None:
    """The project's own model tests (typed keywords, one score per class) cover the new model."""
    scaffold.add_model(project, "scaffold_net")
    result = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_model.py", "-k", "scaffold_net"],
                        cwd=project)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 passed" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_generated_code_passes_ruff(project: Path) -> None:
    for name in ("a_scaffold", "scaffold_net2", "scaffold_net10"):
        scaffold.add_model(project, name)
    for name in ("a_scaffold", "zz_scaffold"):
        scaffold.add_dataset(project, name)
    scaffold.add_dataset(project, "tags_set", task="multilabel")
    scaffold.add_dataset(project, "numbers_set", task="regression")
    result = run_python(["-m", "ruff", "check", "--no-cache", "model", "data", "scripts"], cwd=project)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("command, name, fragment", [
    ("model", "CamelCase", "lowercase letters"),
    ("model", "my-net", "lowercase letters"),
    ("model", "2net", "starting with a letter"),
    ("model", "class", "Python keyword"),
    ("model", "base", "it is in MODELS (model/model_entry.py); model/base/ exists; scripts/train_base.sh exists"),
    ("model", "base_net", "already uses the name BaseNet"),
    ("model", "submodules", "model/submodules.py exists"),
    ("dataset", "my set", "lowercase letters"),
    ("dataset", "import", "Python keyword"),
    ("dataset", "mnist", "it is in DATASETS (data/data_entry.py)"),
    ("dataset", "augment", "data/augment.py exists"),
])
def test_invalid_name_is_one_clear_error_and_writes_nothing(template: Path, command: str, name: str,
                                                            fragment: str) -> None:
    before = snapshot(template)
    assert_one_line_error(run_scaffold([command, name], cwd=template), repr(name), fragment)
    assert snapshot(template) == before


@pytest.mark.parametrize("command, name, shown", [
    ("model", "scaffold_net", [
        "create model/scaffold_net/__init__.py", "create model/scaffold_net/model.py",
        "create scripts/train_scaffold_net.sh", "edit model/model_entry.py",
        "+from model.scaffold_net import ScaffoldNet", '+    "scaffold_net": ScaffoldNet,']),
    ("dataset", "scaffold_set", [
        "create data/scaffold_set.py", "edit data/data_entry.py",
        "+from data.scaffold_set import build_scaffold_set", '+    "scaffold_set": build_scaffold_set,']),
])
def test_dry_run_prints_the_files_and_diff_and_writes_nothing(template: Path, command: str, name: str,
                                                               shown: list[str]) -> None:
    before = snapshot(template)
    result = run_scaffold([command, name, "--dry-run"], cwd=template)
    assert result.returncode == 0, result.stderr
    assert set(shown) <= set(result.stdout.splitlines())
    assert snapshot(template) == before


def fail_on_write(monkeypatch: pytest.MonkeyPatch, failing_write: int) -> None:
    """Make the `failing_write`-th file write (1 = the first) raise, as a full disk would."""
    real_write, count = file_transaction.atomic_write_bytes, [0]

    def write_file(path: Path, data: bytes, mode: int | None) -> None:
        count[0] += 1
        if count[0] == failing_write:
            raise OSError(28, "No space left on device (disk full)", str(path))
        real_write(path, data, mode)

    monkeypatch.setattr(file_transaction, "atomic_write_bytes", write_file)


@pytest.mark.parametrize("command, failing_write", [("model", 1), ("model", 2), ("model", 4), ("dataset", 2)])
def test_a_failed_write_puts_every_file_back(project: Path, monkeypatch, command: str, failing_write: int) -> None:
    """Model writes: __init__.py, model.py, the script, model_entry.py; data set: the module, data_entry.py."""
    before = snapshot(project)
    fail_on_write(monkeypatch, failing_write)
    add = scaffold.add_model if command == "model" else scaffold.add_dataset
    with pytest.raises(OSError, match="disk full"):
        add(project, "scaffold_thing")
    assert snapshot(project) == before


def test_cli_reports_a_failed_write_and_restores(project: Path, monkeypatch, capsys) -> None:
    before = snapshot(project)
    fail_on_write(monkeypatch, 3)
    assert scaffold.main(["model", "scaffold_net"], root=project) == 2
    assert "disk full" in capsys.readouterr().err
    assert snapshot(project) == before


def test_edited_registry_keeps_mode_and_crlf_line_endings(project: Path) -> None:
    entry = project / "data" / "data_entry.py"
    entry.write_bytes(entry.read_bytes().replace(b"\n", b"\r\n"))
    entry.chmod(0o640)
    scaffold.add_dataset(project, "scaffold_set")
    assert b'\r\n    "scaffold_set": build_scaffold_set,\r\n}\r\n' in entry.read_bytes()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o640
    assert b"\n" not in entry.read_bytes().replace(b"\r\n", b"")


def test_scaffold_needs_only_the_standard_library() -> None:
    """It must run before torch is installed (e.g. to start a project with any python3)."""
    code = "import sys, scaffold.commands; print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    result = run_python(["-c", code])
    assert result.stdout.strip() == "[]", result.stderr
