"""Experiment trackers beside TensorBoard and metrics.csv: MLflow and Weights & Biases
(`--logger mlflow wandb`), for those who compare runs there.

Optional: a tracker's package is imported only when `--logger` names it (one that is not
installed is refused at start-up: `missing_package`), and only rank 0 writes. Offline by
default: MLflow into a file store inside the run folder (`mlruns/`; or `--mlflow_uri` /
MLFLOW_TRACKING_URI), W&B in offline mode (unless WANDB_MODE says otherwise) into the run
folder's `wandb/`. Each tracker's run id is kept in the run folder's `trackers.json`, so
`--resume` continues the same tracker run, its steps going on from the checkpoint's.
Each tracker has the same three methods: start, log, finish.
"""

import importlib.util
import json
import logging
import os
import re
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol

from utils.atomic import atomic_write_text
from utils.errors import UserError
from utils.small_files import read_json_file
from utils.stop_signals import StopRequested

log = logging.getLogger(__name__)
TRACKERS_FILE = "trackers.json"


class Tracker(Protocol):
    """What a tracker of `TRACKERS` provides (the package it needs in `package`, its pip
    command in `install`)."""

    def start(self, run_dir: Path, args: dict, resumed: dict | None) -> dict:
        """Open the tracker's run for `run_dir` with the flags `args`: a new one, or (on
        --resume) the one `resumed` describes; return what reopens it (kept in trackers.json)."""

    def log(self, values: dict[str, float], step: int) -> None:
        """Record the values at the global step `step` (optimizer steps, as in TensorBoard)."""

    def finish(self, status: str) -> None:
        """End the run: `status` is "finished", "interrupted" (to be resumed) or "failed"."""


class MLflowTracker:
    """One MLflow run per training run: the flags as its params, every curve as a metric."""

    package = "mlflow"
    install = "pip install mlflow"  # or mlflow-skinny: the tracking client alone

    def __init__(self) -> None:
        self.client = None
        self.run_id = ""

    def start(self, run_dir: Path, args: dict, resumed: dict | None) -> dict:
        """Open the run (a new one, or `resumed["run_id"]` again) in --mlflow_uri's store, else
        MLFLOW_TRACKING_URI's, else a file store in the run folder; returns what reopens it."""
        from mlflow.tracking import MlflowClient

        given = args.get("mlflow_uri")
        if given and given.startswith("file:") and not given.startswith("file:/"):  # relative: to where it ran
            given = Path(given.removeprefix("file:")).absolute().as_uri()
        uri = (resumed or {}).get("tracking_uri") or given or os.environ.get("MLFLOW_TRACKING_URI")
        if resumed and given and given != uri:
            log.warning(f"--mlflow_uri {given} ignored: the run goes on in its MLflow store, {uri or 'mlruns/'}")
        store = uri or (run_dir / "mlruns").absolute().as_uri()
        if store.startswith("file:") or "://" not in store:  # MLflow 3 refuses a file store without this
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=store)
        if resumed:
            self.run_id = resumed["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            logged = self.client.get_run(self.run_id).data.params
        else:
            name = args.get("exp") or "Default"
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name,
                                                 tags={"run_dir": str(run_dir.absolute())}).info.run_id
            logged = {}
        self.log_params(args, logged)
        log.info(f"MLflow run {self.run_id} in {store}")
        return {"run_id": self.run_id, "tracking_uri": uri}

    def log_params(self, args: dict, logged: dict[str, str]) -> None:
        """The flags as params; a param cannot change, so one a resumed run changed (--epochs)
        becomes a tag `resumed.<flag>`."""
        from mlflow.entities import Param

        values = {name: str(value)[:6000] for name, value in args.items()}
        new = [Param(name, value) for name, value in values.items() if name not in logged]
        for first in range(0, len(new), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=new[first:first + 100])
        for name, value in values.items():
            if name in logged and logged[name] != value:
                self.client.set_tag(self.run_id, f"resumed.{name}", value)

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(metric_name(name), value, now, step) for name, value in values.items()]
        for first in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call
            self.client.log_batch(self.run_id, metrics=metrics[first:first + 1000])

    def finish(self, status: str) -> None:
        mlflow_status = {"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=mlflow_status)


class WandbTracker:
    """One W&B run per training run: the flags as its config, every curve in its history."""

    package = "wandb"
    install = "pip install wandb"

    def __init__(self) -> None:
        self.run = None

    def start(self, run_dir: Path, args: dict, resumed: dict | None) -> dict:
        """Open the run (offline unless WANDB_MODE says otherwise; a resumed one by its id)."""
        import wandb

        self.run = wandb.init(project=args.get("exp") or None, name=run_dir.name, dir=str(run_dir.absolute()),
                              id=resumed["run_id"] if resumed else None, resume="allow" if resumed else None,
                              mode=os.environ.get("WANDB_MODE", "offline"), config=args,
                              settings=wandb.Settings(console="off"))  # log.txt has the output; the bar stays whole
        log.info(f"W&B run {self.run.id} ({self.run.settings.mode}) in {self.run.dir}")
        return {"run_id": self.run.id}

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, status: str) -> None:
        if status == "interrupted":
            self.run.mark_preempting()  # W&B shows it as preempted: to be resumed
        self.run.finish(exit_code=0 if status == "finished" else 1)


# The trackers `--logger` can name besides "tensorboard" (which utils/logger.py writes).
TRACKERS: dict[str, type[Tracker]] = {"mlflow": MLflowTracker, "wandb": WandbTracker}
LOGGER_NAMES = ["tensorboard", *TRACKERS]


def missing_package(name: str) -> str | None:
    """For `--logger`'s check at start-up: why the tracker `name` cannot run (its package is
    not installed, and the pip command that installs it), else None. Looked up, not
    imported: the import waits until the run starts."""
    tracker = TRACKERS.get(name)
    if tracker is not None and importlib.util.find_spec(tracker.package) is None:
        return f"--logger {name} needs the {tracker.package} package, which is not installed: {tracker.install}"
    return None


def metric_name(name: str) -> str:
    """A curve's name as MLflow takes it: characters other than letters, digits and `_-. :/`
    (in a class name, e.g. `val/iou/cat (big)`) become `_`, and a slash after the first
    becomes `.` (`val/acc/cat` -> `val/acc.cat`): MLflow's file store makes a folder of each
    part, and `val/acc` is already a file there."""
    group, _, rest = re.sub(r"[^\w\-. :/]", "_", name).partition("/")
    return f"{group}/{rest.replace('/', '.')}" if rest else group


class Trackers:
    """The trackers `--logger` chose, for one run. Used as `with trackers:`, it starts them
    (continuing the runs `trackers.json` names, on --resume) and ends them as training ended:
    finished, interrupted (a stop signal) or failed. `enabled=False` (ranks other than 0, a
    --fast_dev_run): nothing at all."""

    def __init__(self, names: list[str], run_dir: Path, args: dict, enabled: bool = True) -> None:
        self.run_dir, self.args = Path(run_dir), args
        chosen = [name for name in dict.fromkeys(names) if name in TRACKERS] if enabled else []
        for name in chosen:  # checked at start-up too; again for the flags a resumed run had
            if missing_package(name):
                raise UserError(missing_package(name))
        self.trackers = {name: TRACKERS[name]() for name in chosen}
        self.started: dict[str, Tracker] = {}

    def __enter__(self) -> "Trackers":
        if not self.trackers:
            return self
        path = self.run_dir / TRACKERS_FILE
        try:
            kept = read_json_file(path) if path.is_file() else {}
        except ValueError as error:
            raise UserError(f"{path} is not the JSON a run writes ({error}); remove it to start new tracker "
                            "runs") from None
        for name, tracker in self.trackers.items():
            try:
                kept[name] = tracker.start(self.run_dir, self.args, kept.get(name))
            except Exception as error:  # the library's own (a bad URI, a run id its store lacks)
                self.__exit__(type(error), error, None)  # the ones started already end as failed
                raise UserError(f"--logger {name} could not start: {error}") from error
            self.started[name] = tracker
            atomic_write_text(path, json.dumps(kept, indent=2) + "\n")
        return self

    def log(self, values: dict, step: int) -> None:
        """Every started tracker gets the values (floats, or 0-d tensors) at `step`."""
        if self.started:
            floats = {name: float(value) for name, value in values.items()}
            for tracker in self.started.values():
                tracker.log(floats, step)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        status = "finished" if kind is None else \
            "interrupted" if issubclass(kind, (StopRequested, KeyboardInterrupt)) else "failed"
        for tracker in self.started.values():
            tracker.finish(status)
        self.started = {}


class NoEventWriter:
    """In place of TensorBoard's SummaryWriter when --logger leaves tensorboard out."""

    def add_scalar(self, *args: object, **kwargs: object) -> None:
        pass

    def add_image(self, *args: object, **kwargs: object) -> None:
        pass

    def add_custom_scalars(self, *args: object, **kwargs: object) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
