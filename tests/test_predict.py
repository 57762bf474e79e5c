"""predict.py end to end: predictions.csv checked against the model run by hand, list files,
top-k, palette masks for segmentation, clear errors for bad input, no overwrites."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_python, tiny_train_argv
from PIL import Image

import predict
import train
from data.augment import eval_transform
from data.list_dataset import load_image
from data.unlabeled import find_pictures, read_path_list
from model.base import BaseNet
from model.unet import UNet
from utils.errors import UserError
from utils.viz import PALETTE


def read_rows(result_dir: Path) -> list[dict[str, str]]:
    with open(result_dir / "predictions.csv", newline="") as file:
        return list(csv.DictReader(file))


def predict_argv(checkpoint: Path, input_path: Path, *more: str) -> list[str]:
    """On the CPU also where a GPU is: the tests compare with the model run by hand on the CPU,
    and a GPU's TF32 convolutions differ from it in the fourth digit."""
    return ["--load_model_path", str(checkpoint), "--input", str(input_path), "--num_workers", "0",
            "--batch_size", "8", "--gpus", "-1", *more]


def exit_code(argv: list[str]) -> int:
    """predict.main's exit code: bad flags stop it in argparse (SystemExit), later errors return 2."""
    try:
        return predict.main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.fixture(scope="module")
def run_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the shared run, so its result folders are the only ones."""
    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("predict") / trained_run.name))


@pytest.fixture(scope="module")
def predicted(run_dir: Path, tiny_demo: Path) -> Path:
    """Predictions for the folder of validation pictures (30, in 4 batches of 8)."""
    assert predict.main(predict_argv(run_dir / "best.pth", tiny_demo / "images" / "val")) == 0
    return run_dir / "best" / "predict_val"


def test_a_folder_gives_one_row_per_picture_in_path_order(predicted: Path, tiny_demo: Path) -> None:
    rows = read_rows(predicted)
    pictures = sorted(str(p) for p in (tiny_demo / "images" / "val").glob("*.png"))
    assert [row["path"] for row in rows] == pictures
    names = (tiny_demo / "classes.txt").read_text().split()
    assert list(rows[0]) == ["path", "prediction", "class_id", "score", "top1", "top2", "top3", "top4", "top5"]
    for row in rows:
        assert row["prediction"] == names[int(row["class_id"])]
        assert 0 <= float(row["score"]) <= 1
        assert row["top1"] == f"{row['prediction']}:{row['score']}"


def test_predictions_equal_the_model_run_by_hand(predicted: Path, run_dir: Path) -> None:
    model = BaseNet(num_classes=5, in_channels=3)
    model.load_state_dict(torch.load(run_dir / "best.pth")["model"])
    model.eval()
    rows = read_rows(predicted)
    images = torch.stack([eval_transform(32)(load_image(Path(row["path"]), "test")) for row in rows])
    with torch.no_grad():
        score, predicted_class = model(images).softmax(1).max(1)
    assert [int(row["class_id"]) for row in rows] == predicted_class.tolist()
    assert [float(row["score"]) for row in rows] == pytest.approx(score.tolist(), abs=1e-5)


def test_the_run_records_are_written(predicted: Path) -> None:
    for name in ("args.json", "command.sh", "run_info.json", "status.json", "log.txt"):
        assert (predicted / name).is_file(), name
    assert '"status": "finished"' in (predicted / "status.json").read_text()
    assert "30 predictions written" in (predicted / "log.txt").read_text()


def test_top_k_columns_are_the_best_classes_in_order_capped_by_the_classes(run_dir: Path, tiny_demo: Path,
                                                                           tmp_path: Path) -> None:
    folder = tiny_demo / "images" / "val"
    argv = predict_argv(run_dir, folder, "--output_dir", str(tmp_path), "--top_k", "2")
    assert predict.main(argv) == 0
    rows = read_rows(tmp_path / "predict_val")
    assert list(rows[0])[4:] == ["top1", "top2"]
    for row in rows:
        (first, first_score), (_, second_score) = (row[k].rsplit(":", 1) for k in ("top1", "top2"))
        assert first == row["prediction"] and float(first_score) >= float(second_score)
    assert predict.main(argv[:-1] + ["50"]) == 0  # capped at the 5 classes
    assert list(read_rows(tmp_path / "predict_val_1")[0])[4:] == ["top1", "top2", "top3", "top4", "top5"]


def test_a_list_file_keeps_its_order_and_ignores_comments_and_labels(run_dir: Path, tiny_demo: Path,
                                                                     tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("b.png", "a.png", "with space.png"):
        shutil.copy(tiny_demo / "images" / "val" / "00003.png", folder / name)
    lines = ["# pictures to label", "b.png", "", f"{folder / 'a.png'} 3", "with space.png"]
    (folder / "todo.txt").write_text("\n".join(lines) + "\n")
    assert predict.main(predict_argv(run_dir, folder / "todo.txt", "--output_dir", str(tmp_path / "out"))) == 0
    rows = read_rows(tmp_path / "out" / "predict_todo")
    assert [row["path"] for row in rows] == [str(folder / n) for n in ("b.png", "a.png", "with space.png")]
    assert len({row["top1"] for row in rows}) == 1  # the same picture thrice: the same prediction


def test_folder_search_recurses_and_skips_hidden_files_and_other_files(tmp_path: Path) -> None:
    picture = Image.new("RGB", (4, 4))
    for name in ("b.png", "sub/a.jpg", ".hidden.png", ".cache/c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        picture.save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a picture")
    assert [p.path for p in find_pictures(tmp_path)] == [tmp_path / "b.png", tmp_path / "sub" / "a.jpg"]


def test_a_list_naming_a_missing_picture_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("# two pictures\nmissing.png\n")
    with pytest.raises(UserError, match=r"missing.png \(listed at .*list.txt:2\) does not exist"):
        read_path_list(tmp_path / "list.txt")


@pytest.mark.slow
def test_a_bad_picture_exits_2_naming_it_without_a_traceback(run_dir: Path, tiny_demo: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_demo / "images" / "val" / "00000.png", tmp_path / "a.png")
    (tmp_path / "x.png").write_text("this is text, not a picture")
    result = run_python(["predict.py", *predict_argv(run_dir, tmp_path, "--output_dir", str(tmp_path / "out"))])
    assert result.returncode == 2
    assert f"The image {tmp_path / 'x.png'}" in result.stderr and "cannot be decoded" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["missing input", "empty folder", "top_k 0", "ema", "torchrun", "plain weights"])
def test_bad_input_is_one_clear_message_and_exit_2(case: str, run_dir: Path, tiny_demo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "empty" / ".hidden" / "a.png")
    torch.save(BaseNet(5, 3).state_dict(), tmp_path / "plain.pth")
    checkpoint, folder, more, expected = run_dir / "best.pth", tiny_demo / "images" / "val", [], ""
    if case == "missing input":
        folder, expected = tmp_path / "nowhere", f"--input {tmp_path / 'nowhere'} does not exist"
    elif case == "empty folder":
        folder, expected = tmp_path / "empty", "holds no pictures"
    elif case == "top_k 0":
        more, expected = ["--top_k", "0"], "--top_k 0 must be 1 or more"
    elif case == "ema":
        more, expected = ["--ema"], "holds no averaged weights"
    elif case == "torchrun":
        monkeypatch.setenv("WORLD_SIZE", "2")
        expected = "predict.py runs as one process"
    else:
        checkpoint, expected = tmp_path / "plain.pth", "predict.py needs a checkpoint written by train.py"
    assert exit_code(predict_argv(checkpoint, folder, "--output_dir", str(tmp_path / "out"), *more)) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_second_run_never_overwrites_the_first(predicted: Path, run_dir: Path, tiny_demo: Path) -> None:
    before = (predicted / "predictions.csv").read_bytes()
    assert predict.main(predict_argv(run_dir, tiny_demo / "images" / "val")) == 0
    assert (run_dir / "best" / "predict_val_1" / "predictions.csv").is_file()
    assert (predicted / "predictions.csv").read_bytes() == before


def test_segmentation_writes_palette_masks_of_class_ids(tiny_demo: Path, tmp_path: Path) -> None:
    argv = tiny_train_argv(tiny_demo, tmp_path / "checkpoints")
    argv[argv.index("--train_list") + 1] = str(tiny_demo / "seg_train.txt")
    argv[argv.index("--val_list") + 1] = str(tiny_demo / "seg_val.txt")
    assert train.main(argv + ["--data_type", "seg_list", "--model_type", "unet"]) == 0
    (run_dir,) = (tmp_path / "checkpoints").iterdir()
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for index in range(3):
        shutil.copy(tiny_demo / "images" / "val" / f"{index:05d}.png", pictures / f"{index}.png")
    Image.open(pictures / "0.png").resize((40, 24)).save(pictures / "wide.png")
    assert predict.main(predict_argv(run_dir, pictures)) == 0
    result = run_dir / "best" / "predict_pictures"
    rows = read_rows(result)
    assert [(Path(r["path"]).name, r["mask"]) for r in rows] == [
        ("0.png", "predictions/000000.png"), ("1.png", "predictions/000001.png"),
        ("2.png", "predictions/000002.png"), ("wide.png", "predictions/000003.png")]
    checkpoint = torch.load(run_dir / "best.pth")
    model = UNet(**checkpoint["model_kwargs"])
    model.load_state_dict(checkpoint["model"])
    model.eval()
    for row in rows:
        mask = Image.open(result / row["mask"])
        assert mask.mode == "P" and mask.size == Image.open(row["path"]).size
        assert mask.getpalette() == (PALETTE * 255).round().int().flatten().tolist()
        ids = np.asarray(mask)
        assert ids.max() < 6  # background + 5 shapes: class ids, not colours
        if mask.size == (32, 32):  # the model's own size: the mask is its argmax, pixel for pixel
            with torch.no_grad():
                expected = model(eval_transform(32)(load_image(Path(row["path"]), "test"))[None]).argmax(1)[0]
            assert np.array_equal(ids, expected.numpy())


def test_ema_predicts_with_the_averaged_weights(tiny_demo: Path, tmp_path: Path) -> None:
    assert train.main(tiny_train_argv(tiny_demo, tmp_path / "checkpoints") + ["--ema_decay", "0.5"]) == 0
    (run_dir,) = (tmp_path / "checkpoints").iterdir()
    assert predict.main(predict_argv(run_dir, tiny_demo / "images" / "val", "--ema")) == 0
    rows = read_rows(run_dir / "best" / "predict_val")
    model = BaseNet(num_classes=5, in_channels=3)
    model.load_state_dict(torch.load(run_dir / "best.pth")["ema"]["model"])
    model.eval()
    images = torch.stack([eval_transform(32)(load_image(Path(row["path"]), "test")) for row in rows])
    with torch.no_grad():
        score = model(images).softmax(1).max(1).values
    assert [float(row["score"]) for row in rows] == pytest.approx(score.tolist(), abs=1e-5)
