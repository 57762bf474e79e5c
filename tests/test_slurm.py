"""scripts/slurm_train.sh without a cluster: fake `srun` and `scontrol` on PATH, real training.

The fake srun records its arguments and runs the command here, as the job step of one node.
The test sends a signal to every process of that step (the torchrun agent, the training
process torchrun starts in a session of its own, and anything below them), the way Slurm's
`--signal=USR1@<seconds>` does on clusters that track a step's processes by cgroup or by
descent (ProctrackType proctrack/cgroup or proctrack/linuxproc). The fake scontrol records its
arguments and answers `show hostnames`. A job stopped by the warning must save, ask for
`requeue <job id>`, and its requeued start (the same job id, SLURM_RESTART_COUNT=1) must resume
the same run directory and end bit-identical to a job that was never stopped; a finished or
failing job is not requeued.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import EVENT_DEADLINE, REPO, copy_project, latest_checkpoint

import options

SCRIPT = "scripts/slurm_train.sh"

FAKE_SRUN = """#!{python}
# Fake srun: record the arguments, then run the command (the first word that is not an option)
# as the job step's one task, and, as slurmstepd does when a step's tasks have ended, kill what
# the task left running (orphans come here: this process is their subreaper). Its process id
# goes to step_pid; the step's processes are the ones below it. With FAKE_SRUN_FAILS set, it
# fails to start the step, as srun does when, say, a node is lost.
import ctypes
import os
import signal
import subprocess
import sys

calls = os.environ["FAKE_SLURM_CALLS"]
with open(os.path.join(calls, "srun"), "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_SRUN_FAILS"):
    sys.exit("srun: error: Unable to create step for job: Job/step already completing or completed")
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
with open(os.path.join(calls, "step_pid"), "w") as step:
    step.write(str(os.getpid()))
start = next(i for i, word in enumerate(sys.argv) if i > 0 and not word.startswith("-"))
code = subprocess.call(sys.argv[start:])


def children():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{{pid}}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    yield int(pid)
        except (OSError, ValueError, IndexError):
            pass


while left := list(children()):
    for pid in left:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
sys.exit(code if code >= 0 else 128 - code)
"""

FAKE_SCONTROL = """#!/usr/bin/env bash
# Fake scontrol: record the arguments; `show hostnames a,b` prints a and b, one a line.
echo "$*" >> "$FAKE_SLURM_CALLS/scontrol"
if [[ $1 == show && $2 == hostnames ]]; then tr , '\\n' <<< "$3"; fi
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project: the script writes its job files into checkpoints/ there."""
    return copy_project(tmp_path_factory.mktemp("slurm") / "project")


def train_flags(demo: Path, checkpoints: Path, *more: str) -> list[str]:
    """2 epochs of 15 steps, last.pth after every step, no worker processes."""
    return ["--train_list", str(demo / "train.txt"), "--val_list", str(demo / "val.txt"),
            "--checkpoints_dir", str(checkpoints), "--epochs", "2", "--batch_size", "4", "--num_workers", "0",
            "--print_freq", "100", "--save_every_steps", "1", *more]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def slurm_env(project: Path, folder: Path, job_id: int, restart_count: int | None = None,
              array_task: tuple[int, int] | None = None) -> dict[str, str]:
    """The environment of a job of one node under the fake Slurm in `folder`, which records
    the calls in `folder`/calls; `array_task`: (array job id, task id) for a task of a job array."""
    bin_dir, calls = folder / "bin", folder / "calls"
    bin_dir.mkdir(exist_ok=True)
    calls.mkdir(exist_ok=True)
    for name, text in {"srun": FAKE_SRUN.format(python=sys.executable), "scontrol": FAKE_SCONTROL}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}", PYTHON=sys.executable,
               FAKE_SLURM_CALLS=str(calls), SLURM_JOB_ID=str(job_id), SLURM_NNODES="1",
               SLURM_JOB_NODELIST="localhost", SLURM_SUBMIT_DIR=str(project), RDZV_PORT=str(free_port()))
    if restart_count is not None:
        env["SLURM_RESTART_COUNT"] = str(restart_count)
    if array_task is not None:
        env.update(SLURM_ARRAY_JOB_ID=str(array_task[0]), SLURM_ARRAY_TASK_ID=str(array_task[1]))
    return env


def start_job(project: Path, env: dict[str, str], flags: list[str], log: Path) -> subprocess.Popen:
    """The batch script as sbatch would start it (from its spool folder, here the project's
    scripts/, in the submit folder); its output goes to `log` (a pipe nobody reads can fill)."""
    with open(log, "a") as out:
        return subprocess.Popen(["bash", str(project / SCRIPT), *flags], cwd=project, env=env, text=True,
                                stdout=out, stderr=subprocess.STDOUT)


def run_job(project: Path, env: dict[str, str], flags: list[str], log: Path) -> int:
    return start_job(project, env, flags, log).wait(timeout=EVENT_DEADLINE)


def calls(folder: Path, program: str) -> list[str]:
    path = folder / "calls" / program
    return path.read_text().splitlines() if path.is_file() else []


def step_processes(first: int) -> list[int]:
    """`first` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after "(name)" and the state
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [first]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def signal_step_when(job: subprocess.Popen, folder: Path, checkpoints: Path, when: Callable[[dict], bool],
                     sig: int) -> None:
    """Wait for a last.pth for which `when(checkpoint)` holds, then send `sig` to every process
    of the job step, as Slurm does. As in helpers.start_and_stop, the step is frozen (SIGSTOP)
    while its newest checkpoint is checked again, so it cannot run past that point first."""
    step = folder / "calls" / "step_pid"  # the fake srun: the step's processes are below it
    deadline = time.monotonic() + EVENT_DEADLINE
    while job.poll() is None and time.monotonic() < deadline:
        checkpoint = latest_checkpoint(checkpoints)
        if checkpoint is not None and when(checkpoint) and step.is_file():
            processes = step_processes(int(step.read_text()))[1:]
            signal_all(processes, signal.SIGSTOP)
            frozen = latest_checkpoint(checkpoints)
            if frozen is not None and when(frozen):
                signal_all(processes, sig)
                signal_all(processes, signal.SIGCONT)
                return
            signal_all(processes, signal.SIGCONT)
        time.sleep(0.01)  # a polling interval, not a wait for something to be done
    pytest.fail(f"the job ended (exit code {job.poll()}) or {EVENT_DEADLINE} s passed before the event")


def only_run(checkpoints: Path) -> Path:
    (run_dir,) = checkpoints.iterdir()
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(project: Path, tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A job that trains its 2 epochs without a signal."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    checkpoints = folder / "checkpoints"
    code = run_job(project, slurm_env(project, folder, 1001), train_flags(tiny_demo, checkpoints), folder / "job.log")
    return SimpleNamespace(code=code, folder=folder, run_dir=only_run(checkpoints), log=folder / "job.log")


def assert_same_run(resumed: Path, reference: Path) -> None:
    ours, theirs = torch.load(resumed / "last.pth"), torch.load(reference / "last.pth")
    assert (ours["epoch"], ours["global_step"]) == (theirs["epoch"], theirs["global_step"]) == (2, 30)
    for name, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][name], tensor), name
    assert ours["scheduler"] == theirs["scheduler"]
    assert (resumed / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.mark.slow
def test_a_finished_job_is_not_requeued(uninterrupted: SimpleNamespace) -> None:
    assert uninterrupted.code == 0, uninterrupted.log.read_text()[-3000:]
    assert status(uninterrupted.run_dir)["status"] == "finished"
    assert calls(uninterrupted.folder, "scontrol") == ["show hostnames localhost"]  # no requeue
    log = uninterrupted.log.read_text()
    assert "the run finished" in log
    assert "\r" not in log and "train 2: 100% (15/15)" in log  # progress as lines, not redraws



@pytest.mark.slow
def test_the_warning_saves_requeues_and_the_requeued_start_resumes_bit_identical(
        project: Path, tiny_demo: Path, uninterrupted: SimpleNamespace, tmp_path: Path) -> None:
    """As task 2 of job array 1000: its requeue names the task, `1000_2`; the array's own id
    would requeue every task of the array, finished ones too."""
    checkpoints, log, job_id, task = tmp_path / "checkpoints", tmp_path / "job.log", 1002, (1000, 2)
    env = slurm_env(project, tmp_path, job_id, array_task=task)
    job = start_job(project, env, train_flags(tiny_demo, checkpoints), log)
    in_epoch_2 = lambda c: c["epoch"] == 1 and 2 <= c["step_in_epoch"] <= 10  # noqa: E731
    signal_step_when(job, tmp_path, checkpoints, in_epoch_2, signal.SIGUSR1)
    assert job.wait(timeout=EVENT_DEADLINE) == 0, log.read_text()[-3000:]

    run_dir = only_run(checkpoints)
    (srun,) = calls(tmp_path, "srun")
    port = env["RDZV_PORT"]
    assert (f"bash scripts/slurm_step.sh {sys.executable} -m utils.torchrun --nnodes=1 --nproc_per_node=1 "
            f"--rdzv_backend=c10d --rdzv_endpoint=localhost:{port} --rdzv_id={job_id} train.py --train_list") in srun
    assert status(run_dir)["status"] == "interrupted" and status(run_dir)["error"] == "stopped by SIGUSR1"
    saved = torch.load(run_dir / "last.pth")
    assert saved["epoch"] == 1 and 0 < saved["step_in_epoch"] < 15  # saved where it stopped, mid-epoch 2
    assert calls(tmp_path, "scontrol")[-1] == "requeue 1000_2"  # asked last: Slurm ends the job at once
    assert (project / "checkpoints" / f"slurm-{job_id}.run_dir").read_text().strip() == str(run_dir)

    # Slurm starts the same batch script again, with the same arguments and job id.
    env = slurm_env(project, tmp_path, job_id, restart_count=1, array_task=task)
    assert run_job(project, env, train_flags(tiny_demo, checkpoints), log) == 0, log.read_text()[-3000:]
    assert only_run(checkpoints) == run_dir  # the same run continued, no new one
    assert calls(tmp_path, "srun")[1].endswith(f"train.py --resume {run_dir}")
    assert [c for c in calls(tmp_path, "scontrol") if c.startswith("requeue")] == ["requeue 1000_2"]
    assert "start 2: resuming" in log.read_text()
    assert status(run_dir)["status"] == "finished" and len(status(run_dir)["resumes"]) == 1
    assert_same_run(run_dir, uninterrupted.run_dir)


@pytest.mark.slow
def test_bad_flags_are_one_message_with_exit_code_2_and_no_job_step(project: Path, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    code = run_job(project, slurm_env(project, tmp_path, 1003), ["--no_such_flag", "1"], log)
    assert code == 2
    assert "error: unrecognized arguments: --no_such_flag 1" in log.read_text()
    assert calls(tmp_path, "srun") == [] and not any(c.startswith("requeue") for c in calls(tmp_path, "scontrol"))


@pytest.mark.slow
def test_a_run_that_fails_while_training_is_not_requeued(project: Path, tiny_demo: Path, tmp_path: Path) -> None:
    """The loss diverges at the first steps: the run folder exists and says "failed"."""
    checkpoints, log = tmp_path / "checkpoints", tmp_path / "job.log"
    flags = train_flags(tiny_demo, checkpoints, "--lr", "1e30", "--print_freq", "1")
    code = run_job(project, slurm_env(project, tmp_path, 1004), flags, log)
    text = log.read_text()
    assert code == 2, text[-3000:]  # the training's own exit code (a UserError), not torchrun's 1
    assert status(only_run(checkpoints))["status"] == "failed"
    assert not any(c.startswith("requeue") for c in calls(tmp_path, "scontrol"))
    assert "error: The loss became" in text and "training failed (exit code 2); not requeued" in text
    assert "Traceback" not in text and "ChildFailedError" not in text  # one message, not torchrun's traceback


def ignoring_usr1(pid: int) -> bool:
    """Whether process `pid` runs train.py with SIGUSR1 still ignored (its handler not yet set)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ignored = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("SigIgn:"))
    except (OSError, StopIteration):  # ended meanwhile
        return False
    return b"train.py" in command and bool(int(ignored.split()[1], 16) >> (signal.SIGUSR1 - 1) & 1)


@pytest.mark.slow
def test_a_warning_before_train_py_catches_it_still_saves_and_requeues(project: Path, tiny_demo: Path,
                                                                       tmp_path: Path) -> None:
    """Slurm sends the warning once. It comes here while the training process is starting,
    SIGUSR1 still ignored (inherited from slurm_step.sh, for torchrun's sake): slurm_step.sh
    records it, train.py reads the record at its first step, saves and stops, and the job is
    requeued (no array here: by its job id)."""
    checkpoints, log, job_id = tmp_path / "checkpoints", tmp_path / "job.log", 1006
    job = start_job(project, slurm_env(project, tmp_path, job_id), train_flags(tiny_demo, checkpoints), log)
    step = tmp_path / "calls" / "step_pid"
    deadline = time.monotonic() + EVENT_DEADLINE
    while job.poll() is None and time.monotonic() < deadline:
        processes = step_processes(int(step.read_text())) if step.is_file() else []
        if any(ignoring_usr1(pid) for pid in processes):
            signal_all(processes[1:], signal.SIGUSR1)  # every process of the step, as Slurm does
            break
        time.sleep(0.01)  # a polling interval
    assert job.wait(timeout=EVENT_DEADLINE) == 0, log.read_text()[-3000:]
    run_dir = only_run(checkpoints)
    assert status(run_dir)["status"] == "interrupted" and status(run_dir)["error"] == "stopped by SIGUSR1"
    assert torch.load(run_dir / "last.pth", weights_only=True)["global_step"] == 1  # saved at its first step
    assert calls(tmp_path, "scontrol")[-1] == f"requeue {job_id}"
    assert "SIGUSR1 recorded in" in log.read_text()
    assert not (project / "checkpoints" / f"slurm-{job_id}.warned").exists()  # a requeued start begins without it


@pytest.mark.slow
def test_a_job_submitted_with_resume_says_it_resumes(project: Path, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    code = run_job(project, slurm_env(project, tmp_path, 1007), ["--resume", str(tmp_path / "no_such_run")], log)
    assert code == 2  # no such folder: the flag check answers
    assert f"start 1: resuming {tmp_path / 'no_such_run'} (--resume)" in log.read_text()
    assert "a new run" not in log.read_text()


@pytest.mark.slow
def test_a_requeued_start_that_fails_before_the_run_writes_is_not_requeued_again(
        project: Path, uninterrupted: SimpleNamespace, tmp_path: Path) -> None:
    """The run still says "interrupted" from the start before: that is no reason to requeue."""
    run_dir = Path(shutil.copytree(uninterrupted.run_dir, tmp_path / "checkpoints" / "run"))
    checkpoint = torch.load(run_dir / "last.pth")
    checkpoint["epoch"] = 1  # as if stopped after epoch 1: resumable
    torch.save(checkpoint, run_dir / "last.pth")
    (run_dir / "status.json").write_text(json.dumps({**status(run_dir), "status": "interrupted"}))
    job_id, log = 1005, tmp_path / "job.log"
    (project / "checkpoints" / f"slurm-{job_id}.run_dir").write_text(f"{run_dir}\n")
    env = slurm_env(project, tmp_path, job_id, restart_count=1) | {"FAKE_SRUN_FAILS": "1"}
    code = run_job(project, env, [], log)
    assert code == 1, log.read_text()[-3000:]
    assert calls(tmp_path, "srun")[0].endswith(f"train.py --resume {run_dir}")
    assert not any(c.startswith("requeue") for c in calls(tmp_path, "scontrol"))
    assert "not requeued" in log.read_text()


def test_outside_a_slurm_job_it_says_how_to_submit(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    result = subprocess.run(["bash", str(REPO / SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=EVENT_DEADLINE)
    assert result.returncode == 2
    assert "not inside a Slurm job. From the project's root: sbatch scripts/slurm_train.sh" in result.stderr


def test_the_sbatch_commands_of_docs_slurm_take_valid_train_flags() -> None:
    """The doc's sbatch examples (those without a <placeholder>) pass train.py's checks."""
    lines = [line.strip() for line in (REPO / "docs" / "slurm.md").read_text().splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith("sbatch ") and "<" not in line]
    assert len(commands) >= 2
    for words in commands:
        options.parse_train_args(words[words.index(SCRIPT) + 1:])  # exits on an unknown flag or a bad value
