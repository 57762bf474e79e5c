"""docs/experiments.md: the commands it shows run as written, in order, in a fresh copy of the
project with the tiny demo set, and its sweep example gives the table it describes.

Taken from the doc itself, so the doc and this test cannot drift apart. Where a command would
train for minutes it runs on tiny settings: train.py and the sweep script get one short epoch
appended (the last value of a flag wins), the sweep script the tiny data set instead of the
320-picture one, and the general `python -m runs.sweep` example runs as --dry_run (its later
`--group_by` on that experiment is then skipped). `python -m runs.reproduce` needs a git
checkout: tests/test_reproduce.py runs it.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EVENT_DEADLINE, REPO, copy_project

DOC = REPO / "docs" / "experiments.md"
TINY = "--epochs 1 --batch_size 16 --num_workers 0"
SWEEP_DEMO = "/tmp/demo320"  # the 320-picture set of the doc's sweep example


def doc_commands() -> list[str]:
    """The command lines of the doc's ```bash blocks, in order, without trailing comments."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [re.sub(r"\s+#.*$", "", line) for block in blocks for line in block.splitlines() if line.strip()]


def as_tested(command: str, project: Path, tiny_demo: Path, planned_only: set[str]) -> str | None:
    """The command as this test runs it (see the module docstring), or None to skip it."""
    if "runs.reproduce" in command or any(f"checkpoints/{exp}" in command for exp in planned_only):
        return None
    if "<run dir" in command:
        (run_dir,) = (project / "checkpoints" / "lr_tries").iterdir()
        command = re.sub(r"<run dir[^>]*>", run_dir.name, command)
    if command.startswith("python train.py"):
        return f"{command} {TINY}"
    if "scripts/sweep_" in command:
        return f"{command.replace(SWEEP_DEMO, str(tiny_demo))} {TINY}"
    if "-m data.demo_data" in command:
        return command.replace(SWEEP_DEMO, str(project.parent / "demo320"))
    if "-m runs.sweep" in command and "--dry_run" not in command:
        planned_only.add(re.search(r"--exp (\S+)", command).group(1))
        return command.replace(" -- ", " --dry_run -- ", 1)
    return command


@pytest.mark.slow
def test_the_commands_of_docs_experiments_run_as_written(tiny_demo: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    shutil.copytree(tiny_demo, project / "data" / "demo")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHON": sys.executable}
    planned_only: set[str] = set()
    outputs = {}
    for command in doc_commands():
        tested = as_tested(command, project, tiny_demo, planned_only)
        if tested is None:
            continue
        result = subprocess.run(["bash", "-c", tested], cwd=project, env=env, capture_output=True, text=True,
                                timeout=EVENT_DEADLINE)
        assert result.returncode == 0, f"{tested}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        outputs[command] = result.stdout
    assert planned_only == {"lr_opt"}
    groups = outputs["python -m runs checkpoints/lr_sweep --group_by lr"]
    header, *rows = groups.split("\n\n")[0].splitlines()
    assert header.split()[:3] == ["lr", "n", "best"]
    assert [row.split()[:2] for row in rows] == [["0.001", "3"], ["0.003", "3"], ["0.01", "3"]]
    assert "3 groups of 9 runs" in groups
    assert (project / "runs.csv").read_text().startswith("run,exp,status,")
