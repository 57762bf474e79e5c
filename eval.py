"""Evaluate a checkpoint: `python eval.py --load_model_path <run dir or .pth> [flags]`.

`Evaluator` is the one evaluation loop: training's validation runs it every epoch, and this
script runs it once over --val_list, writing into `<run dir>/<checkpoint stem>/<set>_<save_prefix>/`
(or --output_dir): args.json, result.txt (every metric, `name: value` a line),
predictions.csv (one row per sample) and, with --save_viz, PNG pictures. Model and data
flags default to the checkpoint's. To change what a batch does, edit `step` (training uses
it too); what is measured, `compute_metrics`; what is drawn, `gen_imgs_to_write`.
"""

import csv
import io
import logging
import sys
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from data.data_entry import build_dataset, eval_set_name, select_eval_loader
from metrics import predicted_class
from model.model_entry import check_model_fits, equip_multi_gpu, model_kwargs, select_model
from options import parse_eval_args
from tasks import ClassificationTask, SegmentationTask, select_task
from utils.atomic import atomic_write_text
from utils.distributed import ShardSampler, cleanup_distributed, gather_to_main, init_distributed, is_main_process
from utils.errors import UserError
from utils.host_memory import keep_freed_memory
from utils.logger import Recorder, setup_logging
from utils.progress import ProgressBar
from utils.run_dir import RunDir, run_reporting
from utils.run_info import file_sha256
from utils.torch_utils import AMP_DTYPES, load_state_into, memory_format, model_state, select_device, speed_up

log = logging.getLogger(__name__)


class Evaluator:
    """One pass over an evaluation set without gradients, and the forward pass it shares with training."""

    def __init__(self, model: nn.Module, loader: torch.utils.data.DataLoader, task, loss_fn: nn.Module,
                 device: torch.device, amp: str = "none", channels_last: bool = False) -> None:
        self.model, self.loader, self.task, self.loss_fn = model, loader, task, loss_fn
        self.device, self.amp_dtype = device, AMP_DTYPES[amp]
        self.memory_format = memory_format(channels_last)

    @torch.no_grad()
    def eval(self, desc: str = "val", on_batch: Callable[[int, dict], None] | None = None,
             per_class: bool = False) -> dict[str, float]:
        """Every batch once: the exact set-wide loss and metrics (summed over every process
        under torchrun). `on_batch(i, out)` sees each batch's outputs (eval.py writes them)."""
        self.model.eval()
        recorder, meter = Recorder(), self.task.meter()
        for i, batch in enumerate(ProgressBar(self.loader, desc)):
            self.task.check_labels(batch["label"], batch["path"])
            out = self.step(batch)
            recorder.record(self.compute_metrics(out), n=len(out["label"]))
            meter.update(predicted_class(out["pred"]), out["label"])
            if on_batch is not None:
                on_batch(i, out | {"path": batch["path"]})
        return recorder.summary() | self.task.results(meter.counts(), per_class)

    def step(self, batch: dict) -> dict:
        """Forward one batch and compute its loss: the one forward pass, used by training too.
        `batch["target"]`, when there (--mixup / --cutmix), is what the loss compares with."""
        image = batch["image"].to(self.device, non_blocking=True, memory_format=self.memory_format)
        label = batch["label"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True) if "target" in batch else label
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            pred = self.model(image)
            loss = self.loss_fn(pred, target)
        return {"image": image, "label": label, "pred": pred, "loss": loss}

    def compute_metrics(self, out: dict) -> dict[str, torch.Tensor]:
        """Batch means (0-d tensors, no GPU sync) that the Recorder turns into exact set-wide
        values: the loss, and top-5 accuracy with more than 5 classes. Accuracy and IoU are
        counted separately, in the task's confusion matrix."""
        return {"loss": out["loss"].detach(), **self.task.batch_metrics(out["pred"].detach(), out["label"])}

    def gen_imgs_to_write(self, out: dict, prefix: str) -> dict[str, torch.Tensor]:
        """Pictures of a batch for TensorBoard (classification: framed right / wrong;
        segmentation: input | prediction | ground truth)."""
        return {f"{prefix}/predictions": self.task.pictures(out["image"], out["label"], out["pred"])}


class ResultWriter:
    """What eval.py keeps of an evaluation: predictions.csv rows, predicted masks, --save_viz PNGs."""

    def __init__(self, task, folder: Path, loader: torch.utils.data.DataLoader, save_viz: bool, viz_freq: int) -> None:
        self.task, self.folder, self.loader = task, folder, loader
        self.save_viz, self.viz_freq = save_viz, viz_freq
        self.rows: list[list] = []

    def add_batch(self, i: int, out: dict) -> None:
        self.rows.extend(self.task.prediction_rows(out["path"], out["label"], out["pred"]))
        indices = self.sample_indices(i, len(out["label"]))
        self.task.save_predictions(out["pred"], self.folder / "predictions", indices)
        if self.save_viz and i % self.viz_freq == 0:
            self.task.save_pictures(out["image"], out["label"], out["pred"], self.folder / "viz", indices)

    def sample_indices(self, batch_index: int, batch_size: int) -> list[int]:
        """The data-set indices of a batch's samples (under torchrun a process reads every
        N-th sample), to name its pictures and predicted masks."""
        first = batch_index * self.loader.batch_size
        if isinstance(self.loader.sampler, ShardSampler):
            return [self.loader.sampler.global_index(first + k) for k in range(batch_size)]
        return list(range(first, first + batch_size))

    def write(self, results: dict[str, float]) -> None:
        """result.txt (`name: value` lines) and predictions.csv in set order, each written atomically."""
        rows = gather_to_main(self.rows)
        if not is_main_process():
            return
        atomic_write_text(self.folder / "result.txt", "".join(f"{k}: {v:.6f}\n" for k, v in results.items()))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.task.prediction_header)
        writer.writerows(rows)
        atomic_write_text(self.folder / "predictions.csv", buffer.getvalue())
        log.info("  ".join(f"{k} {v:.4f}" for k, v in results.items() if "/" not in k))
        log.info(f"Results written to {self.folder}")


def load_model(args: Namespace, checkpoint: dict, kwargs: dict[str, object],
               task_name: str) -> tuple[nn.Module, ClassificationTask | SegmentationTask]:
    """The checkpoint's model, built with `kwargs` (model flags given now win) and loaded with
    its weights (the averaged ones with --ema), and its task with the checkpoint's class names.
    One place for eval.py and predict.py, so both rebuild a checkpoint the same way."""
    kwargs = {**kwargs, **{name: getattr(args, name) for name in kwargs if hasattr(args, name)}}
    class_names = checkpoint.get("class_names") or [str(i) for i in range(kwargs["num_classes"])]
    task = select_task(task_name, kwargs["num_classes"], class_names, args.ignore_index)
    model = select_model(args, kwargs)
    weights = checkpoint["ema"]["model"] if args.ema else model_state(checkpoint)
    load_state_into(model, weights, strict=not args.load_not_strict, source=args.load_model_path)
    return model, task


def build_evaluation(args: Namespace, checkpoint: dict) -> tuple[Evaluator, torch.utils.data.DataLoader]:
    """The model of the checkpoint (sized as it was trained) on --val_list; checked before
    anything is written."""
    device = select_device(args.gpus)
    loader = select_eval_loader(args, build_dataset(args, train=False))
    data = loader.dataset
    kwargs = checkpoint.get("model_kwargs") or model_kwargs(args, data.num_classes, data.in_channels)
    task_name = checkpoint.get("task", data.task)
    if task_name != data.task:
        raise UserError(f"{args.load_model_path} is a {task_name} model, but --val_list {args.val_list} "
                        f"(--data_type {args.data_type}) holds {data.task} data.")
    model, task = load_model(args, checkpoint, kwargs, data.task)
    check_model_fits(model.to(device), data[0]["image"], task.check_output, args.model_type)
    model = equip_multi_gpu(speed_up(model.to(device), args.channels_last, args.compile), args.gpus, training=False)
    saved = checkpoint.get("args", {})
    loss_fn = task.loss(saved.get("loss", "cross_entropy"))  # a run saved before --loss had a task default: CE
    return Evaluator(model, loader, task, loss_fn, device, args.amp, args.channels_last), loader


def result_folder(args: Namespace) -> RunDir:
    """`<run dir>/<checkpoint stem>/<set>_<save_prefix>/`, or under --output_dir."""
    checkpoint = Path(args.load_model_path)
    parent = Path(args.output_dir) if args.output_dir else checkpoint.parent / checkpoint.stem
    return RunDir.new(parent, f"{eval_set_name(args)}_{args.save_prefix}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one message on stderr and exit code 2."""
    args, checkpoint = parse_eval_args(argv)  # bad flags end here, with exit code 2
    keep_freed_memory()  # CPU batches reuse freed memory instead of faulting it in again
    init_distributed()  # under torchrun: join the other processes (no-op otherwise)
    setup_logging(is_main_process())  # on the screen now; into log.txt once the folder exists
    run = result_folder(args)

    def evaluate() -> None:
        evaluator, loader = build_evaluation(args, checkpoint)  # bad input ends here, before the folder exists
        run.open(args, "eval.py", sys.argv[1:] if argv is None else argv,
                 info={"checkpoint": str(Path(args.load_model_path).resolve()),
                       "checkpoint_sha256": file_sha256(args.load_model_path)})
        log.info(f"Evaluating {args.load_model_path}{' (averaged weights)' if args.ema else ''}; "
                 f"results go to {run.path}")
        results_of = ResultWriter(evaluator.task, run.path, loader, args.save_viz, args.viz_freq)
        results_of.write(evaluator.eval("eval", on_batch=results_of.add_batch, per_class=True))

    try:
        return run_reporting(run, args.debug, evaluate)
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    sys.exit(main())
