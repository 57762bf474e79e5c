"""Every command the README and docs/ show in a ```bash block runs as written, in order, in a
fresh copy of the project (with the environment activated, as the README says).

Taken from the documents themselves, so they cannot drift apart from the code. Commands
that would train for minutes run on tiny settings: train.py and the experiment scripts get
flags appended (the last value of a flag wins) for 2 epochs of one batch on the tiny demo
set; `<run dir>` stands for the newest run. A plain `python train.py|eval.py|predict.py ...`
calls that script's main() in this process, from the copy's folder (the same code, without
a new interpreter's start-up; after `python -m scaffold` changed the copy's code, a new
process runs it); everything else runs in bash. Skipped: the test suite itself and the tests a
document names (the suite runs them), benchmarks
(bench/), the template's own experiment scripts (tests/test_scripts.py runs each),
`runs.reproduce` (tests/test_reproduce.py runs it in a git repository), and
docs/experiments.md, whose commands tests/test_experiments_doc.py runs. Commands that need
hardware this machine lacks (GPUs, several machines, Slurm) are shown in ```text blocks.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import EVENT_DEADLINE, REPO, copy_project, with_torchrun_mark

import eval as evaluate
import predict
import train
from utils.run_search import runs_newest_first

ENTRY_POINTS = {"train.py": train.main, "eval.py": evaluate.main, "predict.py": predict.main}

pytestmark = pytest.mark.slow
DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")
                             if p.name != "experiments.md")]
SHORT = "--epochs 2 --batch_size 16 --num_workers 0 --limit_train_batches 1 --limit_val_batches 1"
SKIPPED = ("bash scripts/test.sh", "python -m pytest", "python bench/", "python -m runs.reproduce")


def commands(doc: str) -> list[str]:
    """The command lines of a document's ```bash blocks, in order, without trailing comments."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / doc).read_text(encoding="utf-8"), re.DOTALL)
    return [re.sub(r"\s+#.*$", "", line) for block in blocks for line in block.splitlines() if line.strip()]


def as_tested(command: str, project: Path, scratch: Path) -> str | None:
    """The command as this test runs it (see the module docstring), or None to skip it."""
    if command.startswith(SKIPPED):
        named = [word for word in command.split() if word.startswith("tests/")]
        missing = [word for word in named if not (REPO / word.split("::")[0]).exists()]
        assert not missing, f"{command}: no such test file {missing}"  # the suite runs the others
        return None
    script = re.match(r"(?:\w+=\S+ )*bash (scripts/\S+\.sh)", command)
    if script and (REPO / script.group(1)).is_file() and "scripts/demo.sh" not in command:
        return None  # the template's own experiment scripts: tests/test_scripts.py runs every one
    newest = next(iter(runs_newest_first(project / "checkpoints")), None)
    if "<run dir" in command:
        assert newest is not None, f"{command}: no run yet to stand for <run dir>"
        command = command.replace("checkpoints/<run dir>", newest.relative_to(project).as_posix())
        command = re.sub(r"<run dir[^>]*>", newest.name, command)
    command = command.replace("/tmp/demo320", str(scratch / "demo320"))
    if "--resume" in command:
        return f"{command} --num_workers 0"  # how the run trained stays as it was
    if re.search(r"(train\.py|scripts/train_\w+\.sh|scripts/demo\.sh)", command):
        return f"{command} {SHORT}"
    if re.search(r"(eval|predict)\.py|scripts/eval_", command):
        return f"{command} --num_workers 0"
    return command


def fresh_project(tmp_path: Path, tiny_demo: Path) -> Path:
    """A copy of the project with the tiny demo set, and the user's own files the examples
    name: `my/` lists, a folder `my_pictures/` and a list `to_label.txt` of pictures."""
    project = copy_project(tmp_path / "project")
    shutil.copytree(tiny_demo, project / "data" / "demo")
    shutil.copytree(tiny_demo / "images" / "val", project / "my_pictures")
    (project / "to_label.txt").write_text("".join(f"my_pictures/{p.name}\n" for p in sorted(
        (project / "my_pictures").iterdir())[:5]))
    (project / "my").mkdir()
    for name in ("train.txt", "val.txt", "classes.txt"):
        text = (tiny_demo / name).read_text()
        if name != "classes.txt":
            text = re.sub(r"^images/", f"{tiny_demo}/images/", text, flags=re.M)
        (project / "my" / name).write_text(text)
    return project


def run(command: str, project: Path, env: dict, in_process: bool) -> tuple[int, str]:
    """Run one command from the project's folder: (exit code, what it printed)."""
    words = shlex.split(command)
    if in_process and len(words) > 1 and words[0] == "python" and words[1] in ENTRY_POINTS \
            and not set("|&;<>") & set(command):
        try:
            return ENTRY_POINTS[words[1]](words[2:]), ""
        except SystemExit as exit_info:
            return exit_info.code, ""
    result = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True,
                            timeout=EVENT_DEADLINE)
    return result.returncode, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize("doc", with_torchrun_mark(DOCS, REPO))
def test_every_command_of_the_docs_runs_as_written(doc: str, tiny_demo: Path, tmp_path: Path, monkeypatch) -> None:
    project = fresh_project(tmp_path, tiny_demo)
    monkeypatch.chdir(project)
    python_bin = str(Path(sys.executable).parent)  # `source .venv/bin/activate`
    env = {**os.environ, "PATH": f"{python_bin}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    # The torch hub cache of a machine where the fine-tuning recipe's weights were fetched:
    # resnet18's DEFAULT file, random weights written here (nothing is downloaded).
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), hub / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    env["TORCH_HOME"] = str(tmp_path / "torch_home")
    own_code = True
    for command in commands(doc):
        tested = as_tested(command, project, tmp_path)
        if tested is None:
            continue
        code, output = run(tested, project, env, in_process=own_code)
        assert code == 0, f"{doc}: {tested}\n{output}"
        own_code = own_code and "-m scaffold model" not in command and "-m scaffold dataset" not in command


def test_the_readme_is_a_short_front_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; reference material belongs in docs/"
    linked = set(re.findall(r"\(docs/([\w.]+\.md)", "\n".join(lines)))
    assert linked == {p.name for p in (REPO / "docs").glob("*.md")}  # every doc is reachable from the front page
