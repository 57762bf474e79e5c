"""A researcher's own data: a folder of class sub-folders (image_folder), a CSV table (one
class, several labels, regression targets), imbalanced classes (--class_weights auto,
--sampler balanced), and the multilabel and regression tasks' metrics against numbers worked
out by hand."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_argv

import eval as evaluate
import train
from data.augment import Augment
from data.csv_table import read_csv_samples
from data.data_entry import sample_weights, training_labels
from data.image_folder import build_image_folder, scan_folder, split
from data.seeded_sampling import SeededSampler
from loss import balanced_weights
from tasks import Meter
from tasks.multilabel import MultiLabelTask, average_precision
from tasks.regression import RegressionTask
from utils.errors import UserError


@pytest.fixture(scope="module")
def own_data(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo set as a researcher keeps it: class folders, and CSVs of each kind."""
    root = tmp_path_factory.mktemp("own")
    names = (tiny_demo / "classes.txt").read_text().split()
    for part in ("train", "val"):
        rows = [line.rsplit(maxsplit=1) for line in (tiny_demo / f"{part}.txt").read_text().splitlines()]
        for path, label in rows:
            folder = root / "folder" / part / names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_demo / path, folder / Path(path).name)
        tables = {"classes": ["label"], "tags": ["tags"], "hot": ["round", "angular"], "targets": ["value"]}
        for kind, columns in tables.items():
            with open(root / f"{part}_{kind}.csv", "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["path", *columns])
                for path, label in rows:
                    name = names[int(label)]
                    round_ = name in ("circle", "ring")
                    values = {"classes": [name], "tags": [f"{name};{'round' if round_ else 'angular'}"],
                              "hot": [int(round_), int(not round_)], "targets": [int(label) * 1.5]}[kind]
                    writer.writerow([str((tiny_demo / path).resolve()), *values])
    return root


# --- image_folder ----------------------------------------------------------------------------

def test_a_folder_of_class_folders_names_the_classes_and_finds_every_picture(own_data: Path, tiny_demo: Path) -> None:
    samples = scan_folder(str(own_data / "folder" / "train"))
    assert samples.class_names == sorted((tiny_demo / "classes.txt").read_text().split())
    assert len(samples.entries) == 60 and samples.task == "classification"
    assert all(Path(e.image).parent.name == samples.class_names[e.label] for e in samples.entries)


def test_val_fraction_is_stratified_disjoint_and_the_same_for_every_run(own_data: Path) -> None:
    samples = scan_folder(str(own_data / "folder" / "train"))
    val, rest = split(samples, 0.25, 0, validation=True), split(samples, 0.25, 0, validation=False)
    assert {e.image for e in val.entries}.isdisjoint({e.image for e in rest.entries})
    assert len(val.entries) + len(rest.entries) == 60
    counts = torch.bincount(torch.tensor([e.label for e in val.entries]))
    totals = torch.bincount(torch.tensor([e.label for e in samples.entries]))
    assert ((counts - 0.25 * totals).abs() <= 1).all()  # each class gives its share
    assert [e.image for e in split(samples, 0.25, 0, True).entries] == [e.image for e in val.entries]
    assert [e.image for e in split(samples, 0.25, 1, True).entries] != [e.image for e in val.entries]


def test_a_validation_folder_with_an_unknown_class_is_refused(own_data: Path, tmp_path: Path) -> None:
    val = Path(shutil.copytree(own_data / "folder" / "val", tmp_path / "val"))
    (val / "zebra").mkdir()
    shutil.copy(next((val / "circle").iterdir()), val / "zebra" / "z.png")
    with pytest.raises(UserError, match="class folders the training folder has not: zebra"):
        build_image_folder(False, Augment(), str(own_data / "folder" / "train"), str(val))


@pytest.mark.parametrize("kwargs, message", [
    ({"train_dir": "nowhere", "val_fraction": 0.2}, "--train_dir 'nowhere' is not a folder"),
    ({"val_dir": "", "val_fraction": 0.0}, "validates on --val_dir <folder> or on --val_fraction"),
])
def test_bad_folder_flags_name_what_is_needed(kwargs: dict, message: str, own_data: Path) -> None:
    kwargs = {"train_dir": str(own_data / "folder" / "train"), **kwargs}
    with pytest.raises(UserError, match=message):
        build_image_folder(True, Augment(), **kwargs)


@pytest.mark.slow
def test_training_on_a_folder_resumes_and_evaluates_on_its_val_split(own_data: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(own_data, tmp_path, epochs=2)[4:] + ["--data_type", "image_folder",
                                                                "--train_dir", str(own_data / "folder" / "train"),
                                                                "--val_fraction", "0.2"]
    assert train.main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    checkpoint = torch.load(run_dir / "last.pth")
    assert checkpoint["data"]["val"]["samples"] == 10 and checkpoint["data"]["train"]["list"].endswith("train")
    assert evaluate.main(["--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"]) == 0
    (result,) = (run_dir / "last").iterdir()
    lines = dict(line.split(": ") for line in (result / "result.txt").read_text().splitlines())
    with open(run_dir / "metrics.csv") as file:
        last = list(csv.DictReader(file))[-1]
    assert float(lines["acc"]) == pytest.approx(float(last["val/acc"]), abs=5e-7)  # the same split, the same loss
    with pytest.raises(SystemExit) as refused:  # another training folder: not the run it continues
        train.main(["--resume", str(run_dir), "--train_dir", "elsewhere"])
    assert refused.value.code == 2


# --- csv ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, columns, task, names", [
    ("classes", ("label",), "classification", ["circle", "cross", "ring", "square", "triangle"]),
    ("tags", ("tags",), "multilabel", ["angular", "circle", "cross", "ring", "round", "square", "triangle"]),
    ("hot", ("round", "angular"), "multilabel", ["round", "angular"]),
    ("targets", ("value",), "regression", ["value"]),
])
def test_a_csv_says_its_task_by_its_label_columns(kind, columns, task, names, own_data: Path) -> None:
    samples = read_csv_samples(own_data / f"train_{kind}.csv", label_columns=columns)
    assert (samples.task, samples.class_names, len(samples.entries)) == (task, names, 60)
    label = samples.entries[0].label
    if task == "multilabel":
        assert label.shape == (len(names),) and label.sum() >= 1
    if task == "regression":
        assert label.dtype == torch.float32 and label.shape == (1,)


def test_csv_errors_name_the_column_the_row_and_the_value(own_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="has no column kind .*its columns: path, label"):
        read_csv_samples(own_data / "train_classes.csv", label_columns=("kind",))
    (tmp_path / "bad.csv").write_text("path,value\na.png,12\nb.png,twelve\n")
    with pytest.raises(UserError, match="Target 'twelve' at .*bad.csv:3 is not a number"):
        read_csv_samples(tmp_path / "bad.csv", label_columns=("value",), task="regression")
    (tmp_path / "hot.csv").write_text("path,a,b\na.png,1,0\nb.png,1,2\n")
    with pytest.raises(UserError, match="Label column b at .*hot.csv:3 holds '2'"):
        read_csv_samples(tmp_path / "hot.csv", label_columns=("a", "b"), task="multilabel")


@pytest.mark.slow
@pytest.mark.parametrize("kind, columns, metric", [("tags", ["tags"], "val/map"), ("targets", ["value"], "val/mae")])
def test_multilabel_and_regression_train_evaluate_and_predict(kind, columns, metric, own_data, tmp_path) -> None:
    import predict
    argv = tiny_train_argv(own_data, tmp_path / "runs", epochs=1)[4:] + [
        "--data_type", "csv", "--train_list", str(own_data / f"train_{kind}.csv"),
        "--val_list", str(own_data / f"val_{kind}.csv"), "--label_columns", *columns]
    assert train.main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    with open(run_dir / "metrics.csv") as file:
        assert metric in next(csv.DictReader(file))
    assert torch.load(run_dir / "best.pth")["checkpoints"]["monitor"] == metric  # the task's main metric
    assert evaluate.main(["--load_model_path", str(run_dir), "--num_workers", "0", "--save_viz"]) == 0
    (result,) = (run_dir / "best").iterdir()
    rows = list(csv.DictReader(open(result / "predictions.csv")))
    assert len(rows) == 30 and any((result / "viz").iterdir())
    assert predict.main(["--load_model_path", str(run_dir), "--input", str(own_data / "folder" / "val")]) == 0
    predicted = list(csv.DictReader(open(run_dir / "best" / "predict_val" / "predictions.csv")))
    assert len(predicted) == 30 and (("predicted" in predicted[0]) == (kind == "tags"))


# --- imbalanced classes -----------------------------------------------------------------------

def test_balanced_weights_are_inverse_frequencies_and_positive_negative_ratios() -> None:
    assert balanced_weights(torch.tensor([0, 0, 0, 1]), 3) == pytest.approx([4 / 9, 4 / 3, 1.0])  # class 2: absent
    hot = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert balanced_weights(hot, 2) == pytest.approx([1 / 3, 3.0])  # negatives / positives


def test_a_balanced_sampler_draws_every_class_alike_the_same_each_time_and_split_across_processes() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    data = list(range(100))
    args = type("Args", (), {"sampler": "balanced", "overfit_batches": 0, "data_type": "list"})()
    weights = sample_weights(args, type("Set", (), {"entries": [type("E", (), {"label": int(i)})() for i in labels],
                                                    "__len__": lambda self: 100})())
    one = SeededSampler(data, 1, 0, seed=3, weights=weights)
    one.set_epoch(1)
    drawn = [i for i, _ in one]
    assert abs(sum(labels[i].item() for i in drawn) / len(drawn) - 0.5) < 0.15  # 10% rare, now about half
    again = SeededSampler(data, 1, 0, seed=3, weights=weights)
    again.set_epoch(1, skip=40)  # a resumed epoch: the same draw, its first 40 left out
    assert [i for i, _ in again] == drawn[40:]
    halves = [SeededSampler(data, 2, rank, seed=3, weights=weights) for rank in (0, 1)]
    for half in halves:
        half.set_epoch(1)
    assert sorted(i for half in halves for i, _ in half) == sorted(drawn)  # the processes share one draw


@pytest.mark.slow
def test_class_weights_auto_are_saved_as_numbers_and_eval_weighs_alike(own_data: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(own_data, tmp_path, epochs=1)[4:] + [
        "--data_type", "csv", "--train_list", str(own_data / "train_classes.csv"),
        "--val_list", str(own_data / "val_classes.csv"), "--class_weights", "auto", "--sampler", "balanced",
        "--loss", "focal"]
    assert train.main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    saved = json.loads((run_dir / "args.json").read_text())["class_weights"]
    labels = training_labels(type("Set", (), {"entries": read_csv_samples(own_data / "train_classes.csv").entries})())
    assert [float(w) for w in saved.split(",")] == pytest.approx(balanced_weights(labels, 5), rel=1e-5)
    assert evaluate.main(["--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"]) == 0
    (result,) = (run_dir / "last").iterdir()
    lines = dict(line.split(": ") for line in (result / "result.txt").read_text().splitlines())
    with open(run_dir / "metrics.csv") as file:
        assert float(lines["loss"]) == pytest.approx(float(next(csv.DictReader(file))["val/loss"]), abs=5e-7)
    assert {"precision/circle", "f1/circle", "macro_f1"} <= set(lines)


# --- the new tasks' metrics, by hand --------------------------------------------------------

def test_multilabel_metrics_match_hand_computed_values_and_add_up_across_batches() -> None:
    task = MultiLabelTask(["a", "b"], 255)
    logit = torch.logit(torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.3, 0.8], [0.1, 0.4]]))
    label = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    whole, halves = Meter(), Meter()
    task.measure(whole, logit, label)
    task.measure(halves, logit[:2], label[:2])
    halves = Meter(halves.state_dict())  # a resumed epoch continues from the saved sums
    task.measure(halves, logit[2:], label[2:])
    results = task.results(whole.results()[1], per_class=True)
    assert results == task.results(halves.results()[1], per_class=True)
    # a: predicted 1, 1, 0, 0 vs 1, 0, 1, 0 -> TP 1, FP 1, FN 1: F1 0.5. b: 0, 1, 1, 0 vs 0, 1, 1, 0: F1 1.
    assert results["f1/a"] == pytest.approx(0.5) and results["f1/b"] == pytest.approx(1.0)
    assert results["macro_f1"] == pytest.approx(0.75) and results["micro_f1"] == pytest.approx(2 * 3 / (6 + 2))
    # AP of a: scores 0.9 (pos), 0.6 (neg), 0.3 (pos): precision 1 at 0.9, 2/3 at 0.3 -> (1 + 2/3) / 2.
    assert results["ap/a"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6) and results["ap/b"] == pytest.approx(1.0)
    histogram = torch.zeros(1, 10)
    assert average_precision(histogram, histogram).isnan().all()  # a label without positives


def test_regression_metrics_match_hand_computed_values() -> None:
    task = RegressionTask(["y"], 255)
    meter = Meter()
    task.measure(meter, torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([[1.0], [3.0], [5.0]]))
    results = task.results(meter.results()[1], per_class=True)
    # errors 0, -1, -1: MAE 2/3, RMSE sqrt(2/3); targets' variance (1 + 9 + 25) / 3 - 3^2 = 8/3: R2 1 - (2/3)/(8/3).
    assert results["mae"] == pytest.approx(2 / 3) and results["rmse"] == pytest.approx((2 / 3) ** 0.5)
    assert results["r2"] == pytest.approx(1 - 0.25)
