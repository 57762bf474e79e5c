"""Evaluate a checkpoint: `python eval.py --load_model_path <run dir or .pth> [flags]`.

Writes into `<run dir>/<checkpoint stem>/<set name>_<save_prefix>/`: args.json,
result.txt (every metric, `name: value` a line), predictions.csv (one row per sample)
and, with --save_viz, PNG pictures. Model and data flags default to the checkpoint's.
"""

import csv
import io
import logging
import sys
from argparse import Namespace
from pathlib import Path

import torch

from data.data_entry import select_eval_loader
from model.model_entry import equip_multi_gpu, select_model
from options import prepare_test_args
from tasks import select_task
from utils.atomic import atomic_write_text
from utils.distributed import ShardSampler, cleanup_distributed, gather_to_main, is_main_process
from utils.errors import UserError
from utils.logger import Recorder
from utils.progress import ProgressBar
from utils.run_status import RunStatus
from utils.torch_utils import (
    AMP_DTYPES,
    load_state_into,
    memory_format,
    model_state,
    read_checkpoint,
    select_device,
    speed_up,
)

log = logging.getLogger(__name__)


class Evaluator:
    """One evaluation: a checkpoint, an evaluation set, and the files it writes."""

    def __init__(self, args: Namespace) -> None:
        self.args = args
        self.device = select_device(args.gpus)
        self.loader = select_eval_loader(args)
        data = self.loader.dataset
        checkpoint = read_checkpoint(args.load_model_path, mmap=True)
        # Size the model as it was trained; checkpoints made elsewhere are sized from the data.
        data_kwargs = {"num_classes": data.num_classes, "in_channels": data.in_channels}
        model_kwargs = checkpoint.get("model_kwargs", data_kwargs)
        num_classes = model_kwargs["num_classes"]
        class_names = checkpoint.get("class_names") or [str(i) for i in range(num_classes)]
        # The task (tasks.py) supplies the loss, label checks, metrics, pictures and rows.
        self.task = select_task(data.task, num_classes, class_names, args.ignore_index)
        model = select_model(args, **model_kwargs)
        load_state_into(model, model_state(checkpoint), strict=not args.load_not_strict, source=args.load_model_path)
        model = speed_up(model.to(self.device), args.channels_last, args.compile)
        self.model = equip_multi_gpu(model, args, training=False)
        self.amp_dtype = AMP_DTYPES[args.amp]
        self.loss_fn = self.task.loss(checkpoint.get("args", {}).get("loss", "cross_entropy"))
        self.result_dir = Path(args.result_dir)

    @torch.no_grad()
    def eval(self) -> dict[str, float]:
        """Run the whole evaluation set once; write result.txt and predictions.csv."""
        self.model.eval()
        recorder, meter, rows = Recorder(), self.task.meter(), []
        for i, batch in enumerate(ProgressBar(self.loader, "eval", prefetch=self.args.num_workers > 0)):
            self.task.check_labels(batch["label"], batch["path"])
            out = self.step(batch)
            recorder.record(self.compute_metrics(out), n=len(out["label"]))
            meter.update(out["pred"].argmax(1), out["label"])
            rows.extend(self.task.prediction_rows(batch["path"], out["label"], out["pred"]))
            indices = self.sample_indices(i, len(out["label"]))
            self.task.save_predictions(out["pred"], self.result_dir / "predictions", indices)
            if self.args.save_viz and i % self.args.viz_freq == 0:
                self.viz_per_epoch(out, indices)
        # Sums over every process (under torchrun), so the results cover the set exactly once.
        results = recorder.summary() | self.task.results(meter.counts(), per_class=True)
        rows = gather_to_main(rows)
        if is_main_process():
            self.write_results(results, rows)
        return results

    def sample_indices(self, batch_index: int, batch_size: int) -> list[int]:
        """The data-set indices of a batch's samples (under torchrun a process reads every
        N-th sample), to name its pictures and predicted masks."""
        first = batch_index * self.args.batch_size
        sampler = self.loader.sampler
        if isinstance(sampler, ShardSampler):
            return [sampler.global_index(first + k) for k in range(batch_size)]
        return list(range(first, first + batch_size))

    def step(self, batch: dict) -> dict:
        """Forward one batch; the same as Trainer.step, without training."""
        image = batch["image"].to(self.device, non_blocking=True, memory_format=memory_format(self.args.channels_last))
        label = batch["label"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            pred = self.model(image)
            self.task.check_output(pred, self.args.model_type)
            loss = self.loss_fn(pred, label)
        return {"image": image, "label": label, "pred": pred, "loss": loss}

    def compute_metrics(self, out: dict) -> dict[str, torch.Tensor]:
        """Batch means (loss; top-5 accuracy with more than 5 classes); accuracy and IoU
        are counted in the task's confusion matrix."""
        return {"loss": out["loss"], **self.task.batch_metrics(out["pred"], out["label"])}

    def viz_per_epoch(self, out: dict, indices: list[int]) -> None:
        """PNGs of one batch into <result dir>/viz/, named by sample index."""
        self.task.save_pictures(out["image"], out["label"], out["pred"], self.result_dir / "viz", indices)

    def write_results(self, results: dict[str, float], rows: list[list]) -> None:
        """result.txt (`name: value` lines) and predictions.csv, each written atomically."""
        atomic_write_text(self.result_dir / "result.txt", "".join(f"{k}: {v:.6f}\n" for k, v in results.items()))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.task.prediction_header)
        writer.writerows(rows)
        atomic_write_text(self.result_dir / "predictions.csv", buffer.getvalue())
        log.info("  ".join(f"{k} {v:.4f}" for k, v in results.items() if "/" not in k))
        log.info(f"Results written to {self.result_dir}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one message on stderr and exit code 2."""
    args = prepare_test_args(argv)  # bad flags end here, with exit code 2
    status = RunStatus(args.result_dir, enabled=is_main_process())
    try:
        Evaluator(args).eval()
    except UserError as error:
        status.failed(error)
        if args.debug:
            raise
        log.error(f"error: {error}")
        return 2
    except BaseException as error:
        status.failed(error)
        raise
    finally:
        cleanup_distributed()
    status.finished()
    return 0


if __name__ == "__main__":
    sys.exit(main())
