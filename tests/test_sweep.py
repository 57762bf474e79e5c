"""`python -m runs.sweep`: a grid of flags times seeds (and folds) in one experiment folder, its
manifest, reruns that skip, resume and retry, --jobs with their own GPUs, Ctrl-C, and bad input.

Most tests run the sweep with tests/fake_train.py (`--script`), which writes what train.py
writes in milliseconds; the tests marked slow run the real train.py on the tiny demo set.
Every wait is for an event (a file, a status), never for a time.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EVENT_DEADLINE, REPO, run_python, tiny_train_argv

from runs import gpus, sweep
from runs import listing as runs

FAKE = REPO / "tests" / "fake_train.py"


def run_sweep(checkpoints: Path, *flags: str, train: list[str] = (), script: Path | None = FAKE) -> int:
    """The sweep, in this process, on experiment `s` under `checkpoints`."""
    argv = ["--exp", "s", "--checkpoints_dir", str(checkpoints), *flags]
    return sweep.main([*argv, *(["--script", str(script)] if script else []), "--", *train])


def manifest(checkpoints: Path) -> dict:
    return json.loads((checkpoints / "s" / "sweep.json").read_text())


def points(checkpoints: Path) -> dict[str, dict]:
    return {entry["label"]: entry for entry in manifest(checkpoints)["points"]}


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + EVENT_DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)  # a polling interval, not a wait for something to be done


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def test_every_point_runs_once_seeds_slowest_and_the_manifest_records_it(tmp_path: Path, capsys) -> None:
    assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2", "--grid", "optimizer=sgd", "--seeds", "0", "1") == 0
    entries = manifest(tmp_path)["points"]
    assert [entry["label"] for entry in entries] == [
        "lr=0.1 optimizer=sgd seed=0", "lr=0.2 optimizer=sgd seed=0",
        "lr=0.1 optimizer=sgd seed=1", "lr=0.2 optimizer=sgd seed=1"]
    assert {entry["state"] for entry in entries} == {"finished"}
    run_dirs = [tmp_path / "s" / entry["run_dir"] for entry in entries]
    assert len(set(run_dirs)) == 4
    for entry, run_dir in zip(entries, run_dirs):
        args = json.loads((run_dir / "args.json").read_text())
        assert (args["lr"], args["seed"], args["exp"]) == (float(entry["flags"]["lr"]), entry["seed"], "s")
        assert "--optimizer=sgd" in args["others"]
        assert (tmp_path / "s" / entry["log"]).read_text().count("Run directory:") == 1
    out = capsys.readouterr().out
    assert "Sweep s: 4 points: 4 finished" in out
    assert f"Compare: python -m runs {tmp_path / 's'} --group_by lr --group_by optimizer" in out


def test_a_failing_point_does_not_stop_the_others_and_each_error_is_named(tmp_path: Path, capsys) -> None:
    code = run_sweep(tmp_path, "--grid", "lr=-1,0.1,0.2", train=["--fail_lr", "0.1"])
    assert code == 1
    states = {label: entry["state"] for label, entry in points(tmp_path).items()}
    assert states == {"lr=-1": "failed", "lr=0.1": "failed", "lr=0.2": "finished"}
    out = capsys.readouterr().out
    assert "lr=-1: fake_train.py: error: --lr -1.0 must be a positive number." in out  # no run dir: from the log
    assert "lr=0.1: ValueError: the fake run failed on purpose" in out  # from the run's status.json
    assert "Sweep s: 3 points: 1 finished, 2 failed" in out


def test_a_rerun_skips_finished_points_and_retries_failed_ones_only_when_asked(tmp_path: Path) -> None:
    run_sweep(tmp_path, "--grid", "lr=0.1,0.2", train=["--fail_lr", "0.1"])
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "s").rglob("*") if "sweep" not in path.name}
    assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2", train=["--fail_lr", "0.1"]) == 1
    after = {path: path.stat().st_mtime_ns for path in (tmp_path / "s").rglob("*") if "sweep" not in path.name}
    assert after == before  # nothing trained, nothing rewritten
    assert [len(entry["attempts"]) for entry in points(tmp_path).values()] == [1, 1]
    assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2", "--retry_failed", train=["--fail_lr", "0.1"]) == 1
    failed = points(tmp_path)["lr=0.1"]
    first, second = failed["attempts"]
    assert first["run_dir"] != second["run_dir"] == failed["run_dir"]  # a new run; the old one kept in the history
    assert (first["state"], second["state"]) == ("failed", "failed")
    assert len(points(tmp_path)["lr=0.2"]["attempts"]) == 1


def test_more_seeds_add_points_but_a_different_sweep_is_refused(tmp_path: Path, capsys) -> None:
    assert run_sweep(tmp_path, "--grid", "lr=0.1", "--seeds", "0") == 0
    assert run_sweep(tmp_path, "--grid", "lr=0.1", "--seeds", "0", "1") == 0
    assert [entry["label"] for entry in manifest(tmp_path)["points"]] == ["lr=0.1 seed=0", "lr=0.1 seed=1"]
    capsys.readouterr()
    assert run_sweep(tmp_path, "--grid", "lr=0.2", "--seeds", "0", "1") == 2
    err = capsys.readouterr().err
    assert "already holds 2 point(s) this command's --grid/--seeds lack, e.g. 'lr=0.1 seed=0'" in err
    assert run_sweep(tmp_path, "--grid", "lr=0.1", "--seeds", "0", "1", train=["--epochs", "5"]) == 2
    assert "this command gives --epochs 5" in capsys.readouterr().err


def test_the_sweep_needs_no_torch_unless_it_shares_out_gpus(tmp_path: Path) -> None:
    code = ("import sys, runs.sweep; code = runs.sweep.main(['--exp', 's', '--checkpoints_dir', sys.argv[1], "
            "'--grid', 'lr=0.1', '--dry_run']); sys.exit(code or 'torch' in sys.modules or 'tqdm' in sys.modules)")
    result = run_python(["-c", code, str(tmp_path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_shows_the_plan_and_writes_nothing(tmp_path: Path, capsys) -> None:
    assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2", "--dry_run", train=["--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "Sweep s in" in out and "2 points, 2 to run" in out and "Nothing was run (--dry_run)." in out
    assert "new      lr=0.1: " in out and "--lr=0.1 --epochs 2 --exp s --checkpoints_dir" in out
    assert not tmp_path.joinpath("s").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--grid", "lr"], "--grid 'lr': write <flag>=<value>,<value>,..."),
    (["--grid", "lr=0.1,,0.2"], "--grid 'lr=0.1,,0.2': write <flag>=<value>"),
    (["--grid", "lr=1,1"], "--grid 'lr=1,1' repeats a value"),
    (["--grid", "lr=1", "--grid", "lr=2"], "--grid lr is given twice"),
    (["--grid", "seed=1,2"], "--grid 'seed=1,2': the sweep sets --seed itself; give the sweep --seeds"),
    (["--jobs", "0"], "--jobs 0 must be 1 or more"),
    (["--folds", "1"], "--folds 1 must be 2 or more"),
    (["--seeds", "1", "1"], "--seeds 1 1 repeats a seed"),
    (["--exp", "a/b"], "--exp 'a/b' is not a folder name"),
    (["--script", "nowhere.py"], "--script nowhere.py does not exist"),
    (["--", "--seed", "3"], "--seed after --: the sweep sets --seed itself for every run; give the sweep --seeds"),
    (["--", "--exp=x"], "--exp=x after --: the sweep sets --exp itself"),
    (["--grid", "lr=1", "--", "--lr", "2"], "--lr after --: --lr is a --grid flag of this sweep"),
    (["--gpus_per_job", "2"], "--gpus_per_job 2: no CUDA GPU is visible here"),
])
def test_bad_input_is_one_line_naming_the_value(tmp_path: Path, flags: list[str], message: str, monkeypatch,
                                                capsys) -> None:
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cut = flags.index("--") if "--" in flags else len(flags)
    own, train = flags[:cut], flags[cut + 1:]
    argv = ["--exp", "s", "--checkpoints_dir", str(tmp_path), "--script", str(FAKE), *own, "--", *train]
    assert sweep.main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_jobs_run_at_once_each_with_its_own_gpus(tmp_path: Path, monkeypatch) -> None:
    """Two runs that each wait until both have started can only finish if they run at once."""
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    barrier = ["--barrier", str(tmp_path / "barrier"), "--barrier_count", "2"]
    assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2", "--jobs", "2", "--gpus_per_job", "2", train=barrier) == 0
    devices = {json.loads((tmp_path / "s" / entry["run_dir"] / "env.json").read_text())["CUDA_VISIBLE_DEVICES"]
               for entry in points(tmp_path).values()}
    assert devices == {"0,1", "2,3"}


def test_gpus_are_shared_round_robin_and_torch_is_only_asked_when_needed(monkeypatch) -> None:
    def no_torch() -> int:
        raise AssertionError("torch was asked for the GPU count")

    monkeypatch.setattr(gpus, "cuda_device_count", no_torch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpus.job_devices(jobs=1, gpus_per_job=None) is None  # one job at a time: nothing to share out
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,GPU-abc")
    assert gpus.job_devices(jobs=4, gpus_per_job=None) == ["3", "5", "GPU-abc"]
    assert [gpus.slot_devices(slot, ["3", "5", "GPU-abc"], None) for slot in range(4)] == ["3", "5", "GPU-abc", "3"]
    assert [gpus.slot_devices(slot, list("0123"), 2) for slot in range(3)] == ["0,1", "2,3", "0,1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,2")  # CUDA stops reading at an invalid entry
    assert gpus.visible_devices() == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.job_devices(jobs=2, gpus_per_job=None) is None  # no GPU: the jobs share the CPU
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(gpus.UserError, match="--gpus_per_job 3: only 2 GPU"):
        gpus.job_devices(jobs=1, gpus_per_job=3)


@pytest.mark.slow  # two sweep processes
def test_ctrl_c_interrupts_every_run_and_the_next_invocation_resumes_them(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "runs.sweep", "--exp", "s", "--checkpoints_dir", str(tmp_path), "--script",
               str(FAKE), "--grid", "lr=0.1,0.2", "--jobs", "2", "--", "--wait_for_signal"]
    with open(tmp_path / "sweep.log", "w") as log:  # its own session: the test plays the terminal
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    def both_waiting() -> bool:
        if not (tmp_path / "s" / "sweep.json").exists():
            return False
        run_dirs = [tmp_path / "s" / entry["run_dir"] for entry in manifest(tmp_path)["points"] if entry["run_dir"]]
        return len(run_dirs) == 2 and all(read_status(run_dir).get("waiting") for run_dir in run_dirs)

    wait_for(both_waiting, "both runs to wait for a signal")
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    assert process.wait(timeout=EVENT_DEADLINE) == 130
    assert {entry["state"] for entry in manifest(tmp_path)["points"]} == {"interrupted"}
    assert "the same command resumes them" in (tmp_path / "sweep.log").read_text()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=EVENT_DEADLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    for entry in manifest(tmp_path)["points"]:
        assert [attempt["action"] for attempt in entry["attempts"]] == ["new", "resume"]
        assert (tmp_path / "s" / entry["run_dir"] / "resumed.txt").read_text() == "resumed\n"


def test_dead_runs_are_resumed_and_live_ones_left_alone(tmp_path: Path, capsys) -> None:
    assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2") == 0
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    live = subprocess.Popen([sys.executable, "-c", "import sys; print(1, flush=True); sys.stdin.read()", "train.py"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        live.stdout.readline()  # started: its command line is its own
        for label, pid in (("lr=0.1", ended.pid), ("lr=0.2", live.pid)):
            run_dir = tmp_path / "s" / points(tmp_path)[label]["run_dir"]
            (run_dir / "last.pth").write_bytes(b"a checkpoint to resume from")
            (run_dir / "status.json").write_text(json.dumps({"status": "running", "host": socket.gethostname(),
                                                             "pid": pid}))
        capsys.readouterr()
        assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2") == 1
    finally:
        live.stdin.close()
        live.wait()
    entries = points(tmp_path)
    assert [attempt["action"] for attempt in entries["lr=0.1"]["attempts"]] == ["new", "resume"]
    assert entries["lr=0.1"]["state"] == "finished"
    assert entries["lr=0.2"]["state"] == "running" and len(entries["lr=0.2"]["attempts"]) == 1
    assert "still running, started by an earlier sweep or by hand (left alone):" in capsys.readouterr().out


@pytest.mark.slow
def test_the_runs_of_a_sweep_aggregate_by_group(tmp_path: Path, capsys) -> None:
    assert run_sweep(tmp_path, "--grid", "lr=0.01,0.02", "--seeds", "0", "1", "2") == 0
    capsys.readouterr()
    assert runs.main([str(tmp_path / "s"), "--group_by", "lr", "--csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    header = rows[0]
    assert header[:3] == ["lr", "n", "best_mean"]
    column = {name: i for i, name in enumerate(header)}
    for row, lr in zip(rows[1:], (0.01, 0.02)):  # fake val/acc = lr * 10 + seed / 100: seeds 0, 1, 2
        assert float(row[0]) == lr and row[column["n"]] == "3"
        assert float(row[column["val/acc_mean"]]) == pytest.approx(lr * 10 + 0.01)
        assert float(row[column["val/acc_std"]]) == pytest.approx(0.01)


@pytest.mark.slow
def test_real_runs_a_failing_point_does_not_stop_the_other_and_a_rerun_retrains_nothing(
        tiny_demo: Path, tmp_path: Path, capsys) -> None:
    train = without_checkpoints_dir(tiny_train_argv(tiny_demo, tmp_path))
    assert run_sweep(tmp_path, "--grid", "lr=0.003,-1", "--jobs", "2", train=train, script=None) == 1
    out = capsys.readouterr().out
    assert re.search(r"lr=-1: .*error: --lr -1.0 must be a positive number\.", out)  # train.py's message
    good = points(tmp_path)["lr=0.003"]
    run_dir = tmp_path / "s" / good["run_dir"]
    assert good["state"] == "finished" and (run_dir / "best.pth").is_file()
    before = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")}
    assert run_sweep(tmp_path, "--grid", "lr=0.003,-1", "--jobs", "2", train=train, script=None) == 1
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")} == before
    assert [path.name for path in (tmp_path / "s").iterdir() if path.is_dir() and path.name != "sweep_logs"] == [
        run_dir.name]


@pytest.mark.slow
def test_real_run_stopped_by_sigterm_is_resumed_by_the_next_invocation(tiny_demo: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    train = without_checkpoints_dir(tiny_train_argv(tiny_demo, checkpoints, epochs=3))
    command = [sys.executable, "-m", "runs.sweep", "--exp", "s", "--checkpoints_dir", str(checkpoints),
               "--grid", "lr=0.003", "--", *train]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop_after_first_epoch(checkpoints / "s")
    assert process.wait(timeout=EVENT_DEADLINE) == 1  # the sweep itself was not stopped: one run interrupted
    (entry,) = manifest(checkpoints)["points"]
    assert entry["state"] == "interrupted"
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=EVENT_DEADLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    (entry,) = manifest(checkpoints)["points"]
    run_dir = checkpoints / "s" / entry["run_dir"]
    assert [attempt["action"] for attempt in entry["attempts"]] == ["new", "resume"]
    assert read_status(run_dir)["status"] == "finished" and len(read_status(run_dir)["resumes"]) == 1
    assert (run_dir / "metrics.csv").read_text().count("\n") == 4  # header + 3 epochs, each once


def without_checkpoints_dir(argv: list[str]) -> list[str]:
    """train.py flags less --checkpoints_dir (the sweep sets it)."""
    cut = argv.index("--checkpoints_dir")
    return argv[:cut] + argv[cut + 2:]


def stop_after_first_epoch(exp_dir: Path) -> None:
    """SIGTERM the run once epoch 1 is saved and before epoch 3 starts, so that it stops (the
    last epoch would just finish). The run is frozen while its status is checked."""
    deadline = time.monotonic() + EVENT_DEADLINE
    while time.monotonic() < deadline:
        checkpoint = next(exp_dir.glob("*/last.pth"), None)
        status = read_status(checkpoint.parent) if checkpoint else {}
        if status.get("epoch") == 1 and status.get("status") == "running":
            os.kill(status["pid"], signal.SIGSTOP)
            if read_status(checkpoint.parent).get("epoch") == 1:
                os.kill(status["pid"], signal.SIGTERM)
                os.kill(status["pid"], signal.SIGCONT)
                return
            os.kill(status["pid"], signal.SIGCONT)
        time.sleep(0.01)  # a polling interval
    raise AssertionError("the run never saved its first epoch")


def test_folds_run_every_fold_of_every_point(tmp_path: Path, capsys) -> None:
    assert run_sweep(tmp_path, "--grid", "lr=0.1,0.2", "--folds", "3", "--dry_run") == 0
    out = capsys.readouterr().out
    assert "6 points, 6 to run" in out
    for fold in range(3):
        assert f"--folds 3 --fold {fold}" in out


def test_a_point_whose_run_outlived_a_killed_sweep_is_not_trained_twice(tmp_path: Path, capsys) -> None:
    """The sweep was killed outright (-9) after starting a run and before the run named its
    folder; the run goes on. Run again at once, the sweep leaves that point alone (its process
    lives), and learns its folder once the run has named it."""
    assert run_sweep(tmp_path, "--grid", "lr=0.1") == 0
    (entry,) = manifest(tmp_path)["points"]
    finished_run, log = entry["run_dir"], tmp_path / "s" / entry["log"]
    orphan = subprocess.Popen([sys.executable, "-c", "import sys; print(1, flush=True); sys.stdin.read()",
                               str(FAKE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        orphan.stdout.readline()  # started: its command line names the script
        edited = manifest(tmp_path)
        edited["points"][0].update(state="running", run_dir=None)
        edited["points"][0]["attempts"] = [{"action": "new", "command": [sys.executable, str(FAKE)],
                                            "log_offset": log.stat().st_size, "run_dir": None,
                                            "pid": orphan.pid, "host": socket.gethostname()}]
        (tmp_path / "s" / "sweep.json").write_text(json.dumps(edited))
        capsys.readouterr()
        assert run_sweep(tmp_path, "--grid", "lr=0.1") == 1
        (entry,) = manifest(tmp_path)["points"]
        assert entry["state"] == "running" and len(entry["attempts"]) == 1
        assert "still running, started by an earlier sweep or by hand (left alone)" in capsys.readouterr().out
    finally:
        orphan.stdin.close()
        orphan.wait()
    with open(log, "a") as out:  # what the run printed once its folder existed
        out.write(f"Run directory: {tmp_path / 's' / finished_run}\n")
    assert run_sweep(tmp_path, "--grid", "lr=0.1") == 0
    (entry,) = manifest(tmp_path)["points"]
    assert entry["state"] == "finished" and entry["run_dir"] == finished_run and len(entry["attempts"]) == 1
    assert [p.name for p in (tmp_path / "s").iterdir() if p.is_dir() and p.name != "sweep_logs"] == [finished_run]


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["points"][0].pop("label"), 'point 1: "label" is missing'),
    (lambda m: m["points"][0]["flags"].update(lr=[0.1]), 'point 1: "flags" {"lr": [0.1]} holds a value that is not'),
    (lambda m: m["points"][0]["flags"].update(lr={"a": 1}), 'point 1: "flags" {"lr": {"a": 1}} holds a value'),
    (lambda m: m["points"][0]["attempts"].append("x"), 'point 1: an attempt, "x", is not an object'),
    (lambda m: m["points"][0]["attempts"][0].update(log_offset="0"), 'an attempt\'s "log_offset" is "0"'),
    (lambda m: m["points"][0].update(log="/etc/passwd"), '"log" "/etc/passwd" is not a file inside the experiment'),
    (lambda m: m["points"][0].update(state="done"), '"state" is "done", not one of pending'),
    (lambda m: m["points"][0].update(seed=True), '"seed" is true'),
    (lambda m: m.pop("exp"), '"exp" is null'),
    (lambda m: m["points"].append([]), "point 2: [] is not an object"),
])
def test_a_hand_edited_manifest_is_one_message_naming_the_field(tmp_path: Path, edit, message: str, capsys) -> None:
    assert run_sweep(tmp_path, "--grid", "lr=0.1", "--seeds", "0") == 0
    edited = manifest(tmp_path)
    edit(edited)
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(edited))
    capsys.readouterr()
    assert run_sweep(tmp_path, "--grid", "lr=0.1", "--seeds", "0") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("content", ["[" * 100_000, None])
def test_a_manifest_nested_absurdly_deep_or_not_a_file_is_one_message(tmp_path: Path, content, capsys) -> None:
    (tmp_path / "s").mkdir(parents=True)
    if content is None:
        os.mkfifo(tmp_path / "s" / "sweep.json")  # read, it would block the sweep for ever
    else:
        (tmp_path / "s" / "sweep.json").write_text(content)
    assert run_sweep(tmp_path, "--grid", "lr=0.1") == 2
    assert "sweep.json cannot be read" in capsys.readouterr().err


def test_a_full_disk_while_the_sweep_writes_is_one_message(tmp_path: Path, monkeypatch, capsys) -> None:
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".sweep.json"):
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert run_sweep(tmp_path, "--grid", "lr=0.1") == 2
    err = capsys.readouterr().err
    assert f"error: Writing {tmp_path / 's' / 'sweep.json'} failed: the disk is full." in err and err.count("\n") == 1
