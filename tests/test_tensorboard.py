"""What TensorBoard itself shows, asked through its own HTTP API (not only its file reader):
one entry per run in the run list, the metrics of every task in the HPARAMS tab, and the
flags a run was extended with."""

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import EVENT_DEADLINE, tiny_train_argv

import train

pytestmark = pytest.mark.slow


def seg_argv(demo: Path, checkpoints: Path) -> list[str]:
    return tiny_train_argv(demo, checkpoints) + ["--data_type", "seg_list", "--model_type", "unet",
                                                 "--train_list", str(demo / "seg_train.txt"),
                                                 "--val_list", str(demo / "seg_val.txt")]


@pytest.fixture(scope="module")
def logdir(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classification run extended from 2 to 3 epochs by --resume, and a segmentation run."""
    root = tmp_path_factory.mktemp("tensorboard")
    assert train.main(tiny_train_argv(tiny_demo, root, epochs=2) + ["--scheduler", "none", "--save_prefix", "cls"]) == 0
    (classification,) = root.iterdir()
    assert train.main(["--resume", str(classification), "--epochs", "3"]) == 0
    assert train.main(seg_argv(tiny_demo, root) + ["--save_prefix", "seg"]) == 0
    return root


@pytest.fixture(scope="module")
def server(logdir: Path):
    """TensorBoard serving `logdir` on a free port; its address, once it says it listens."""
    process = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", "0",
                                "--reload_interval", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = None
    for line in process.stdout:  # an event: the line naming the address
        match = re.search(r"(http://localhost:\d+)/", line)
        if match:
            address = match.group(1)
            break
    assert address, "TensorBoard did not start"
    yield address
    process.kill()
    process.wait()


def get(url: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_for(condition, what: str):
    """Poll TensorBoard until `condition()` returns something truthy (it loads files in the background)."""
    deadline = time.monotonic() + EVENT_DEADLINE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)  # a polling interval: the condition is the event waited for
    raise AssertionError(f"TensorBoard never showed {what}")


def test_every_run_shows_once_in_the_run_list(server: str, logdir: Path) -> None:
    runs = sorted(p.name for p in logdir.iterdir())
    assert wait_for(lambda: sorted(get(f"{server}/data/runs")) == runs or None, f"the runs {runs}")
    tags = get(f"{server}/data/plugin/scalars/tags")
    assert set(tags) == set(runs)  # no `<run>/steps` or hparams sub-folder
    (classification,) = [run for run in runs if "_cls_" in run]
    assert {"train_step/loss", "train_step/lr", "val/acc", "best/val/acc"} <= set(tags[classification])


def test_hparams_list_the_metrics_of_every_task(server: str) -> None:
    def experiment() -> dict | None:
        found = get(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""})
        names = {info["name"]["tag"] for info in found.get("metricInfos", [])}
        return found if {"val/acc", "val/miou"} <= names else None

    found = wait_for(experiment, "the metrics of both runs")
    names = {info["name"]["tag"] for info in found["metricInfos"]}
    assert {"val/acc", "val/miou", "best/val/acc", "best/val/miou", "train/pixel_acc"} <= names


def test_hparams_show_the_epochs_a_run_was_extended_to(server: str) -> None:
    request = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}

    def sessions() -> list | None:
        groups = get(f"{server}/data/plugin/hparams/session_groups", request).get("sessionGroups", [])
        return groups if len(groups) == 2 else None

    groups = wait_for(sessions, "two sessions")
    epochs = {group["hparams"]["save_prefix"]: group["hparams"]["epochs"] for group in groups}
    assert epochs == {"cls": 3, "seg": 1}


def test_the_custom_scalars_page_puts_train_and_val_of_each_metric_on_one_chart(server: str, logdir: Path) -> None:
    (classification,) = [run.name for run in logdir.iterdir() if "_cls_" in run.name]

    def layout() -> dict | None:
        found = get(f"{server}/data/plugin/custom_scalars/layout")
        return found if found.get("category") else None

    charts = {chart["title"]: chart["multiline"]["tag"] for category in wait_for(layout, "a layout")["category"]
              for chart in category["chart"]}
    assert {"loss", "acc", "miou"} <= set(charts)  # both tasks' metrics, from one logdir
    assert charts["loss"][:2] == ["^train/loss$", "^val/loss$"]
    found = get(f"{server}/data/plugin/custom_scalars/scalars?run={classification}&tag=%5Eval%2Facc%24")
    assert found["regex_valid"] and len(found["tag_to_events"]["val/acc"]) == 3  # the chart's regex finds the curve
