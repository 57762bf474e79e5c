"""--logger mlflow / wandb against the real libraries, offline: what MLflow's own client reads
back from the run folder's store and what W&B's offline run file holds equal metrics.csv and
the flags; a resumed run goes on in the same tracker run, its steps after the first part's;
a tracker whose package is missing is refused at start-up, naming its pip command. Skipped
where the dev requirements (mlflow-skinny, wandb) are not installed."""

import contextlib
import csv
import json
import signal
from pathlib import Path

import pytest
import torch
from helpers import start_and_stop, tiny_train_argv

import train
from utils.stop_signals import StopRequested
from utils.trackers import TRACKERS, TRACKERS_FILE, MLflowTracker, Trackers, metric_name

BLOCK = 32768  # W&B's run file: records in blocks of this size (the LevelDB log format)


@pytest.fixture(autouse=True)
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B offline and quiet, its settings and caches in the test's folder, not the home."""
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": tmp_path / "wandb_dir",
                        "WANDB_CONFIG_DIR": tmp_path / "wandb_config", "WANDB_CACHE_DIR": tmp_path / "wandb_cache",
                        "WANDB_DATA_DIR": tmp_path / "wandb_data"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def metrics_csv(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{name: float(value) for name, value in row.items() if value != ""} for row in csv.DictReader(f)]


def train_run(argv: list[str]) -> Path:
    """Train (in this process); the run folder."""
    assert train.main(argv) == 0
    args = argv[argv.index("--checkpoints_dir") + 1]
    (run_dir,) = [p for p in Path(args).iterdir() if (p / "args.json").is_file()]
    return run_dir


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (`run-<id>.wandb`), parsed with wandb's own protobuf
    classes; the file is a LevelDB-style log: 7 bytes of header, then blocks of records, each
    with a 7-byte header (checksum, length, kind: 1 whole, 2 first part, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, parts, records = 7, b"", []
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's end too short for a header: padding
            position += BLOCK - position % BLOCK
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        parts += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def wandb_history(run_dir: Path) -> tuple[set[str], dict[int, dict[str, float]]]:
    """The W&B run ids of a run folder's offline runs (one per start: a resumed run adds one),
    and the history they hold: step -> {name: value}."""
    ids, history = set(), {}
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
            elif kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                       for item in record.history.item}
                history.setdefault(row.pop("_step"), {}).update(
                    {name: value for name, value in row.items() if not name.startswith("_")})
    return ids, history


def mlflow_run(run_dir: Path):
    """The run folder's MLflow run, read with MLflow's own client from its store."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    kept = json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    return client, client.get_run(kept["run_id"])


@pytest.mark.slow
def test_mlflow_and_wandb_get_what_metrics_csv_and_args_hold(tiny_demo: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    argv = tiny_train_argv(tiny_demo, tmp_path / "checkpoints", epochs=2) + ["--logger", "tensorboard", "mlflow",
                                                                            "wandb", "--lr", "0.002"]
    run_dir = train_run(argv)
    rows = metrics_csv(run_dir)
    saved_args = json.loads((run_dir / "args.json").read_text())

    client, run = mlflow_run(run_dir)
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.002"
    assert {name: run.data.params[name] for name in saved_args} == {name: str(value) for name, value in
                                                                     saved_args.items()}
    epoch_steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
    for name in rows[0]:
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric_name(name))}
        got = [history.get(step) for step, row in zip(epoch_steps, rows) if name in row]
        assert got == pytest.approx([row[name] for row in rows if name in row], nan_ok=True), name

    ids, history = wandb_history(run_dir)
    assert len(ids) == 1
    by_epoch = {values["epoch"]: values for values in history.values() if "epoch" in values}
    for row in rows:
        assert {name: by_epoch[row["epoch"]][name] for name in row} == pytest.approx(row, nan_ok=True)
    assert any(name.startswith("train_step/") for values in history.values() for name in values)
    assert list(run_dir.glob("events.out.tfevents.*"))  # TensorBoard as before


@pytest.mark.slow
def test_an_interrupted_run_resumed_continues_the_same_tracker_runs(tiny_demo: Path, tmp_path: Path) -> None:
    """SIGTERM after epoch 1 of 3: the tracker runs end interrupted; --resume reopens them (the
    same ids), their steps going on, and they end finished."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    checkpoints = tmp_path / "checkpoints"
    argv = tiny_train_argv(tiny_demo, checkpoints, epochs=3) + ["--logger", "mlflow", "wandb"]
    process = start_and_stop(argv, checkpoints, lambda checkpoint: checkpoint["epoch"] >= 1, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, process.output
    (run_dir,) = checkpoints.iterdir()
    first = json.loads((run_dir / TRACKERS_FILE).read_text())
    client, run = mlflow_run(run_dir)
    assert run.info.status == "KILLED"
    first_steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    _, first_history = wandb_history(run_dir)

    assert train.main(["--resume", str(run_dir), "--log_freq", "3"]) == 0

    assert json.loads((run_dir / TRACKERS_FILE).read_text()) == first  # the same run ids
    client, run = mlflow_run(run_dir)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert steps[:len(first_steps)] == first_steps and len(steps) == 3 and steps == sorted(set(steps))
    assert run.data.params["log_freq"] == "20" and run.data.tags["resumed.log_freq"] == "3"
    ids, history = wandb_history(run_dir)
    assert ids == {first["wandb"]["run_id"]}
    assert min(set(history) - set(first_history)) > max(first_history)  # the resumed part goes on after
    epochs = {values["epoch"]: step for step, values in history.items() if "epoch" in values}
    assert sorted(epochs) == [1, 2, 3] and epochs[1] < epochs[2] < epochs[3]
    assert [row["epoch"] for row in metrics_csv(run_dir)] == [1, 2, 3]
    assert not list(run_dir.glob("events.out.tfevents.*"))  # --logger without tensorboard: none


def test_a_missing_tracker_package_is_refused_naming_pip(tiny_demo: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(MLflowTracker, "package", "no_such_tracker_package")
    argv = tiny_train_argv(tiny_demo, tmp_path / "checkpoints") + ["--logger", "mlflow"]
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "mlflow" in err and "pip install mlflow" in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()


def test_an_unknown_logger_names_the_choices(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--logger", "no_such_logger"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no_such_logger" in err and "tensorboard" in err


class RecordingTracker:
    """A tracker that keeps what it is told, for the bookkeeping around every tracker."""

    package, install = "json", "pip install nothing"
    calls: list = []

    def start(self, run_dir: Path, args: dict, resumed: dict | None) -> dict:
        self.calls.append(("start", resumed))
        return {"run_id": "r1"}

    def log(self, values: dict[str, float], step: int) -> None:
        self.calls.append(("log", values, step))

    def finish(self, status: str) -> None:
        self.calls.append(("finish", status))


@pytest.mark.parametrize("error, status", [(None, "finished"), (StopRequested(signal.SIGTERM), "interrupted"),
                                           (ValueError("a bug"), "failed")])
def test_tracker_runs_end_as_the_training_ended(error: Exception | None, status: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TRACKERS, "recording", RecordingTracker)
    monkeypatch.setattr(RecordingTracker, "calls", [])
    with Trackers(["recording"], tmp_path, {}) as trackers:
        trackers.log({"train_step/loss": torch.tensor(0.5)}, 7)
    with pytest.raises(type(error)) if error else contextlib.nullcontext(), Trackers(["recording"], tmp_path, {}):
        if error:
            raise error
    assert RecordingTracker.calls == [("start", None), ("log", {"train_step/loss": 0.5}, 7), ("finish", "finished"),
                                      ("start", {"run_id": "r1"}), ("finish", status)]  # the second: resumed
    assert Trackers(["recording"], tmp_path, {}, enabled=False).trackers == {}  # other ranks: none
