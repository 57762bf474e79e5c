"""Many processes under torchrun: `torchrun --nproc_per_node=N train.py ...`.

torchrun starts N copies of the script and tells each its RANK, LOCAL_RANK and WORLD_SIZE.
Each process trains on its share of every batch (DistributedDataParallel averages the
gradients), rank 0 alone writes the run directory, and every number that describes the
whole data set (losses, confusion matrices) is summed across the processes first. Without
torchrun every function here is a no-op for a single process, so the code reads the same.
"""

import contextlib
import os

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from utils.errors import UserError
from utils.host_memory import keep_freed_memory

_control_group = None  # a CPU (gloo) group for small control messages, even when training on NCCL


def launched_world_size() -> int:
    """How many processes torchrun started (1 without torchrun), known before they join."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_by_torchrun() -> bool:
    return launched_world_size() > 1


def start_process() -> None:
    """What train.py, eval.py and predict.py do first, once their flags are checked: join
    torchrun's processes (nothing to do for a single process), and keep freed host memory
    for reuse (CPU steps then allocate without page faults: utils/host_memory.py)."""
    keep_freed_memory()
    init_distributed()


def init_distributed() -> None:
    """Join the process group when launched by torchrun: NCCL for GPU tensors, gloo for CPU
    ones (the summed counts of a metric may live on either)."""
    global _control_group
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        if local_rank() >= torch.cuda.device_count():
            raise UserError(f"torchrun started process {local_rank()} on this machine, but it has only "
                            f"{torch.cuda.device_count()} GPU(s): pass --nproc_per_node={torch.cuda.device_count()} "
                            "(or fewer), or hide the GPUs (CUDA_VISIBLE_DEVICES=) to run the processes on the CPU.")
        torch.cuda.set_device(local_rank())
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    _control_group = dist.new_group(backend="gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0: the one process that prints, logs and writes files."""
    return rank() == 0


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over all processes (the tensor itself in a single process)."""
    if dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def any_rank(flag: bool) -> bool:
    """True on every process if it is true on any: all stop at the same step. Goes through
    the CPU group, so asking costs no GPU synchronisation."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control_group)
    return bool(value.item())


def broadcast_from_main(value: object) -> object:
    """Rank 0's `value` on every process (e.g. the run directory it created)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control_group)
    return box[0]


def gather_to_main(items: list) -> list:
    """Every process's list, on rank 0, interleaved back into data-set order (see
    `ShardSampler`: process r holds samples r, r + N, r + 2N, ...). Other ranks get []."""
    if not dist.is_initialized():
        return items
    lists = [None] * world_size() if is_main_process() else None
    dist.gather_object(items, lists, dst=0, group=_control_group)
    if not is_main_process():
        return []
    longest = max(len(part) for part in lists)
    return [part[i] for i in range(longest) for part in lists if i < len(part)]


def gradient_sync(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """With gradient accumulation under DDP, skip the all-reduce of gradients on the batches
    that only accumulate (`sync=False`); a no-op otherwise."""
    if not sync and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier(group=_control_group)


@contextlib.contextmanager
def main_process_first():
    """Rank 0 runs the block first (e.g. downloads or generates data), the others after it:
    one writer, and everyone then reads finished files."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:  # also when rank 0 fails: the others then try, and report the same error
        if is_main_process():
            barrier()


def sync_buffers_from_main(model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics), which the last
    training step left slightly different on each: validation then uses the weights that
    rank 0 saves."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardSampler(Sampler):
    """Evaluation order split across processes with no sample twice: process r reads
    r, r + N, r + 2N, ... Unlike DistributedSampler it never pads, so metrics summed over
    the processes cover the data set exactly once, as a single process would."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        if length < world_size:  # a process with no sample would wait forever for the others
            raise UserError(f"The evaluation set has {length} sample(s), fewer than the {world_size} processes "
                            "torchrun started; use fewer processes or a larger set.")
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def global_index(self, local: int) -> int:
        """The data-set index of this process's `local`-th sample."""
        return self.indices[local]
