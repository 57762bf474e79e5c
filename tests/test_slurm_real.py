"""scripts/slurm_train.sh on a real Slurm: a single-node cluster on this machine
(tests/slurm_cluster.sh: slurmctld + slurmd, Debian's slurm-wlm and munge), jobs submitted
with sbatch as docs/slurm.md says for a node without GPUs.

A job warned with `scancel --signal=USR1` saves and requeues itself; `scontrol requeue` kills
a later start (SIGTERM), which Slurm puts back in the queue; each start resumes the same run
directory, and the run ends with the metrics.csv of a job that was never stopped. A bad flag
ends the job with exit code 2, not requeued. Skipped, with the reason, where Slurm is not
installed (`apt-get install -y slurm-wlm munge`) or the test is not root (slurmd needs it).
A requeued job waits in the queue (BeginTime) before it starts again: the cluster shortens
that to about 10 s (cred_expire).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO, copy_project, latest_checkpoint

pytestmark = pytest.mark.slow
DEADLINE = 240  # seconds for one job to reach the state a test waits for
CPU_OVERRIDES = ["--gpus-per-node=0", "--cpus-per-task=1"]  # docs/slurm.md: a node without GPUs


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment for Slurm's commands while a cluster of this machine runs."""
    missing = [name for name in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} not found): apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    folder = tmp_path_factory.mktemp("slurm_cluster")
    started = subprocess.run(["bash", str(REPO / "tests" / "slurm_cluster.sh"), "start", str(folder)],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert started.returncode == 0, started.stderr
    env = {**os.environ, "SLURM_CONF": started.stdout.strip(), "PYTHON": sys.executable}
    yield env
    subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
    subprocess.run(["bash", str(REPO / "tests" / "slurm_cluster.sh"), "stop", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project: jobs are submitted from its root and write checkpoints/ there."""
    return copy_project(tmp_path_factory.mktemp("slurm_real") / "project")


def slurm_command(env: dict[str, str], *words: str) -> str:
    result = subprocess.run(words, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(words)}: {result.stderr}"
    return result.stdout


def submit(env: dict[str, str], project: Path, flags: list[str]) -> str:
    """sbatch scripts/slurm_train.sh <flags>, from the project's root, as docs/slurm.md says
    for a node without GPUs; the job's id."""
    result = subprocess.run(["sbatch", "--parsable", *CPU_OVERRIDES, "scripts/slurm_train.sh", *flags], cwd=project,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def job_fields(env: dict[str, str], job: str) -> dict[str, str]:
    """`scontrol show job` as a dict: JobState, Restarts, ExitCode, Reason, ..."""
    words = slurm_command(env, "scontrol", "--oneliner", "show", "job", job).split()
    return dict(word.split("=", 1) for word in words if "=" in word)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{DEADLINE} s passed before {what}")
        time.sleep(0.2)  # a polling interval


def wait_until_requeued(env: dict[str, str], job: str, restarts: int) -> None:
    """Wait for the job's `restarts`-th requeue. It then starts after its BeginTime, which the
    cluster's cred_expire keeps short: started earlier (`scontrol update StartTime=now`),
    Slurm kills it ("Job credential revoked")."""
    def requeued() -> bool:
        fields = job_fields(env, job)
        return int(fields["Restarts"]) >= restarts and fields["JobState"] == "PENDING"
    wait_for(requeued, f"job {job} was requeued ({restarts})")


def mid_epoch(checkpoints: Path, epoch: int) -> Callable[[], bool]:
    """A last.pth saved inside epoch `epoch` + 1, a few steps in."""
    def saved() -> bool:
        checkpoint = latest_checkpoint(checkpoints)
        return checkpoint is not None and checkpoint["epoch"] == epoch and checkpoint["step_in_epoch"] >= 3
    return saved


def flags(demo: Path, checkpoints: Path, *more: str) -> list[str]:
    """3 epochs of 15 steps, last.pth after every step, no worker processes."""
    return ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"),
            "--checkpoints_dir", str(checkpoints), "--epochs", "3", "--batch_size", "4", "--num_workers", "0",
            "--print_freq", "100", "--save_every_steps", "1", *more]


def ended(env: dict[str, str], job: str) -> bool:
    return job_fields(env, job)["JobState"] in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}


def test_a_warned_and_a_requeued_job_resume_the_same_run_and_end_as_one_never_stopped(
        slurm: dict[str, str], project: Path, tiny_demo: Path, tmp_path: Path) -> None:
    reference_checkpoints, checkpoints = tmp_path / "reference", tmp_path / "stopped"
    reference = submit(slurm, project, flags(tiny_demo, reference_checkpoints))
    job = submit(slurm, project, flags(tiny_demo, checkpoints))

    wait_for(mid_epoch(checkpoints, 0), f"job {job} saved inside epoch 1")
    slurm_command(slurm, "scancel", "--signal=USR1", job)  # the warning, as --signal=USR1@<s> sends it
    wait_until_requeued(slurm, job, 1)  # the job requeued itself
    wait_for(mid_epoch(checkpoints, 1), f"job {job}'s second start saved inside epoch 2")
    slurm_command(slurm, "scontrol", "requeue", job)  # SIGTERM to the job; Slurm puts it back in the queue
    wait_until_requeued(slurm, job, 2)
    wait_for(lambda: ended(slurm, job) and ended(slurm, reference), "both jobs ended")

    log = (project / "checkpoints" / f"slurm-{job}.out").read_text()
    for name in (job, reference):
        fields = job_fields(slurm, name)
        assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    (run_dir,) = checkpoints.iterdir()  # every start resumed the same run
    (reference_dir,) = reference_checkpoints.iterdir()
    assert f"job {job}, start 1: a new run" in log
    assert f"job {job}, start 2: resuming {run_dir}" in log and f"job {job}, start 3: resuming {run_dir}" in log
    assert f"requeueing job {job} to resume it" in log and "\r" not in log
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and len(status["resumes"]) == 2  # not left "running"
    assert json.loads((reference_dir / "status.json").read_text())["status"] == "finished"
    assert (run_dir / "metrics.csv").read_text() == (reference_dir / "metrics.csv").read_text()
    metrics = (run_dir / "metrics.csv").read_text()
    print(f"job {job}'s log:\n{log}\nmetrics.csv (equal to job {reference}'s):\n{metrics}")


def test_a_bad_flag_ends_the_job_with_exit_code_2_not_requeued(slurm: dict[str, str], project: Path) -> None:
    job = submit(slurm, project, ["--no_such_flag", "1"])
    wait_for(lambda: ended(slurm, job), f"job {job} ended")
    fields = job_fields(slurm, job)
    assert (fields["JobState"], fields["ExitCode"], fields["Restarts"]) == ("FAILED", "2:0", "0")
    log = (project / "checkpoints" / f"slurm-{job}.out").read_text()
    assert "error: unrecognized arguments: --no_such_flag 1" in log


def test_the_gpu_header_is_refused_on_a_node_without_gpus(slurm: dict[str, str], project: Path) -> None:
    """Why docs/slurm.md tells a CPU user to submit with --gpus-per-node=0."""
    result = subprocess.run(["sbatch", "--parsable", "scripts/slurm_train.sh"], cwd=project, env=slurm,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Invalid generic resource" in result.stderr
    assert "--gpus-per-node=0" in (REPO / "docs" / "slurm.md").read_text()
