"""`python -m tools.export [<run dir or .pth>] [flags]`: a trained model as files that run
without this project, each checked against the model itself.

Formats (--formats; default: every one available here):
  torch_export   model.pt2, torch.export (the batch size free): `torch.export.load(path).module()(x)`
  torchscript    model.torchscript.pt, torch.jit.trace, where the model traces (torch calls
                 TorchScript deprecated; torch.export is its successor): `torch.jit.load(path)(x)`
  onnx           model.onnx, only where the optional `onnx` package is installed (and
                 `onnxscript` for torch's current exporter; `onnxruntime` to check it)

Each file is loaded back and run on real samples (the first --samples pictures of the run's
--val_list, as eval.py reads them, in one batch and the first alone); the largest absolute
difference from the model's own scores is printed and kept, and above --atol the command
exits with 1. export.json, beside the files, says what a user of them needs: the input
(shape, dtype), the preprocessing (resize, channels, scaling, mean and std), what the
outputs mean (scores per class; the class names), and the parity of each format.

Into `<run dir>/<checkpoint stem>/export/` (or under --output_dir), a new folder each time,
with args.json, command.sh, run_info.json, status.json and log.txt as eval.py writes.
"""

import importlib.util
import json
import logging
import sys
import warnings
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from data.augment import MEAN, STD
from data.data_entry import build_dataset
from predict import image_size_of
from tasks import Task
from tools.saved_run import find_checkpoint, rebuild_model
from utils.atomic import atomic_write_text
from utils.errors import UserError
from utils.flags import COUNT, Parser, number
from utils.logger import setup_logging
from utils.run_dir import RunDir

log = logging.getLogger(__name__)
PROG = "python -m tools.export"
FORMATS = ("torch_export", "torchscript", "onnx")


def onnx_missing() -> str | None:
    """Why ONNX cannot be written here (None: it can)."""
    return None if importlib.util.find_spec("onnx") else "the optional package onnx is not installed " \
        "(pip install onnx onnxscript onnxruntime)"


def build_parser() -> Parser:
    parser = Parser(PROG, description="Export a checkpoint to torch.export, TorchScript and ONNX, each checked "
                                      "against the model (docs/tools.md).")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="a .pth, or a run directory (its best.pth) (default: the newest run's)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=None,
                        help="formats to write (default: every one available: torch_export, torchscript, and onnx "
                             "when the onnx package is installed)")
    parser.add_argument("--samples", type=COUNT, default=8, help="real pictures to check each format on "
                                                                 "(default: %(default)s)")
    parser.add_argument("--atol", type=number(float, 0), default=1e-4, help="the largest absolute difference "
                        "from the model's scores that passes (default: %(default)s)")
    parser.add_argument("--val_list", default=None, help="the pictures to check on (default: the run's --val_list)")
    parser.add_argument("--ema", action="store_true", help="export the averaged weights (--ema_decay)")
    parser.add_argument("--output_dir", default=None, help="put the export folder here instead of beside the "
                                                           "checkpoint")
    parser.add_argument("--checkpoints_dir", default="checkpoints", help="where the newest run is looked for "
                                                                         "(default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of input errors")
    return parser


def real_samples(train_args: Namespace, val_list: str | None, count: int) -> Tensor:
    """The first `count` pictures of the run's evaluation set (or `val_list`), preprocessed as
    eval.py does, as one batch on the CPU."""
    flags = Namespace(**{**vars(train_args), "in_memory": False, **({"val_list": val_list} if val_list else {})})
    data = build_dataset(flags, train=False)
    return torch.stack([data[i]["image"] for i in range(min(count, len(data)))])


def export_torch(model: nn.Module, samples: Tensor, folder: Path) -> tuple[Path, Callable]:
    program = torch.export.export(model, (samples,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    path = folder / "model.pt2"
    torch.export.save(program, str(path))
    return path, torch.export.load(str(path)).module()


def export_torchscript(model: nn.Module, samples: Tensor, folder: Path) -> tuple[Path, Callable]:
    path = folder / "model.torchscript.pt"
    with warnings.catch_warnings():  # torch >= 2.10 warns that TorchScript is deprecated: said in export.json
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, samples), str(path))
        loaded = torch.jit.load(str(path))
    return path, loaded


def export_onnx(model: nn.Module, samples: Tensor, folder: Path) -> tuple[Path, Callable | None]:
    """model.onnx with torch's exporter (the dynamo one when onnxscript is installed); run back
    with onnxruntime when installed (None: it cannot be checked here)."""
    path = folder / "model.onnx"
    dynamo = importlib.util.find_spec("onnxscript") is not None
    options = {"dynamic_shapes": ({0: torch.export.Dim.AUTO},)} if dynamo else \
        {"dynamic_axes": {"image": {0: "batch"}, "scores": {0: "batch"}}}
    torch.onnx.export(model, (samples,), str(path), input_names=["image"], output_names=["scores"], dynamo=dynamo,
                      **options)
    if importlib.util.find_spec("onnxruntime") is None:
        return path, None
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return path, lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


EXPORTERS = {"torch_export": export_torch, "torchscript": export_torchscript, "onnx": export_onnx}


def export_format(name: str, model: nn.Module, samples: Tensor, folder: Path, atol: float) -> dict:
    """Write one format, load it back and compare it with the model on `samples` (as a batch,
    and the first alone: the batch size is free); what happened, as export.json records it."""
    try:
        path, run = EXPORTERS[name](model, samples, folder)
    except Exception as error:  # a model a format cannot express: said, the other formats go on
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        log.warning(f"{name}: not exported ({type(error).__name__}: {reason})")
        return {"file": None, "error": f"{type(error).__name__}: {reason}", "ok": False}
    result = {"file": path.name, "bytes": path.stat().st_size}
    if run is None:
        log.warning(f"{name}: {path.name} written, not checked (onnxruntime is not installed)")
        return result | {"max_abs_diff": None, "ok": None, "note": "not checked: onnxruntime is not installed"}
    with torch.no_grad():
        diff = max((run(batch).float() - model(batch).float()).abs().max().item() for batch in (samples, samples[:1]))
    ok = diff <= atol
    (log.info if ok else log.warning)(f"{name}: {path.name}, max abs difference from the model {diff:.3g} on "
                                      f"{len(samples)} samples ({'within' if ok else 'ABOVE'} --atol {atol:g})")
    return result | {"max_abs_diff": diff, "ok": ok}


def description(task: Task, train_args: Namespace, samples: Tensor, scores: Tensor) -> dict:
    """What a user of the files needs besides them: input, preprocessing, outputs."""
    channels, height, width = samples.shape[1:]
    return {
        "input": {"name": "image", "shape": ["batch", channels, height, width], "dtype": "float32",
                  "layout": "NCHW"},
        "preprocessing": {
            "resize": [image_size_of(train_args)] * 2, "channels": "RGB" if channels == 3 else "grey",
            "scale": "uint8 pixel values / 255, to [0, 1]",
            "mean": [MEAN[0] if len(MEAN) == 1 else MEAN[c] for c in range(channels)],
            "std": [STD[0] if len(STD) == 1 else STD[c] for c in range(channels)],
            "formula": "(pixel / 255 - mean) / std, per channel (data/augment.py's eval_transform)"},
        "output": {"name": "scores", "shape": ["batch", *scores.shape[1:]], "task": task.name,
                   "meaning": "one score (logit) per class along dimension 1: softmax gives the probabilities, "
                              "argmax the class" + (" of each pixel" if scores.ndim == 4 else ""),
                   "class_names": task.class_names},
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 every format written and within --atol, 1 one was not, 2 bad input."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        path, checkpoint, sha256 = find_checkpoint(args.checkpoint, args.checkpoints_dir, "-m tools.export")
        wanted = args.formats or [name for name in FORMATS if name != "onnx" or not onnx_missing()]
        if "onnx" in wanted and onnx_missing():
            raise UserError(f"--formats onnx: {onnx_missing()}.")
    except UserError as error:
        parser.error(str(error))
    parent = Path(args.output_dir) if args.output_dir else path.parent / path.stem
    run = RunDir.new(parent, "export")
    results: dict[str, dict] = {}

    def export() -> dict:
        model, task, train_args = rebuild_model(checkpoint, path, args.ema)
        samples = real_samples(train_args, args.val_list, args.samples)  # a bad list ends here, before the folder
        with torch.no_grad():
            scores = model(samples)
        run.open(args, "-m tools.export", argv, info={"checkpoint": str(path.resolve()),
                                                       "checkpoint_sha256": sha256})
        log.info(f"Exporting {path}{' (averaged weights)' if args.ema else ''} into {run.path}: {', '.join(wanted)}")
        for name in wanted:
            results[name] = export_format(name, model, samples, run.path, args.atol)
        record = {"checkpoint": str(path.resolve()), "checkpoint_sha256": sha256, "ema": args.ema,
                  **description(task, train_args, samples, scores),
                  "parity": {"samples": len(samples), "from": args.val_list or train_args.val_list, "atol": args.atol},
                  "formats": results}
        if "torchscript" in results:
            record["formats"]["torchscript"]["note"] = "TorchScript is deprecated in torch; torch.export succeeds it"
        atomic_write_text(run.path / "export.json", json.dumps(record, indent=2) + "\n")
        return {"formats": {name: result["ok"] for name, result in results.items()}}

    code = run.report(export, args.debug)
    return code or (1 if any(result["ok"] is False for result in results.values()) else 0)


if __name__ == "__main__":
    sys.exit(main())
