"""Segmentation through the same extension points: masks, paired transforms, ignore index,
metrics against hand-computed values, clear mask errors, and a real train + eval."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_argv
from PIL import Image
from torchvision import tv_tensors

import eval as evaluate
import train
from data.augment import Augment, train_transform
from data.list_dataset import ListDataset, load_mask, read_list_file
from loss import LOSSES
from metrics import confusion_matrix, mean_iou, overall_accuracy, per_class_iou
from tasks.segmentation import SegmentationTask
from utils.errors import UserError


def seg_argv(demo: Path, checkpoints: Path, epochs: int = 1) -> list[str]:
    argv = tiny_train_argv(demo, checkpoints, epochs)
    argv[argv.index("--train_list") + 1] = str(demo / "seg_train.txt")
    argv[argv.index("--val_list") + 1] = str(demo / "seg_val.txt")
    return argv + ["--data_type", "seg_list", "--model_type", "unet"]


def test_palette_masks_keep_their_indices_and_rgb_masks_are_refused(tmp_path: Path) -> None:
    mask = Image.new("P", (4, 4), 3)
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    mask.save(tmp_path / "palette.png")
    assert load_mask(tmp_path / "palette.png", "x:1").unique().tolist() == [3]  # the index, not a colour
    Image.new("RGB", (4, 4), (3, 3, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(UserError, match="has mode RGB; a mask must be a single-channel PNG"):
        load_mask(tmp_path / "rgb.png", "x:1")


def test_flips_and_crops_move_image_and_mask_together() -> None:
    # An asymmetric L shape, written into both the picture (red channel) and the mask.
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, 2:14, 2:5] = 1
    mask[0, 11:14, 2:12] = 2
    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    image[0] = mask[0] * 100
    # Same size (no resize): the geometric augmentation flags, which segmentation accepts.
    transform = train_transform(Augment(crop_padding=2, hflip=0.5, vflip=0.5), 16)
    moved = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        red = ((out_image[0] * 0.5 + 0.5) * 255).round()  # undo ToDtype + Normalize
        assert torch.equal(red, out_mask[0].float() * 100), f"seed {seed}: picture and mask disagree"
        moved += not torch.equal(out_mask, mask)
    assert moved > 10  # the transform did flip and shift most of the time


def test_masks_are_resized_with_nearest_neighbour(tiny_demo: Path) -> None:
    dataset = ListDataset(tiny_demo / "seg_val.txt", train_transform(Augment(hflip=0.5), 48))  # 32 -> 48 pixels
    for index in range(5):
        values = set(dataset[index]["label"].unique().tolist())
        assert values <= {0, index + 1}, "an interpolated value appeared in a resized mask"


def test_ignored_pixels_count_for_nothing_in_loss_and_metrics() -> None:
    torch.manual_seed(0)
    pred, label = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    ignored = label.clone()
    ignored[:, :2] = 255
    for name in ("cross_entropy", "dice", "ce_dice"):
        loss = LOSSES[name](ignore_index=255)
        changed = pred.clone()
        changed[:, :, :2] = torch.randn(2, 3, 2, 4) * 10  # scores under ignored pixels do not matter
        assert loss(pred, ignored).item() == pytest.approx(loss(changed, ignored).item(), rel=1e-6), name
    assert confusion_matrix(pred.argmax(1), ignored, 3, ignore_index=255).sum() == 2 * 2 * 4


def test_segmentation_metrics_match_hand_computed_values() -> None:
    # Pixels (label -> prediction): 0->0 x3, 0->1 x1, 1->1 x2, 2->1 x1, 2->2 x1.
    label = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])
    confusion = confusion_matrix(pred, label, num_classes=4)
    # IoU: class 0: 3 / (4 + 3 - 3) = 0.75; class 1: 2 / (2 + 4 - 2) = 0.5; class 2: 1 / (2 + 1 - 1) = 0.5.
    assert per_class_iou(confusion)[:3].tolist() == [0.75, 0.5, 0.5]
    assert per_class_iou(confusion)[3].isnan()  # class 3: in neither labels nor predictions
    assert mean_iou(confusion) == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert overall_accuracy(confusion) == 6 / 8


def test_a_mask_value_outside_the_classes_names_file_and_value() -> None:
    task = SegmentationTask(class_names=[str(i) for i in range(6)], ignore_index=255)
    label = torch.zeros(2, 4, 4, dtype=torch.long)
    label[1, 0, 0] = 255  # ignored: fine
    task.check_labels(label, ["a.png", "b.png"])
    label[1, 2, 3] = 9
    with pytest.raises(UserError, match="The mask of b.png holds the value 9, outside \\[0, 6\\)"):
        task.check_labels(label, ["a.png", "b.png"])


@pytest.mark.slow
def test_a_bad_mask_stops_training_with_exit_2(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    data = Path(shutil.copytree(tiny_demo, tmp_path / "demo"))
    Image.new("L", (32, 32), 9).save(data / "masks/train/00002.png")
    assert train.main(seg_argv(data, tmp_path / "ckpt")) == 2
    err = capsys.readouterr().err
    assert f"The mask of {data}/images/train/00002.png holds the value 9" in err and "Traceback" not in err


def test_a_classification_model_on_masks_is_a_clear_error(tiny_demo: Path, tmp_path: Path, capsys) -> None:
    argv = seg_argv(tiny_demo, tmp_path)
    argv[argv.index("unet")] = "base"
    assert train.main(argv) == 2
    assert "--model_type base gives outputs of shape (2, 6)" in capsys.readouterr().err  # at start-up
    assert list(tmp_path.iterdir()) == []  # found before the run directory was made


@pytest.mark.slow
def test_train_and_eval_write_results_that_match_the_saved_predictions(tiny_demo: Path, tmp_path: Path) -> None:
    assert train.main(seg_argv(tiny_demo, tmp_path, epochs=2)) == 0
    (run_dir,) = tmp_path.iterdir()
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set("epoch,train/lr,train/loss,train/miou,train/pixel_acc,val/loss,val/miou,val/pixel_acc".split(",")) \
        <= set(header) and "val/iou/circle" in header  # a curve per class, too
    assert torch.load(run_dir / "best.pth")["checkpoints"]["monitor"] == "val/miou"
    assert evaluate.main(["--load_model_path", str(run_dir), "--num_workers", "0", "--save_viz"]) == 0
    (result_dir,) = (run_dir / "best").iterdir()
    result = dict(line.split(": ") for line in (result_dir / "result.txt").read_text().splitlines())
    assert {"loss", "miou", "pixel_acc", "iou/background", "iou/ring"} <= set(result)
    # Independently: the saved predicted masks against the list's masks.
    entries = read_list_file(tiny_demo / "seg_val.txt")
    with open(result_dir / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [str(e.image) for e in entries]
    confusion = sum(confusion_matrix(load_mask(result_dir / "predictions" / f"{i:06d}.png", "pred"),
                                     load_mask(e.label, e.where), 6, ignore_index=255)
                    for i, e in enumerate(entries))
    assert float(result["miou"]) == pytest.approx(mean_iou(confusion), abs=1e-6)
    assert float(result["pixel_acc"]) == pytest.approx(overall_accuracy(confusion), abs=1e-6)
    assert len(list((result_dir / "viz").glob("*_overlay.png"))) == len(entries)
    # The confusion matrix of pixels under the class names, and pictures of it and of the worst samples.
    with open(result_dir / "confusion.csv") as file:
        header, *counts = list(csv.reader(file))
    assert header[1:] == [row[0] for row in counts] == torch.load(run_dir / "best.pth")["class_names"]
    assert torch.equal(torch.tensor([[int(v) for v in row[1:]] for row in counts]), confusion.long())
    assert all((result_dir / name).is_file() for name in ("confusion.png", "per_class.png", "mistakes.png"))
    with Image.open(result_dir / "predictions" / "000000.png") as mask:
        assert mask.mode == "P"  # a palette PNG: colours in a viewer, class ids in its pixels


def test_a_mask_list_for_classification_or_ids_for_segmentation_name_the_data_type(tiny_demo: Path) -> None:
    from data.augment import Augment
    from data.list_dataset import build_list_dataset, build_seg_list_dataset

    with pytest.raises(UserError, match="--data_type list reads `<image> <class id>` lines, but .* holds mask "
                                        "paths .* use --data_type seg_list"):
        build_list_dataset(str(tiny_demo / "seg_val.txt"), False, Augment())
    with pytest.raises(UserError, match="--data_type seg_list needs `<image> <mask>` lines, but .* holds class ids"):
        build_seg_list_dataset(str(tiny_demo / "val.txt"), False, Augment())


def test_a_classification_checkpoint_on_a_mask_list_says_what_does_not_fit(trained_run: Path, tiny_demo: Path,
                                                                            capsys) -> None:
    argv = ["--load_model_path", str(trained_run), "--val_list", str(tiny_demo / "seg_val.txt"), "--num_workers", "0"]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "holds mask paths" in err and "seg_classes.txt" not in err
    assert evaluate.main([*argv, "--data_type", "seg_list"]) == 2
    assert "is a classification model, but --val_list" in capsys.readouterr().err


@pytest.mark.slow
def test_a_unet_run_from_before_the_up_flag_resumes_and_evaluates(tiny_demo: Path, tmp_path: Path) -> None:
    assert train.main(seg_argv(tiny_demo, tmp_path) + ["--scheduler", "none"]) == 0
    (run_dir,) = tmp_path.iterdir()
    checkpoint = torch.load(run_dir / "last.pth")
    assert checkpoint["args"].pop("up") == "bilinear" and checkpoint["model_kwargs"].pop("up") == "bilinear"
    torch.save(checkpoint, run_dir / "last.pth")  # as the run was saved before UNet had `up`
    assert train.main(["--resume", str(run_dir), "--epochs", "2"]) == 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["resumes"][-1]["changed_args"] == {"epochs": {"was": 1, "now": 2}}  # `up` took its default
    assert evaluate.main(["--load_model_path", str(run_dir / "last.pth"), "--num_workers", "0"]) == 0
