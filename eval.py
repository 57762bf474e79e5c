"""Evaluate a checkpoint: `python eval.py --load_model_path <run dir or .pth> [flags]`.

`Evaluator` rebuilds a checkpoint's model, task and loss (as it was trained; model and data
flags default to the checkpoint's) and runs it over --val_list with train.py's `evaluate`,
the loop that validates every epoch, so the numbers agree with the run's to the last digit.
It writes into `<run dir>/<checkpoint stem>/<set>_<save_prefix>/` (or --output_dir):
args.json, result.txt (every metric, `name: value` a line), predictions.csv (one row per
sample; the task's `evaluation_rows`), where the task draws them (tasks/task.py,
`TaskPictures`) confusion.csv, confusion.png, per_class.png and mistakes.png (the worst
samples of the set), and, with --save_viz, PNG pictures of every --viz_freq-th batch and of
those worst samples.
"""

import csv
import io
import logging
import sys
from argparse import Namespace
from pathlib import Path

from template_flags import answer_early

if __name__ == "__main__":  # -h and a bad flag value answer now, not after the imports below load torch
    answer_early("eval.py", sys.argv[1:])

import torch
from torch import Tensor, nn
from torchvision.utils import save_image

from data.data_entry import build_dataset, check_classes_fit, eval_set_name, select_eval_loader
from model.model_entry import check_model_fits, model_kwargs, prepare_model, select_model
from options import parse_eval_args
from tasks import Task, select_loss, select_task
from tasks.tta import with_tta
from train import evaluate
from utils.atomic import atomic_write_text, writing
from utils.distributed import ShardSampler, gather_to_main, is_main_process, start_process
from utils.errors import UserError
from utils.logger import setup_logging
from utils.run_dir import RunDir
from utils.torch_utils import load_state_into, make_deterministic, model_state, select_device

log = logging.getLogger(__name__)


class Evaluator:
    """One checkpoint on one data set: its metrics, a row per sample, and pictures."""

    def __init__(self, args: Namespace, checkpoint: dict) -> None:
        """The checkpoint's model (sized as it was trained) on --val_list; checked before
        anything is written."""
        self.args = args
        device = select_device(args.gpus)
        self.loader = select_eval_loader(args, build_dataset(args, train=False))
        data = self.loader.dataset
        kwargs = checkpoint.get("model_kwargs") or model_kwargs(args, data.num_classes, data.in_channels)
        task_name = checkpoint.get("task", data.task)
        if task_name != data.task:
            raise UserError(f"{args.load_model_path} is a {task_name} model, but --val_list {args.val_list} "
                            f"(--data_type {args.data_type}) holds {data.task} data.")
        model, self.task = load_model(args, checkpoint, kwargs, data.task)
        check_classes_fit(self.task.class_names, data, f"--val_list {args.val_list}",
                          f"the model {args.load_model_path}")
        model = with_tta(model, self.task, args.tta, checkpoint.get("args"))  # --tta: the task refuses what it must
        check_model_fits(model.to(device), data[0]["image"], self.task.check_output, args.model_type)
        self.model = prepare_model(model, args, device, training=False)
        self.loss_fn, _ = select_loss(vars(args), self.task)  # the run's loss, from its flags (as trained)
        self.loss_fn.to(device)
        self.rows: list[list] = []
        self.folder = Path()
        self.counts: dict[str, Tensor] = {}
        self.worst: list[tuple[float, int, Tensor, Tensor, Tensor]] = []  # (score, index, image, label, pred)

    def eval(self, folder: Path) -> dict[str, float]:
        """Every sample once; write result.txt and predictions.csv into `folder`."""
        self.folder = folder
        args = self.args
        results = evaluate(self.model, self.loader, self.task, self.loss_fn, args.amp, args.channels_last, "eval",
                           on_batch=self.keep_batch, per_class=True, on_counts=self.counts.update)
        self.write(results)
        return results

    def keep_batch(self, i: int, out: dict) -> None:
        """A batch's rows of predictions.csv (and the files they name), and its --save_viz pictures."""
        indices = self.sample_indices(i, len(out["label"]))
        with writing(self.folder / "predictions"):  # the files a task's rows name (segmentation's masks)
            self.rows.extend(self.task.evaluation_rows(out["path"], out["label"], out["pred"], self.folder, indices))
        if self.args.save_viz and i % self.args.viz_freq == 0:
            with writing(self.folder / "viz"):
                self.task.save_pictures(out["image"], out["label"], out["pred"], self.folder / "viz", indices)
        self.keep_worst(out, indices)

    def keep_worst(self, out: dict, indices: list[int]) -> None:
        """Keep the set's `gallery_size` worst samples so far (the task's `mistake_scores`;
        a right one is never kept), copied to the CPU (the scores in half precision)."""
        scores_of = getattr(self.task, "mistake_scores", None)  # optional: tasks/task.py, TaskPictures
        if scores_of is None:
            return
        size = self.task.gallery_size
        scores = scores_of(out["label"], out["pred"]).float().cpu()
        bar = self.worst[-1][0] if len(self.worst) >= size else 0.0
        for offset in scores.argsort(descending=True)[:size].tolist():
            if scores[offset] <= bar:
                break
            self.worst.append((float(scores[offset]), indices[offset], out["image"][offset].cpu(),
                               out["label"][offset].cpu(), out["pred"][offset].detach().half().cpu()))
        self.worst = sorted(self.worst, key=lambda kept: -kept[0])[:size]

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
        writer.writerow(self.task.evaluation_header)
        writer.writerows(rows)
        atomic_write_text(self.folder / "predictions.csv", buffer.getvalue())
        self.write_pictures()
        log.info("  ".join(f"{k} {v:.4f}" for k, v in results.items() if "/" not in k))
        log.info(f"Results written to {self.folder}")


    def write_pictures(self) -> None:
        """The task's files of the set's counts (confusion matrix, per-class bars), mistakes.png
        and, with --save_viz, the worst samples' own pictures; under torchrun the worst are
        those of rank 0's share of the set."""
        save_count_files = getattr(self.task, "save_count_files", None)  # optional: tasks/task.py, TaskPictures
        if save_count_files is not None and self.counts:
            with writing(self.folder / "confusion.png"):
                save_count_files(self.counts, self.folder)
        if not self.worst or getattr(self.task, "mistakes_picture", None) is None:
            return
        _, indices, images, labels, preds = zip(*self.worst)
        image, label, pred = torch.stack(images), torch.stack(labels), torch.stack(preds)
        with writing(self.folder / "mistakes.png"):
            save_image(self.task.mistakes_picture(image, label, pred, list(indices)), self.folder / "mistakes.png")
        if self.args.save_viz:
            with writing(self.folder / "viz"):
                self.task.save_pictures(image, label, pred, self.folder / "viz", list(indices))


def load_model(args: Namespace, checkpoint: dict, kwargs: dict[str, object], task_name: str) -> tuple[nn.Module, Task]:
    """The checkpoint's model, built with `kwargs` (model flags given now win) and loaded with
    its weights (the averaged ones with --ema), and its task with the checkpoint's class names.
    One place for eval.py and predict.py, so both rebuild a checkpoint the same way."""
    kwargs = {**kwargs, **{name: getattr(args, name) for name in kwargs if hasattr(args, name)}}
    class_names = checkpoint.get("class_names") or [str(i) for i in range(kwargs["num_classes"])]
    task = select_task(task_name, class_names, args.ignore_index)
    model = select_model(args, kwargs)
    weights = checkpoint["ema"]["model"] if args.ema else model_state(checkpoint)
    load_state_into(model, weights, strict=not args.load_not_strict, source=args.load_model_path)
    return model, task


def result_folder(args: Namespace) -> RunDir:
    """`<run dir>/<checkpoint stem>/<set>_<save_prefix>/`, or under --output_dir."""
    checkpoint = Path(args.load_model_path)
    parent = Path(args.output_dir) if args.output_dir else checkpoint.parent / checkpoint.stem
    return RunDir.new(parent, f"{eval_set_name(args)}_{args.save_prefix}{tta_suffix(args.tta)}")


def tta_suffix(tta: str) -> str:
    """`_tta-hflip` in a result folder's name with --tta, so results with and without it stand apart."""
    return "" if tta == "none" else f"_tta-{tta}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError becomes one message on stderr and exit code 2."""
    args, checkpoint = parse_eval_args(argv)  # bad flags end here, with exit code 2
    start_process()  # joins torchrun's processes; freed host memory is kept for reuse
    if args.deterministic:  # as in training: the same numbers on every run (slower)
        make_deterministic()
    setup_logging(is_main_process())  # on the screen now; into log.txt once the folder exists
    run = result_folder(args)

    def evaluate_checkpoint() -> None:
        evaluator = Evaluator(args, checkpoint)  # bad input ends here, before the folder exists
        run.open(args, "eval.py", sys.argv[1:] if argv is None else argv,
                 info={"checkpoint": str(Path(args.load_model_path).resolve()),
                       "checkpoint_sha256": args.load_model_sha256})
        log.info(f"Evaluating {args.load_model_path}{' (averaged weights)' if args.ema else ''}"
                 f"{f' with --tta {args.tta}' if args.tta != 'none' else ''}")
        evaluator.eval(run.path)

    return run.report(evaluate_checkpoint, args.debug)


if __name__ == "__main__":
    sys.exit(main())
