"""Seeding, device choice and loading weights into a model, with errors a user can act on."""

import hashlib
import io
import logging
import os
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from utils.distributed import launched_by_torchrun, local_rank
from utils.errors import UserError

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed python, numpy (when installed) and torch (all devices) with one number."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
    except ImportError:  # numpy is optional for the template itself
        return
    numpy.random.seed(seed % 2**32)


def rng_state() -> dict:
    """Every random generator's state (python, numpy, torch, CUDA), as checkpoint-safe values."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    try:
        import numpy
    except ImportError:
        return state
    kind, keys, position, has_gauss, gauss = numpy.random.get_state()
    state["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), position, has_gauss, gauss]
    return state


def set_rng_state(state: dict) -> None:
    """Put back what `rng_state` saved, so a resumed run draws the same numbers."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy
        kind, keys, position, has_gauss, gauss = state["numpy"]
        numpy.random.set_state((kind, keys.numpy().astype("uint32"), position, has_gauss, gauss))


def make_deterministic() -> None:
    """--deterministic: torch's deterministic algorithms (an error names any op that has
    none), cuDNN without autotuning; same seed, same numbers, at some cost in speed."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def speed_up(model: torch.nn.Module, channels_last: bool, compile_model: bool) -> torch.nn.Module:
    """--channels_last (NHWC weights: faster convolutions on tensor cores) and --compile."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile_model else model


def memory_format(channels_last: bool) -> torch.memory_format:
    """How to lay out image batches in memory: NHWC with --channels_last."""
    return torch.channels_last if channels_last else torch.preserve_format


def select_device(gpus: list[int] | None) -> torch.device:
    """CUDA when present (the first of `--gpus`, default GPU 0; under torchrun, the GPU of
    the process's LOCAL_RANK), else the CPU; `--gpus -1` forces the CPU."""
    if gpus == [-1] or not torch.cuda.is_available():
        return torch.device("cpu")
    if launched_by_torchrun():
        return torch.device("cuda", local_rank())
    return torch.device("cuda", gpus[0] if gpus else 0)


def check_gpus(gpus: list[int] | None) -> None:
    """`--gpus` must name GPUs that exist (or be -1 for the CPU)."""
    if gpus is None or gpus == [-1]:
        return
    if launched_by_torchrun():
        raise UserError(f"--gpus {' '.join(map(str, gpus))} is for a single process; under torchrun each "
                        "process uses the GPU of its LOCAL_RANK. Leave --gpus out and choose GPUs with "
                        "CUDA_VISIBLE_DEVICES.")
    available = torch.cuda.device_count()
    if available == 0:
        raise UserError(f"--gpus {' '.join(map(str, gpus))} asks for CUDA, but no CUDA GPU is "
                        "available here; leave --gpus out (or use -1) to run on the CPU.")
    bad = [gpu for gpu in gpus if not 0 <= gpu < available]
    if bad:
        raise UserError(f"--gpus {' '.join(map(str, bad))}: no such GPU; ids 0 to {available - 1} exist.")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside DataParallel / DistributedDataParallel (their `.module`) and
    torch.compile (its `._orig_mod`): the one whose state_dict a checkpoint holds."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)


def finite_weights(model: nn.Module) -> bool:
    """Whether every floating-point weight and buffer is finite (one read from the GPU)."""
    tensors = [t for t in unwrap_model(model).state_dict().values() if t.is_floating_point()]
    return not tensors or bool(torch.stack([t.isfinite().all() for t in tensors]).all())


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint on the CPU with `weights_only=True` (no arbitrary code is unpickled).

    `mmap=True` maps the tensors instead of reading them (files torch.save wrote as a zip
    archive, the default since torch 1.6): loading is then cheap, and the tensors are read
    when used. Every way a file can fail to be a checkpoint is one clear message."""
    path = Path(path)
    check_checkpoint_file(path, path.stat().st_size if path.is_file() else None)
    archive = zipfile.is_zipfile(path)  # False also for a truncated archive
    return load_checkpoint(path, path, archive, mmap=mmap and archive)


def read_checkpoint_and_sha256(path: str | Path) -> tuple[dict, str]:
    """A checkpoint read into memory once, and the SHA-256 of exactly those bytes: eval.py and
    predict.py record which checkpoint they used, which must hold even while a live run
    replaces the file at `path` (its best.pth)."""
    path = Path(path)
    try:
        data = path.read_bytes() if path.is_file() else None
    except OSError as error:
        raise UserError(f"Checkpoint {path} cannot be read ({error.strerror or error}).") from None
    check_checkpoint_file(path, None if data is None else len(data))
    source = io.BytesIO(data)
    return load_checkpoint(source, path, zipfile.is_zipfile(source)), hashlib.sha256(data).hexdigest()


def check_checkpoint_file(path: Path, size: int | None) -> None:
    """A checkpoint must be a file (`size` None: it is not one) with something in it."""
    if size is None:
        raise UserError(f"Checkpoint {path} does not exist (or is not a file).")
    if size == 0:
        raise UserError(f"{path} is empty (0 bytes), not a checkpoint: a save that never finished, or a "
                        "file that was only created. Give a checkpoint written by torch.save.")


def load_checkpoint(source: Path | io.BytesIO, path: Path, archive: bool, mmap: bool = False) -> dict:
    """torch.load of `source` (the file `path`, or its bytes), every failure one clear message."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for a file it cannot read
        lines = str(error).strip().splitlines()
        reason = "" if archive else ("it is not the zip archive torch.save writes (a text file, another format, or "
                                     "a copy cut short?); ")
        raise UserError(f"{path} is not a loadable PyTorch checkpoint: {reason}"
                        f"{lines[0] if lines else type(error).__name__}") from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict or state dict.")
    return checkpoint


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint: its "model" entry, or the dict itself when it is a
    plain state dict (as torchvision and most papers publish). `module.` prefixes left by
    DataParallel / DDP and `_orig_mod.` left by torch.compile are removed."""
    state = checkpoint.get("model", checkpoint)
    return {name.removeprefix("module.").removeprefix("_orig_mod."): value
            for name, value in state.items() if torch.is_tensor(value)}


@dataclass
class LoadReport:
    """What `load_match_dict` did: tensors loaded and tensors skipped, with why."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the model
    mismatched: list[str] = field(default_factory=list)  # both, with different shapes

    def describe(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        parts = [f"loaded {len(self.loaded)} of the model's {total} tensors"]
        for label, names in (("missing from the checkpoint", self.missing),
                             ("not in the model", self.unexpected),
                             ("shape mismatch", self.mismatched)):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        return "; ".join(parts)


def match_state(model: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """Compare a state dict with the model's own, name by name and shape by shape."""
    own = unwrap_model(model).state_dict()
    report = LoadReport(unexpected=[name for name in state if name not in own])
    for name, tensor in own.items():
        if name not in state:
            report.missing.append(name)
        elif state[name].shape != tensor.shape:
            report.mismatched.append(f"{name} {tuple(state[name].shape)} vs {tuple(tensor.shape)}")
        else:
            report.loaded.append(name)
    return report


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], strict: bool, source: str | Path) -> LoadReport:
    """Load a state dict into the model. Strict: every tensor must match, else a UserError
    lists the missing, unexpected and mismatched names. Not strict (--load_not_strict, e.g. for
    a new classifier head): load the matching ones; none matching is an error, and fewer
    than half a warning, since that is rarely the checkpoint that was meant."""
    report = match_state(model, state)
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise UserError(f"Checkpoint {source} does not fit the model ({report.describe()}). "
                        "Pick the --model_type it was trained with, or pass --load_not_strict "
                        "to load only the matching tensors.")
    if not report.loaded:
        raise UserError(f"Checkpoint {source} has no tensor that fits the model ({report.describe()}): it holds "
                        "another model. Pick the --model_type it was trained with, or another checkpoint.")
    unwrap_model(model).load_state_dict({name: state[name] for name in report.loaded}, strict=strict)
    total = len(report.loaded) + len(report.missing) + len(report.mismatched)
    if len(report.loaded) < total / 2:
        log.warning(f"Only {len(report.loaded)} of the model's {total} tensors came from {source}; the rest keep "
                    "their random start. Is it the checkpoint you meant?")
    log.info(f"Weights from {source}: {report.describe()}")
    return report


def load_weights(model: nn.Module, path: str | Path, strict: bool) -> LoadReport:
    """Load a checkpoint file into the model, strictly or not (see `load_state_into`)."""
    return load_state_into(model, model_state(read_checkpoint(path)), strict=strict, source=path)
