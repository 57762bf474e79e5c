"""What TensorBoard itself shows, asked through its own HTTP API (not only its file reader):
one entry per run in the run list; in the HPARAMS tab the same comparison metrics first for
every task, readable trial ids, an interrupted run beside the finished ones and the flags a
run was extended with; the custom-scalars charts."""

import csv
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
    """A classification run extended from 2 to 3 epochs by --resume, a segmentation run, and
    a classification run of 3 epochs with EMA weights stopped (TRAIN_STOP_FILE, as Slurm's
    warning) after one."""
    root = tmp_path_factory.mktemp("tensorboard")
    assert train.main(tiny_train_argv(tiny_demo, root, epochs=2) + ["--scheduler", "none", "--save_prefix", "cls"]) == 0
    (classification,) = root.iterdir()
    assert train.main(["--resume", str(classification), "--epochs", "3"]) == 0
    assert train.main(seg_argv(tiny_demo, root) + ["--save_prefix", "seg"]) == 0
    stop_file = tmp_path_factory.mktemp("stop") / "stop"
    validate = train.Trainer.validate

    def validate_then_ask_to_stop(trainer: train.Trainer) -> dict:
        values = validate(trainer)
        stop_file.touch()  # the loop stops after this epoch
        return values

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAIN_STOP_FILE", str(stop_file))
        patch.setattr(train.Trainer, "validate", validate_then_ask_to_stop)
        assert train.main(tiny_train_argv(tiny_demo, root, epochs=3) + ["--save_prefix", "stopped",
                                                                        "--ema_decay", "0.9"]) != 0
    (stopped,) = root.glob("*_stopped_*")
    assert json.loads((stopped / "status.json").read_text())["status"] == "interrupted"
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
    assert {"train_step/loss", "train_step/lr", "val/acc", "compare/best"} <= set(tags[classification])
    with open(logdir / classification / "metrics.csv") as file:
        assert "train/lr" in next(csv.DictReader(file))  # the epoch's rate: metrics.csv keeps it,
    assert "train/lr" not in tags[classification]  # TensorBoard has it once, train_step/lr


COMPARED = ["compare/best", "compare/epoch", "compare/last", "compare/val_loss"]


def session_groups(server: str, count: int) -> list[dict]:
    request = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}

    def groups() -> list | None:
        found = get(f"{server}/data/plugin/hparams/session_groups", request).get("sessionGroups", [])
        return found if len(found) == count and all(group["metricValues"] for group in found) else None

    return wait_for(groups, f"{count} sessions with metrics")


def test_hparams_compare_every_task_by_the_same_metrics_shown_first(server: str) -> None:
    def experiment() -> dict | None:
        found = get(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""})
        names = {info["name"]["tag"] for info in found.get("metricInfos", [])}
        return found if {"val/acc", "val/miou"} <= names else None

    found = wait_for(experiment, "the metrics of both tasks")
    names = [info["name"]["tag"] for info in found["metricInfos"]]
    assert names[:4] == COMPARED  # the tab shows the first five: these, whatever the tasks
    for group in session_groups(server, 3):  # every run has every compared value: the parallel view keeps it
        values = {value["name"]["tag"]: value["value"] for value in group["metricValues"]}
        assert set(COMPARED) <= set(values), group["name"]
        assert values["compare/best"] >= values["compare/last"]  # val/acc, val/miou: more is better


def test_hparams_trial_ids_start_with_the_time_a_run_started(server: str, logdir: Path) -> None:
    for group in session_groups(server, 3):  # three groups: no two runs share a trial id
        folder = group["name"].split(" ", 1)[-1]
        started = json.loads((logdir / folder / "status.json").read_text())["started"]
        assert group["name"] == f"{started[11:19]} {folder}"  # the column shows the time, then the folder


def test_hparams_list_an_interrupted_run_with_the_epochs_it_did(server: str) -> None:
    groups = session_groups(server, 3)
    epochs = {group["hparams"]["save_prefix"]: group["hparams"]["epochs"] for group in groups}
    assert epochs == {"cls": 3, "seg": 1, "stopped": 3}  # the flags a run was extended with, too
    done = {group["hparams"]["save_prefix"]: {value["name"]["tag"]: value["value"] for value in group["metricValues"]}
            for group in groups}
    assert (done["cls"]["compare/epoch"], done["seg"]["compare/epoch"], done["stopped"]["compare/epoch"]) == (3, 1, 1)
    status = {group["hparams"]["save_prefix"]: group["sessions"][0]["status"] for group in groups}
    assert status == {"cls": "STATUS_SUCCESS", "seg": "STATUS_SUCCESS", "stopped": "STATUS_UNKNOWN"}


def test_the_custom_scalars_page_puts_train_and_val_of_each_metric_on_one_chart(server: str, logdir: Path) -> None:
    (classification,) = [run.name for run in logdir.iterdir() if "_cls_" in run.name]

    def layout() -> dict | None:
        found = get(f"{server}/data/plugin/custom_scalars/layout")
        return found if found.get("category") else None

    found = [chart for category in wait_for(layout, "a layout")["category"] for chart in category["chart"]]
    titles = [chart["title"] for chart in found]
    assert len(titles) == len(set(titles))  # the runs' layouts merge into one chart per metric, EMA or not
    charts = {chart["title"]: chart["multiline"]["tag"] for chart in found}
    assert {"loss", "acc", "miou"} <= set(charts)  # both tasks' metrics, from one logdir
    assert charts["loss"][:2] == ["^train/loss$", "^val/loss$"]
    found = get(f"{server}/data/plugin/custom_scalars/scalars?run={classification}&tag=%5Eval%2Facc%24")
    assert found["regex_valid"] and len(found["tag_to_events"]["val/acc"]) == 3  # the chart's regex finds the curve
    assert set(charts["val/iou per class"]) == {"^val/iou/"} and "val/acc per class" in charts  # a chart of the classes
    (segmentation,) = [run.name for run in logdir.iterdir() if "_seg_" in run.name]
    found = get(f"{server}/data/plugin/custom_scalars/scalars?run={segmentation}&tag=%5Eval%2Fiou%2F")
    assert set(found["tag_to_events"]) == {f"val/iou/{name}" for name in
                                           ("background", "circle", "square", "triangle", "cross", "ring")}
