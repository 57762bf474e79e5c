"""scripts/ and .run/: every experiment script runs as-is on tiny settings; PyCharm configs are valid.

The scripts run in a copy of the project (its own checkpoints/ and data/), with a small
demo set already in place, except the main job, which also generates the real one.
"""

import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import REPO, copy_project, run_bash, with_torchrun_mark

import options

TINY = ["--epochs", "1", "--batch_size", "16", "--num_workers", "0"]
SCRIPTS = REPO / "scripts"
# Not experiments: the set-up helpers, the test runner (CI runs it), the main job and the GPU
# check (both tested below), and the Slurm job (tests/test_slurm.py).
NOT_EXPERIMENTS = {"setup_env.sh", "find_python.sh", "test.sh", "demo.sh", "gpu_check.sh", "slurm_train.sh",
                   "slurm_step.sh"}
TRAIN_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("train_*.sh"))
# Sweeps (python -m runs.sweep): checked here with --dry_run; tests/test_experiments_doc.py runs one.
SWEEP_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("sweep_*.sh"))


@pytest.fixture(scope="module")
def project(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("scripts") / "project")
    shutil.copytree(tiny_demo, project / "data" / "demo")
    return project


def test_every_script_is_an_experiment_pair_a_sweep_or_known() -> None:
    """Experiments are train_<x>.sh, optionally with eval_<x>.sh, and sweeps sweep_<x>.sh: that
    is how they get tested."""
    for script in SCRIPTS.glob("*.sh"):
        name = script.name
        paired_eval = name.startswith("eval_") and (SCRIPTS / name.replace("eval_", "train_", 1)).is_file()
        assert name in NOT_EXPERIMENTS or name.startswith(("train_", "sweep_")) or paired_eval, \
            f"{name}: name experiment scripts train_<x>.sh / eval_<x>.sh / sweep_<x>.sh so the tests run them"


# Scripts that start the project's Python in a plain shell (the two set-up helpers are sourced by
# the others; Slurm's need a job, and its step runs the command it is given: tests/test_slurm.py).
NOT_STARTING_PYTHON = {"find_python.sh", "setup_env.sh", "slurm_train.sh", "slurm_step.sh"}
PYTHON_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("*.sh") if p.name not in NOT_STARTING_PYTHON)


def test_every_script_finds_python_through_find_python_sh() -> None:
    """One rule for which Python runs (issue 29: sweep_lr.sh used `${PYTHON:-python}` and missed
    .venv/): every script sources scripts/find_python.sh, or setup_env.sh, which does."""
    for script in SCRIPTS.glob("*.sh"):
        text = script.read_text(encoding="utf-8")
        if script.name not in {"find_python.sh", "slurm_step.sh"}:  # the step runs the command it is given
            assert "source scripts/find_python.sh" in text or "source scripts/setup_env.sh" in text, script.name
        assert not re.search(r"\$\{PYTHON:-[^}]", text), f"{script.name}: use \"$PYTHON\" from scripts/find_python.sh"


@pytest.mark.parametrize("script", PYTHON_SCRIPTS)
def test_every_script_runs_the_projects_venv_when_python_is_not_set(script: str, tmp_path: Path) -> None:
    """Without $PYTHON, each script runs .venv/bin/python (here a fake that records its calls)."""
    project = tmp_path / "project"
    shutil.copytree(SCRIPTS, project / "scripts")
    for name in ("requirements.txt", "requirements-dev.txt"):
        shutil.copy(REPO / name, project / name)
    log = tmp_path / "calls.log"
    fake = project / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {shlex.quote(str(log))}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "TORCH_INDEX_URL")}
    result = subprocess.run(["bash", f"scripts/{script}", "--epochs", "1"], cwd=project, capture_output=True,
                            text=True, env={**env, "GPU_CHECK_DRY": "1", "OUT": str(tmp_path / "out")})
    assert result.returncode == 0 and "command not found" not in result.stderr, result.stderr[-2000:]
    assert log.is_file() and log.read_text().strip(), f"{script} did not run .venv/bin/python"


@pytest.mark.slow
@pytest.mark.parametrize("train_script", with_torchrun_mark(TRAIN_SCRIPTS, SCRIPTS))
def test_train_script_then_its_eval_script(project: Path, train_script: str) -> None:
    before = set((project / "checkpoints").iterdir())
    result = run_bash(project / "scripts" / train_script, TINY, cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = set((project / "checkpoints").iterdir()) - before
    assert (run_dir / "best.pth").is_file() and (run_dir / "metrics.csv").is_file()
    eval_script = project / "scripts" / train_script.replace("train_", "eval_", 1)
    if eval_script.is_file():
        result = run_bash(eval_script, ["--load_model_path", str(run_dir), "--num_workers", "0"], cwd=project)
        assert result.returncode == 0, result.stderr[-2000:]
        (result_dir,) = (run_dir / "best").iterdir()
        assert (result_dir / "result.txt").read_text().startswith("loss: ")


@pytest.mark.parametrize("sweep_script", SWEEP_SCRIPTS)
def test_sweep_script_plans_its_grid_with_the_extra_flags(project: Path, sweep_script: str) -> None:
    """A dry run: every point of the grid would start train.py with the flags given to the script."""
    before = set((project / "checkpoints").iterdir())
    result = run_bash(project / "scripts" / sweep_script, TINY, cwd=project, env={"SWEEP_FLAGS": "--dry_run"})
    assert result.returncode == 0, result.stderr[-2000:]
    planned = [line for line in result.stdout.splitlines() if line.startswith("  new ")]
    assert planned and all(f"{' '.join(TINY)} --exp " in line for line in planned)
    assert "Nothing was run (--dry_run)." in result.stdout
    assert set((project / "checkpoints").iterdir()) == before  # nothing written


@pytest.mark.slow
def test_main_job_generates_the_demo_data_trains_and_evaluates(tmp_path: Path) -> None:
    """The README's first command, in a fresh copy: no data yet, 3 epochs instead of 10."""
    project = copy_project(tmp_path / "project")
    result = run_bash(project / "scripts" / "demo.sh", ["--epochs", "3"], cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((project / "data" / "demo" / "train.txt").read_text().splitlines()) == 3000
    (run_dir,) = [p for p in (project / "checkpoints").iterdir() if p.is_dir()]
    (result_dir,) = (run_dir / "best").iterdir()
    accuracy = float((result_dir / "result.txt").read_text().split("acc: ")[1].split()[0])
    assert accuracy > 0.6, f"demo accuracy {accuracy}: 5 classes, chance is 0.2"
    assert len(list((result_dir / "viz").glob("*.png"))) > 0


@pytest.mark.parametrize("config", sorted((REPO / ".run").glob("*.run.xml")), ids=lambda p: p.name)
def test_pycharm_run_configurations_point_at_existing_scripts(config: Path) -> None:
    configuration = ET.parse(config).getroot().find("configuration")
    assert configuration.get("type") == "PythonConfigurationType"
    values = {o.get("name"): o.get("value") for o in configuration.findall("option")}
    assert values["WORKING_DIRECTORY"] == "$PROJECT_DIR$"
    script = values["SCRIPT_NAME"]
    assert script.startswith("$PROJECT_DIR$/")
    assert (REPO / script.removeprefix("$PROJECT_DIR$/")).is_file()
    words = shlex.split(values["PARAMETERS"])
    if script.endswith("train.py"):
        options.parse_train_args(words)  # exits on an unknown flag or a bad value
    else:  # eval.py reads a checkpoint first: check the words against its parser alone
        options.build_parser("eval.py", **options.chosen_components("eval.py", words, {})).parse_args(words)


def test_there_is_a_train_and_an_eval_configuration() -> None:
    assert {p.name for p in (REPO / ".run").glob("*.run.xml")} >= {"train_base.run.xml", "eval_base.run.xml"}


def script_command(script: Path) -> list[str]:
    """The words of the script's one `"$PYTHON" <entry>.py ...` command (continued lines
    joined), without `$PYTHON` and the trailing `"$@"`."""
    text = script.read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith('"$PYTHON" ')]
    words = shlex.split(line)[1:]
    return words[:-1] if words[-1] == "$@" else words


@pytest.mark.parametrize("config", sorted((REPO / ".run").glob("*.run.xml")), ids=lambda p: p.name)
def test_pycharm_configuration_runs_the_same_command_as_its_script(config: Path) -> None:
    """`.run/<x>.run.xml` runs what `scripts/<x>.sh` runs, word for word (issue 26: train_seg
    trained another model than its script), and its label in the run menu is `<x>`."""
    name = config.name.removesuffix(".run.xml")
    script = SCRIPTS / f"{name}.sh"
    assert script.is_file(), f"{config.name}: name a configuration after the script it mirrors (scripts/{name}.sh)"
    configuration = ET.parse(config).getroot().find("configuration")
    values = {o.get("name"): o.get("value") for o in configuration.findall("option")}
    entry, *words = script_command(script)
    assert configuration.get("name") == name
    assert values["SCRIPT_NAME"] == f"$PROJECT_DIR$/{entry}"
    assert shlex.split(values["PARAMETERS"]) == words, f"{config.name} and scripts/{name}.sh run different flags"


def test_gpu_check_without_a_gpu_checks_its_set_up_and_skips(tmp_path: Path) -> None:
    """scripts/gpu_check.sh runs where a GPU is (issue 17); on a CPU, or dry, it only says what it
    would run, so CI keeps its syntax and set-up checks honest."""
    result = run_bash(SCRIPTS / "gpu_check.sh", env={"GPU_CHECK_DRY": "1", "OUT": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped. On a GPU it would run" in result.stdout and "-m pytest -m gpu tests/" in result.stdout
    assert "skipped" in (tmp_path / "gpu_check.log").read_text()
