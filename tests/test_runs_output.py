"""How `python -m runs` hands over its output: into a pipe whose reader has left (`| head`)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import EVENT_DEADLINE, REPO


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`python -m runs | head` once head has read enough: no BrokenPipeError traceback."""
    run = tmp_path / "base_a"
    run.mkdir()
    (run / "args.json").write_text(json.dumps({"model_type": "base", "lr": 0.01}))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    for flags in ([], ["--show", "base_a"]):
        result = subprocess.run([sys.executable, "-m", "runs", str(tmp_path), *flags], cwd=REPO, stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=EVENT_DEADLINE)
        assert (result.returncode, result.stderr) == (128 + signal.SIGPIPE, "")
    os.close(write_end)
