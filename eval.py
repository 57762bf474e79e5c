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
from loss import build_loss
from metrics import accuracy, confusion_matrix, per_class_accuracy, topk_accuracy
from model.model_entry import equip_multi_gpu, select_model
from options import prepare_test_args
from utils.atomic import atomic_write_text
from utils.errors import UserError
from utils.logger import Recorder
from utils.progress import ProgressBar
from utils.run_status import RunStatus
from utils.torch_utils import load_state_into, model_state, read_checkpoint, select_device
from utils.viz import save_classification_pngs

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
        self.num_classes = model_kwargs["num_classes"]
        self.class_names = checkpoint.get("class_names") or [str(i) for i in range(self.num_classes)]
        model = select_model(args, **model_kwargs)
        load_state_into(model, model_state(checkpoint), strict=not args.load_not_strict, source=args.load_model_path)
        self.model = equip_multi_gpu(model.to(self.device), args)
        # Losses need no arguments but the checkpoint's choice; default: cross entropy.
        self.loss_fn = build_loss(checkpoint.get("args", {}).get("loss", "cross_entropy"))
        self.result_dir = Path(args.result_dir)

    @torch.no_grad()
    def eval(self) -> dict[str, float]:
        """Run the whole evaluation set once; write result.txt and predictions.csv."""
        self.model.eval()
        recorder = Recorder()
        confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long, device=self.device)
        paths, labels, scores = [], [], []  # kept on the device: one transfer at the end
        for i, batch in enumerate(ProgressBar(self.loader, "eval", prefetch=self.args.num_workers > 0)):
            self.check_labels(batch["label"], batch["path"])
            out = self.step(batch)
            recorder.record(self.compute_metrics(out), n=len(out["label"]))
            confusion += confusion_matrix(out["pred"].argmax(1), out["label"], self.num_classes)
            paths.extend(batch["path"])
            labels.append(out["label"])
            scores.append(out["pred"].softmax(dim=1))
            if self.args.save_viz and i % self.args.viz_freq == 0:
                self.viz_per_epoch(out, first_index=i * self.args.batch_size)
        results = recorder.summary()
        for name, value in zip(self.class_names, per_class_accuracy(confusion).tolist()):
            results[f"acc/{name}"] = value
        self.write_results(results, prediction_rows(paths, torch.cat(labels), torch.cat(scores)))
        return results

    def step(self, batch: dict) -> dict:
        """Forward one batch; the same as Trainer.step, without training."""
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        pred = self.model(image)
        return {"image": image, "label": label, "pred": pred, "loss": self.loss_fn(pred, label)}

    def compute_metrics(self, out: dict) -> dict[str, torch.Tensor]:
        """Batch means; top-5 only when there are more than 5 classes (else it is always 1)."""
        metrics = {"loss": out["loss"], "acc": accuracy(out["pred"], out["label"])}
        if self.num_classes > 5:
            metrics["top5_acc"] = topk_accuracy(out["pred"], out["label"], k=5)
        return metrics

    def check_labels(self, label: torch.Tensor, paths: list[str]) -> None:
        """A label the model cannot predict is a data error, reported with its sample."""
        bad = ((label < 0) | (label >= self.num_classes)).nonzero()
        if len(bad):
            index = int(bad[0])
            raise UserError(f"Label {int(label[index])} of {paths[index]} is outside [0, {self.num_classes}): "
                            "the checkpoint's model has that many classes.")

    def viz_per_epoch(self, out: dict, first_index: int) -> None:
        """PNGs of one batch into <result dir>/viz/, named by index, true and predicted class."""
        save_classification_pngs(out["image"], out["label"], out["pred"], self.class_names,
                                 self.result_dir / "viz", first_index)

    def write_results(self, results: dict[str, float], rows: list[list]) -> None:
        """result.txt (`name: value` lines) and predictions.csv, each written atomically."""
        atomic_write_text(self.result_dir / "result.txt", "".join(f"{k}: {v:.6f}\n" for k, v in results.items()))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", "prediction", "score"])
        writer.writerows(rows)
        atomic_write_text(self.result_dir / "predictions.csv", buffer.getvalue())
        log.info("  ".join(f"{k} {v:.4f}" for k, v in results.items() if not k.startswith("acc/")))
        log.info(f"Results written to {self.result_dir}")


def prediction_rows(paths: list[str], label: torch.Tensor, probabilities: torch.Tensor) -> list[list]:
    """One `[path, label, prediction, score]` row per sample; score = the predicted class's probability."""
    score, predicted = probabilities.max(dim=1)
    return [[p, int(t), int(c), f"{s:.6f}"]
            for p, t, c, s in zip(paths, label.tolist(), predicted.tolist(), score.tolist())]


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one message on stderr and exit code 2."""
    args = prepare_test_args(argv)  # bad flags end here, with exit code 2
    status = RunStatus(args.result_dir)
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
    status.finished()
    return 0


if __name__ == "__main__":
    sys.exit(main())
