"""A full disk or a deleted run folder while the template writes any of its files (metrics.csv,
status.json, TensorBoard events, log.txt, args.json, results): one clear message naming the
file and the cause, exit code 2, no traceback, and status.json not left "running" where it
can still be written. Faults are injected where the write happens (a real small tmpfs too,
where this machine lets the test mount one)."""

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import EVENT_DEADLINE, REPO, latest_checkpoint, tiny_train_argv

import train
from predict import PredictionCsv
from utils.atomic import WriteError, atomic_write_text
from utils.errors import UserError
from utils.logger import LogFile, Logger
from utils.run_status import RunStatus

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


def fail_temporary_files_of(monkeypatch, prefix: str) -> None:
    """Every atomic write of a file whose name starts with `prefix` meets a full disk."""
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(f".{prefix}"):
            raise DISK_FULL
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_a_write_error_names_the_file_and_the_cause(tmp_path: Path, monkeypatch) -> None:
    atomic_write_text(tmp_path / "metrics.csv", "epoch\n1\n")
    fail_temporary_files_of(monkeypatch, "metrics.csv")
    with pytest.raises(WriteError) as raised:
        atomic_write_text(tmp_path / "metrics.csv", "epoch\n1\n2\n")
    assert str(raised.value) == (f"Writing {tmp_path / 'metrics.csv'} failed: the disk is full. The previous "
                                 "metrics.csv is intact (writes are atomic).")
    assert isinstance(raised.value, UserError) and raised.value.errno == errno.ENOSPC
    with pytest.raises(WriteError, match=f"its folder {tmp_path / 'gone'} no longer exists"):
        atomic_write_text(tmp_path / "gone" / "args.json", "{}")


def test_status_json_still_says_how_a_run_ended_on_a_disk_too_full_for_a_temporary_file(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    status = RunStatus(tmp_path)
    status.running()
    fail_temporary_files_of(monkeypatch, "status.json")
    status.failed(WriteError("Writing metrics.csv failed: the disk is full.", errno.ENOSPC))
    values = json.loads((tmp_path / "status.json").read_text())
    assert values["status"] == "failed" and "the disk is full" in values["error"]


def test_a_log_txt_that_cannot_be_written_is_said_once_not_a_traceback_per_message(tmp_path: Path, capsys) -> None:
    handler = LogFile(tmp_path / "log.txt")

    class FullDisk:
        def write(self, text: str) -> None:
            raise DISK_FULL

        def flush(self) -> None:
            pass

    handler.stream = FullDisk()
    for n in range(3):
        handler.emit(logging.LogRecord("train", logging.INFO, __file__, 1, f"message {n}", None, None))
    err = capsys.readouterr().err
    assert err.count(f"warning: Writing {tmp_path / 'log.txt'} failed: the disk is full.") == 1
    assert "Logging error" not in err and "Traceback" not in err


def test_predictions_csv_in_a_deleted_folder_is_a_write_error(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="predictions.csv failed: its folder .* no longer exists"):
        PredictionCsv(tmp_path / "gone" / "predictions.csv", ["path", "prediction"])


def test_tensorboard_events_in_a_deleted_folder_are_one_message(tmp_path: Path, capfd) -> None:
    """TensorBoard writes from a thread of its own: its error is reported by the next call, once."""
    logger = Logger(tmp_path / "run")
    while (tmp_path / "run").exists():  # its writer thread may be adding the events file meanwhile
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
    with pytest.raises(WriteError, match="events.out.tfevents.* failed: its folder .* no longer exists"):
        logger.save_curves(1, {"val/acc": 0.5}, 3)  # its flush waits for the writer thread, which meets the error
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.slow
def test_a_full_disk_at_metrics_csv_fails_the_run_with_one_message(tiny_demo: Path, tmp_path: Path, monkeypatch,
                                                                  capfd) -> None:
    fail_temporary_files_of(monkeypatch, "metrics.csv")
    assert train.main(tiny_train_argv(tiny_demo, tmp_path)) == 2
    (run_dir,) = tmp_path.iterdir()
    err = capfd.readouterr().err
    assert f"error: Writing {run_dir / 'metrics.csv'} failed: the disk is full." in err and "Traceback" not in err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "the disk is full" in status["error"]


@pytest.mark.slow
def test_a_run_folder_deleted_while_it_trains_is_one_message(tiny_demo: Path, tmp_path: Path, monkeypatch,
                                                             capfd) -> None:
    real_save = Logger.save_curves

    def deleted_before_epoch_2s_curves(self, epoch, values, global_step, **options):
        while epoch == 2 and self.run_dir.exists():  # the checkpoint writer's thread may add a file meanwhile
            shutil.rmtree(self.run_dir, ignore_errors=True)
        real_save(self, epoch, values, global_step, **options)

    monkeypatch.setattr(Logger, "save_curves", deleted_before_epoch_2s_curves)
    assert train.main(tiny_train_argv(tiny_demo, tmp_path, epochs=2)) == 2
    err = capfd.readouterr().err
    assert "failed: its folder" in err and "no longer exists (deleted or moved while it was being written?)" in err
    assert "status.json could not be updated either" in err and "Traceback" not in err


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 8 MB tmpfs (the run's checkpoints are about 1 MB each); skipped where mounting is not allowed."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.slow
def test_a_real_disk_that_fills_up_mid_run_ends_it_with_one_message(tiny_demo: Path, small_disk: Path) -> None:
    """The run trains until its first checkpoint; then, frozen, the disk is filled to the last
    byte, and the run goes on until a write meets it (metrics.csv, TensorBoard, a checkpoint)."""
    checkpoints = small_disk / "checkpoints"
    argv = tiny_train_argv(tiny_demo, checkpoints, epochs=500) + ["--scheduler", "none"]
    log = small_disk.parent / "train.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + EVENT_DEADLINE
        while latest_checkpoint(checkpoints) is None and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint was saved"
            time.sleep(0.02)  # a polling interval; the event waited for is the first checkpoint
        os.kill(process.pid, signal.SIGSTOP)
        with open(small_disk / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:  # full
                pass
        os.kill(process.pid, signal.SIGCONT)
        assert process.wait(timeout=EVENT_DEADLINE) == 2
    finally:
        process.kill()
    output = log.read_text()
    assert "the disk is full" in output and "Traceback" not in output and "Logging error" not in output
    (run_dir,) = checkpoints.iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "the disk is full" in status["error"]
