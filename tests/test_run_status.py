"""utils/run_status.py: status.json records which process runs a run, and a heartbeat thread
keeps saying it is alive without ever losing another write."""

import json
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import EVENT_DEADLINE

from utils.atomic import atomic_write_text
from utils.run_status import RunStatus


def read(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


def heartbeat_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "status-heartbeat"]


def test_running_records_the_host_and_pid_also_on_resume(tmp_path: Path) -> None:
    status = RunStatus(tmp_path)
    status.running()
    values = read(tmp_path)
    assert (values["status"], values["host"], values["pid"]) == ("running", socket.gethostname(), os.getpid())
    atomic_write_text(tmp_path / "status.json", json.dumps({**values, "pid": 1, "host": "elsewhere",
                                                             "resumes": "hand-edited"}))
    status.running(resumed_from="last.pth")
    values = read(tmp_path)
    assert (values["host"], values["pid"]) == (socket.gethostname(), os.getpid())
    assert [resume["from"] for resume in values["resumes"]] == ["last.pth"]  # junk replaced, no crash


def test_the_heartbeat_is_written_at_once_and_then_again_until_stopped(tmp_path: Path) -> None:
    status = RunStatus(tmp_path)
    status.running()
    assert "heartbeat" not in read(tmp_path)  # only a beating run claims a heartbeat
    status.start_heartbeat(interval_s=0.01)
    try:
        first = datetime.fromisoformat(read(tmp_path)["heartbeat"])
        assert first.tzinfo is not None and abs(first - datetime.now().astimezone()).total_seconds() < EVENT_DEADLINE
        atomic_write_text(tmp_path / "status.json", json.dumps({"status": "running"}))  # beat removed...
        deadline = time.monotonic() + EVENT_DEADLINE
        while "heartbeat" not in RunStatus(tmp_path).values and time.monotonic() < deadline:
            time.sleep(0.01)  # polling interval
        assert "heartbeat" in read(tmp_path)  # ...and written again by the thread
    finally:
        status.stop_heartbeat()
    assert heartbeat_threads() == []


def test_heartbeats_never_undo_the_main_threads_writes(tmp_path: Path) -> None:
    """Each write reads the file and writes it back: without one lock, a beat that read the
    file just before `progress` wrote it puts the old epoch back (or loses "finished")."""
    status, other_writer = RunStatus(tmp_path), RunStatus(tmp_path)  # train.py's main and its Trainer
    status.running()
    status.start_heartbeat(interval_s=1e-4)
    try:
        for epoch in range(1, 51):
            other_writer.progress(epoch, step=epoch * 10, best={"val/acc": epoch / 100}, best_epoch=epoch)
            assert read(tmp_path)["epoch"] == epoch
        other_writer.finished()
        assert read(tmp_path)["status"] == "finished"
    finally:
        status.stop_heartbeat()
    values = read(tmp_path)
    assert (values["status"], values["epoch"], values["best"]) == ("finished", 50, {"val/acc": 0.5})


def test_a_disabled_status_writes_no_heartbeat_and_a_bad_interval_is_refused(tmp_path: Path) -> None:
    RunStatus(tmp_path, enabled=False).start_heartbeat(interval_s=0.01)
    assert not (tmp_path / "status.json").exists() and heartbeat_threads() == []
    with pytest.raises(ValueError, match="heartbeat interval 0"):
        RunStatus(tmp_path).start_heartbeat(interval_s=0)
    RunStatus(tmp_path).stop_heartbeat()  # never started: nothing to do
