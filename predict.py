"""Predict on pictures without labels: `python predict.py --load_model_path <run dir or .pth>
--input <folder, list file or picture> [flags]` (docs/predict.md).

The model, its task and class names come from the checkpoint, as in eval.py (`load_model`);
pictures are resized to the checkpoint's --image_size. Results go to a new folder
`<run dir>/<checkpoint stem>/predict_<input name>/` (or under --output_dir), written batch by
batch: classification: predictions.csv (path, prediction, class_id, score, top1..topK);
segmentation: predictions/<index>.png (palette PNGs of class ids, the picture's own size)
and predictions.csv (path, mask). To write something else for a task, edit its writer
below; a new task adds one to `WRITERS`.
"""

import csv
import io
import logging
import sys
from argparse import Namespace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from data.data_entry import select_eval_loader
from data.torchvision_sets import TORCHVISION_SETS
from data.unlabeled import UnlabeledImages, pictures_of
from eval import load_model
from model.model_entry import check_model_fits, equip_multi_gpu
from options import parse_predict_args
from tasks import ClassificationTask, SegmentationTask
from utils.errors import UserError
from utils.host_memory import keep_freed_memory
from utils.logger import setup_logging
from utils.progress import ProgressBar
from utils.run_dir import RunDir, run_reporting
from utils.run_info import file_sha256
from utils.torch_utils import AMP_DTYPES, memory_format, select_device, speed_up
from utils.viz import save_palette_mask

log = logging.getLogger(__name__)
Task = ClassificationTask | SegmentationTask


class PredictionCsv:
    """predictions.csv, written as the batches come. Each batch's rows go to the file in one
    unbuffered write, so a run that stops leaves whole lines: the rows of the batches done."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.file = open(path, "xb", buffering=0)  # "x": never overwrite a file
        self.append([header])

    def append(self, rows: list[list]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        data = memoryview(buffer.getvalue().encode("utf-8"))
        while data:  # a regular file takes it all at once; a short write is continued
            data = data[self.file.write(data):]

    def close(self) -> None:
        self.file.close()


class ClassPredictions:
    """Classification: a row per picture, `path, prediction, class_id, score, top1..topK`, the
    score the predicted class's probability and each topN `name:probability`."""

    def __init__(self, folder: Path, task: Task, top_k: int) -> None:
        self.class_names, self.k = task.class_names, min(top_k, task.num_classes)
        header = ["path", "prediction", "class_id", "score", *(f"top{n}" for n in range(1, self.k + 1))]
        self.csv = PredictionCsv(folder / "predictions.csv", header)

    def add_batch(self, paths: list[str], sizes: torch.Tensor, pred: torch.Tensor, first_index: int) -> None:
        scores, ids = pred.float().softmax(dim=1).topk(self.k, dim=1)
        rows = []
        for path, top_scores, top_ids in zip(paths, scores.tolist(), ids.tolist()):
            top = [f"{self.class_names[i]}:{s:.6f}" for i, s in zip(top_ids, top_scores)]
            rows.append([path, self.class_names[top_ids[0]], top_ids[0], f"{top_scores[0]:.6f}", *top])
        self.csv.append(rows)

    def close(self) -> None:
        self.csv.close()


class MaskPredictions:
    """Segmentation: `predictions/<index>.png` per picture (index = its row, from 0), a palette
    PNG of class ids at the picture's own size, and a row `path, mask` in predictions.csv."""

    def __init__(self, folder: Path, task: Task, top_k: int) -> None:
        self.folder = folder
        (folder / "predictions").mkdir()
        self.csv = PredictionCsv(folder / "predictions.csv", ["path", "mask"])

    def add_batch(self, paths: list[str], sizes: torch.Tensor, pred: torch.Tensor, first_index: int) -> None:
        rows = []
        for offset, (path, size) in enumerate(zip(paths, sizes.tolist())):
            # Scores, not class ids, are scaled back to the picture's size: smooth borders.
            scores = F.interpolate(pred[offset:offset + 1].float(), size=size, mode="bilinear", align_corners=False)
            mask = Path("predictions") / f"{first_index + offset:06d}.png"
            save_palette_mask(scores[0].argmax(0), self.folder / mask)
            rows.append([path, mask.as_posix()])
        self.csv.append(rows)  # after the masks: a row never names a mask not yet written

    def close(self) -> None:
        self.csv.close()


WRITERS = {
    "classification": ClassPredictions,
    "segmentation": MaskPredictions,
}


def image_size_of(args: Namespace) -> int:
    """The side pictures are resized to: the checkpoint's --image_size, or the fixed side of a
    torchvision set (MNIST's 28)."""
    if getattr(args, "image_size", None):
        return args.image_size
    if args.data_type in TORCHVISION_SETS:
        return TORCHVISION_SETS[args.data_type][2]
    raise UserError(f"--data_type {args.data_type} has no --image_size flag, so predict.py cannot tell which size "
                    "the model was trained on; give the data set an `image_size: int` parameter.")


def build_prediction(args: Namespace, checkpoint: dict) -> tuple[nn.Module, Task, DataLoader, torch.device]:
    """The checkpoint's model and task, and the loader of --input's pictures; checked (the first
    picture through the model) before anything is written."""
    kwargs = checkpoint["model_kwargs"]
    data = UnlabeledImages(pictures_of(args.input), image_size_of(args), kwargs["in_channels"])
    model, task = load_model(args, checkpoint, kwargs, checkpoint["task"])
    if task.name not in WRITERS:
        raise UserError(f"predict.py writes no predictions for the task {task.name!r}; add a writer to WRITERS.")
    if task.name == "segmentation" and task.num_classes > 256:
        raise UserError(f"The model has {task.num_classes} classes; a palette PNG holds class ids 0..255 only.")
    device = select_device(args.gpus)
    check_model_fits(model.to(device), data[0]["image"], task.check_output, args.model_type)
    model = equip_multi_gpu(speed_up(model.to(device), args.channels_last, args.compile), args.gpus, training=False)
    return model, task, select_eval_loader(args, data), device


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, writer: ClassPredictions | MaskPredictions,
            amp: str = "none", channels_last: bool = False) -> int:
    """Every picture once, batch by batch, each batch handed to `writer`; returns the count."""
    model.eval()
    amp_dtype, done = AMP_DTYPES[amp], 0
    for batch in ProgressBar(loader, "predict"):
        image = batch["image"].to(device, non_blocking=True, memory_format=memory_format(channels_last))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = model(image)
        writer.add_batch(batch["path"], batch["size"], pred, first_index=done)
        done += len(image)
    return done


def result_folder(args: Namespace) -> RunDir:
    """`<run dir>/<checkpoint stem>/<save_prefix>_<input name>/` (save_prefix: predict), or
    under --output_dir; the input's name is its folder's name or its file's stem."""
    checkpoint = Path(args.load_model_path)
    parent = Path(args.output_dir) if args.output_dir else checkpoint.parent / checkpoint.stem
    source = Path(args.input).resolve()
    name = (source.name if source.is_dir() else source.stem) or "input"
    return RunDir.new(parent, f"{args.save_prefix}_{name}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one message on stderr and exit code 2."""
    args, checkpoint = parse_predict_args(argv)  # bad flags end here, with exit code 2
    keep_freed_memory()  # CPU batches reuse freed memory instead of faulting it in again
    setup_logging()  # on the screen now; into log.txt once the folder exists
    run = result_folder(args)

    def predict_all() -> None:
        model, task, loader, device = build_prediction(args, checkpoint)  # bad input ends here, before the folder
        run.open(args, "predict.py", sys.argv[1:] if argv is None else argv,
                 info={"checkpoint": str(Path(args.load_model_path).resolve()),
                       "checkpoint_sha256": file_sha256(args.load_model_path)})
        log.info(f"Predicting on {len(loader.dataset)} pictures of {args.input} with {args.load_model_path}"
                 f"{' (averaged weights)' if args.ema else ''}; results go to {run.path}")
        writer = WRITERS[task.name](run.path, task, args.top_k)
        try:
            count = predict(model, loader, device, writer, args.amp, args.channels_last)
        finally:
            writer.close()
        log.info(f"{count} predictions written to {run.path}")

    return run_reporting(run, args.debug, predict_all)


if __name__ == "__main__":
    sys.exit(main())
