"""scripts/setup_env.sh, the set-up behind the README's two commands: installs once, again
only when the requirements change, and takes torch from TORCH_INDEX_URL when given (the
CPU build). A fake .venv/bin/python records what pip would be asked; nothing is installed."""

import os
import shutil
import subprocess
from pathlib import Path

from helpers import REPO

URL = "https://download.pytorch.org/whl/cpu"


def project_with_fake_venv(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    for name in ("scripts/setup_env.sh", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(REPO / name, project / name)
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/usr/bin/env bash\necho "$*" >> "$PIP_LOG"\n')
    python.chmod(0o755)
    return project


def set_up(project: Path, **env: str) -> list[str]:
    """Source the script as demo.sh does; returns the pip calls it made."""
    log = project / "pip.log"
    log.unlink(missing_ok=True)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "TORCH_INDEX_URL")}
    result = subprocess.run(["bash", "-c", "source scripts/setup_env.sh requirements.txt && echo $PYTHON"],
                            cwd=project, env={**environment, "PIP_LOG": str(log), **env}, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ".venv/bin/python"
    return log.read_text().splitlines() if log.exists() else []


def test_torch_index_url_takes_torch_from_that_index_first(tmp_path: Path) -> None:
    project = project_with_fake_venv(tmp_path)
    calls = set_up(project, TORCH_INDEX_URL=URL)
    pip = "-m pip install --quiet --disable-pip-version-check"
    assert calls == [f"{pip} --index-url {URL} torch>=2.4 torchvision>=0.19", f"{pip} -r requirements.txt"]
    assert set_up(project, TORCH_INDEX_URL=URL) == []  # installed once


def test_the_default_installs_the_requirements_only_and_once(tmp_path: Path) -> None:
    project = project_with_fake_venv(tmp_path)
    assert set_up(project) == ["-m pip install --quiet --disable-pip-version-check -r requirements.txt"]
    assert set_up(project) == []
    with open(project / "requirements.txt", "a") as file:
        file.write("numpy\n")
    assert len(set_up(project)) == 1  # the requirements changed: installed again
