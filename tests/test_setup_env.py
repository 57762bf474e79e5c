"""scripts/setup_env.sh, the set-up behind the README's two commands: installs once, again
only when the requirements change, takes torch from TORCH_INDEX_URL when given (the CPU
build), says what it installs and how big it is, and names an index it cannot reach. A fake
.venv/bin/python records what pip would be asked; nothing is installed, nothing downloaded."""

import os
import shutil
import subprocess
from pathlib import Path

from helpers import REPO

URL = "https://download.pytorch.org/whl/cpu"
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens there, the connection is refused at once
PIP = "-m pip install --disable-pip-version-check"
# The fake python: records its arguments; its pip fails for --index-url when FAIL_INDEX is set.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$PIP_LOG"
if [[ -n "${FAIL_INDEX:-}" && "$*" == *--index-url* ]]; then echo "ERROR: ResolutionImpossible" >&2; exit 1; fi
"""


def project_with_fake_venv(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    for name in ("scripts/setup_env.sh", "scripts/find_python.sh", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(REPO / name, project / name)
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return project


def source_setup(project: Path, **env: str) -> subprocess.CompletedProcess:
    """Source the script as demo.sh does (with set -e), then print $PYTHON."""
    (project / "pip.log").unlink(missing_ok=True)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "TORCH_INDEX_URL")}
    return subprocess.run(["bash", "-c", "set -euo pipefail; source scripts/setup_env.sh requirements.txt; "
                           "echo $PYTHON"], cwd=project, env={**environment, "PIP_LOG": str(project / "pip.log"),
                                                              **env}, capture_output=True, text=True)


def set_up(project: Path, **env: str) -> list[str]:
    """The pip calls a successful set-up made."""
    result = source_setup(project, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ".venv/bin/python"
    log = project / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_torch_index_url_takes_torch_from_that_index_first(tmp_path: Path) -> None:
    project = project_with_fake_venv(tmp_path)
    calls = set_up(project, TORCH_INDEX_URL=URL)
    assert calls == [f"{PIP} --index-url {URL} torch>=2.4 torchvision>=0.19", f"{PIP} -r requirements.txt"]
    assert set_up(project, TORCH_INDEX_URL=URL) == []  # installed once


def test_the_default_installs_the_requirements_only_and_once(tmp_path: Path) -> None:
    project = project_with_fake_venv(tmp_path)
    assert set_up(project) == [f"{PIP} -r requirements.txt"]
    assert set_up(project) == []
    with open(project / "requirements.txt", "a") as file:
        file.write("numpy\n")
    assert len(set_up(project)) == 1  # the requirements changed: installed again


def test_it_says_what_it_installs_and_how_big(tmp_path: Path) -> None:
    """Issue 29: four silent minutes while pip fetched a 5.6 GB CUDA build."""
    project = project_with_fake_venv(tmp_path)
    said = source_setup(project).stdout
    assert "setup: installing requirements.txt: torch torchvision tensorboard tqdm" in said
    assert "CUDA one, 5-6 GB" in said and f"TORCH_INDEX_URL={URL}" in said
    said = source_setup(project_with_fake_venv(tmp_path / "cpu"), TORCH_INDEX_URL=URL).stdout
    assert f"installing torch>=2.4 torchvision>=0.19 from TORCH_INDEX_URL={URL} (its CPU build is about 200 MB" in said


def test_an_unreachable_torch_index_is_one_message_naming_it(tmp_path: Path) -> None:
    """pip alone says `ResolutionImpossible`; the set-up adds why (the index cannot be reached),
    stops with exit code 2 and marks nothing installed."""
    project = project_with_fake_venv(tmp_path)
    result = source_setup(project, TORCH_INDEX_URL=UNREACHABLE, FAIL_INDEX="1")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("setup: error:")]
    assert len(errors) == 1 and f"TORCH_INDEX_URL={UNREACHABLE} cannot be reached from here" in errors[0]
    assert "unset TORCH_INDEX_URL" in errors[0]
    assert (project / "pip.log").read_text().splitlines() == [f"{PIP} --index-url {UNREACHABLE} torch>=2.4 "
                                                               "torchvision>=0.19"]  # nothing after it
    assert not list((project / ".venv").glob(".installed-*"))
