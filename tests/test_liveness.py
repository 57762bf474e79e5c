"""utils/liveness.py: a run that says "running" but whose process is gone, whose pid now belongs
to another program, or whose heartbeat stopped, is shown as dead in the table and in --show."""

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from runs import listing as runs
from utils import liveness
from utils.liveness import STALE_HEARTBEAT_S, dead_reason, shown_status

HOST = socket.gethostname()


def ended_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def ago(seconds: float) -> str:
    return (datetime.now().astimezone() - timedelta(seconds=seconds)).isoformat(timespec="seconds")


def test_a_run_whose_process_is_gone_from_this_host_is_dead() -> None:
    pid = ended_pid()
    status = {"status": "running", "host": HOST, "pid": pid}
    assert shown_status(status) == "dead"
    assert dead_reason(status) == f"its process {pid} is gone"
    assert shown_status({**status, "host": "another-host"}) == "running"  # cannot ask another host
    assert shown_status({**status, "status": "finished"}) == "finished"


def test_a_live_training_process_keeps_its_run_running() -> None:
    script = "import sys; print('started', flush=True); sys.stdin.read()"
    with subprocess.Popen([sys.executable, "-c", script, "train.py"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout.readline() == "started\n"  # past exec: /proc shows its own command line
        status = {"status": "running", "host": HOST, "pid": process.pid, "heartbeat": ago(1)}
        assert shown_status(status) == "running"
        process.stdin.close()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_a_reused_pid_that_runs_another_program_means_dead(monkeypatch) -> None:
    status = {"status": "running", "host": HOST, "pid": os.getpid()}  # pytest: neither train.py nor eval.py
    assert dead_reason(status) == f"its pid {os.getpid()} now belongs to another program"
    monkeypatch.setattr(liveness, "PROC", Path("/no/proc/here"))  # macOS: only os.kill can tell
    assert shown_status(status) == "running"


def test_a_stale_heartbeat_means_dead_on_any_host() -> None:
    status = {"status": "running", "host": "another-host", "pid": 1234}
    assert shown_status({**status, "heartbeat": ago(STALE_HEARTBEAT_S - 60)}) == "running"
    stale = {**status, "heartbeat": ago(STALE_HEARTBEAT_S + 120)}
    assert shown_status(stale) == "dead" and dead_reason(stale).startswith("no heartbeat for 12 min")


@pytest.mark.parametrize("fields", [
    {},  # a run from before host, pid and heartbeat: not guessed at
    {"host": HOST, "pid": "123"}, {"host": HOST, "pid": True}, {"host": HOST, "pid": 0}, {"host": HOST, "pid": -1},
    {"host": HOST, "pid": 2**40}, {"host": ["a"], "pid": [1]}, {"heartbeat": "yesterday"}, {"heartbeat": 5},
    {"heartbeat": "2020-01-01T00:00:00"},  # no time zone: cannot be compared, not guessed at
])
def test_runs_without_usable_liveness_fields_stay_running(fields: dict) -> None:
    assert shown_status({"status": "running", **fields}) == "running"


def test_the_table_and_show_report_dead_runs(tmp_path: Path, capsys) -> None:
    pid = ended_pid()
    for name, extra in (("base_dead", {"host": HOST, "pid": pid}), ("base_alive", {})):
        run = tmp_path / name
        run.mkdir()
        (run / "args.json").write_text(json.dumps({"model_type": "base", "lr": 0.01}))
        (run / "status.json").write_text(json.dumps({"status": "running", "started": ago(30), **extra}))
    assert runs.main([str(tmp_path), "--where", "status=dead", "--csv"]) == 0
    out = capsys.readouterr().out
    assert "base_dead" in out and "base_alive" not in out
    assert runs.main([str(tmp_path), "--show", "base_dead"]) == 0
    out = capsys.readouterr().out
    assert f"status   dead (status.json says running, but its process {pid} is gone)" in out
    assert f"process {pid} on {HOST}, last heartbeat none" in out
