"""Predict on pictures without labels: `python predict.py --load_model_path <run dir or .pth>
--input <folder, list file or picture> [flags]` (docs/predict.md).

The model, its task and class names come from the checkpoint, as in eval.py (`load_model`);
pictures are resized to the checkpoint's --image_size. Results go to a new folder
`<run dir>/<checkpoint stem>/predict_<input name>/` (or under --output_dir), written batch by
batch: predictions.csv, with the task's columns (`prediction_header` / `prediction_rows`,
tasks/<task>.py: classification's top-k classes, segmentation's palette PNG masks at each
picture's own size). To write something else for a task, edit those two methods.
"""

import csv
import io
import logging
import sys
from argparse import Namespace
from pathlib import Path

from template_flags import answer_early

if __name__ == "__main__":  # -h and a bad flag value answer now, not after the imports below load torch
    answer_early("predict.py", sys.argv[1:])

import torch
from torch import nn
from torch.utils.data import DataLoader

from data.data_entry import normalisation_of, select_eval_loader
from data.torchvision_sets import TORCHVISION_SETS
from data.unlabeled import UnlabeledImages, pictures_of
from eval import load_model, tta_suffix
from model.model_entry import check_model_fits, prepare_model
from options import parse_predict_args
from tasks import Task
from tasks.tta import with_tta
from utils.atomic import writing
from utils.distributed import start_process
from utils.errors import UserError
from utils.logger import ProgressBar, setup_logging
from utils.run_dir import RunDir
from utils.torch_utils import AMP_DTYPES, make_deterministic, select_device

log = logging.getLogger(__name__)


class PredictionCsv:
    """predictions.csv, written as the batches come. Each batch's rows go to the file in one
    unbuffered write, so a run that stops leaves whole lines: the rows of the batches done."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        with writing(path):
            self.file = open(path, "xb", buffering=0)  # "x": never overwrite a file
        self.append([header])

    def append(self, rows: list[list]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        data = memoryview(buffer.getvalue().encode("utf-8"))
        with writing(self.path):
            while data:  # a regular file takes it all at once; a short write is continued
                data = data[self.file.write(data):]

    def close(self) -> None:
        self.file.close()


def image_size_of(args: Namespace) -> int:
    """The side pictures are resized to: the checkpoint's --image_size, or the fixed side of a
    torchvision set (MNIST's 28)."""
    if getattr(args, "image_size", None):
        return args.image_size
    if args.data_type in TORCHVISION_SETS:
        return TORCHVISION_SETS[args.data_type][2]
    raise UserError(f"--data_type {args.data_type} has no --image_size flag, so predict.py cannot tell which size "
                    "the model was trained on; give the data set an `image_size: int` parameter.")


def build_prediction(args: Namespace, checkpoint: dict) -> tuple[nn.Module, Task, DataLoader]:
    """The checkpoint's model and task, and the loader of --input's pictures; checked (the first
    picture through the model) before anything is written."""
    kwargs = checkpoint["model_kwargs"]
    data = UnlabeledImages(pictures_of(args.input), image_size_of(args), kwargs["in_channels"], normalisation_of(args))
    model, task = load_model(args, checkpoint, kwargs, checkpoint["task"])
    model = with_tta(model, task, args.tta, checkpoint.get("args"))  # --tta: the task refuses what it must
    if len(task.class_names) > 256 and task.name == "segmentation":
        raise UserError(f"The model has {len(task.class_names)} classes; a palette PNG holds class ids 0..255 only.")
    device = select_device(args.gpus)
    check_model_fits(model.to(device), data[0]["image"], task.check_output, args.model_type)
    return prepare_model(model, args, device, training=False), task, select_eval_loader(args, data)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, task: Task, folder: Path, top_k: int, amp: str = "none",
            channels_last: bool = False) -> int:
    """Every picture once, batch by batch, its rows appended to predictions.csv as they come
    (the task's `prediction_rows`, which also write any files they name); returns the count."""
    model.eval()
    device, done = next(model.parameters()).device, 0
    layout = torch.channels_last if channels_last else torch.preserve_format
    table = PredictionCsv(folder / "predictions.csv", task.prediction_header(top_k))
    try:
        for batch in ProgressBar(loader, "predict"):
            image = batch["image"].to(device, non_blocking=True, memory_format=layout)
            with torch.autocast(device.type, dtype=AMP_DTYPES[amp], enabled=AMP_DTYPES[amp] is not None):
                pred = model(image)
            indices = list(range(done, done + len(image)))
            with writing(folder / "predictions"):  # the files a task's rows name (segmentation's masks)
                rows = task.prediction_rows(batch["path"], batch["size"], pred, folder, indices, top_k)
            table.append(rows)
            done += len(image)
    finally:
        table.close()
    return done


def result_folder(args: Namespace) -> RunDir:
    """`<run dir>/<checkpoint stem>/<save_prefix>_<input name>/` (save_prefix: predict), or
    under --output_dir; the input's name is its folder's name or its file's stem."""
    checkpoint = Path(args.load_model_path)
    parent = Path(args.output_dir) if args.output_dir else checkpoint.parent / checkpoint.stem
    source = Path(args.input).resolve()
    name = (source.name if source.is_dir() else source.stem) or "input"
    return RunDir.new(parent, f"{args.save_prefix}_{name}{tta_suffix(args.tta)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one message on stderr and exit code 2."""
    args, checkpoint = parse_predict_args(argv)  # bad flags end here, with exit code 2
    start_process()  # freed host memory is kept for reuse
    if args.deterministic:  # as in training: the same numbers on every run (slower)
        make_deterministic()
    setup_logging()  # on the screen now; into log.txt once the folder exists
    run = result_folder(args)

    def predict_all() -> None:
        model, task, loader = build_prediction(args, checkpoint)  # bad input ends here, before the folder
        run.open(args, "predict.py", sys.argv[1:] if argv is None else argv,
                 info={"checkpoint": str(Path(args.load_model_path).resolve()),
                       "checkpoint_sha256": args.load_model_sha256})
        log.info(f"Predicting on {len(loader.dataset)} pictures of {args.input} with {args.load_model_path}"
                 f"{' (averaged weights)' if args.ema else ''}")
        count = predict(model, loader, task, run.path, args.top_k, args.amp, args.channels_last)
        log.info(f"{count} predictions written to {run.path}")

    return run.report(predict_all, args.debug)


if __name__ == "__main__":
    sys.exit(main())
