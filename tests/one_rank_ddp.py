"""Run train.py or eval.py as one torchrun process that still takes the multi-process path:

    python -m torch.distributed.run --nproc_per_node=1 tests/one_rank_ddp.py train.py [flags]

Why a shim: with one process the template treats torchrun as absent (utils/distributed.py:
`launched_by_torchrun` is WORLD_SIZE > 1), so `--nproc_per_node=1` alone never starts NCCL,
and NCCL refuses two processes on one GPU. Here the one process joins a process group anyway
(NCCL for CUDA tensors, gloo for CPU ones), so DistributedDataParallel, the all-reduced metric
sums, the broadcast BatchNorm buffers and the gathered predictions all run on a single GPU.
Used by tests/test_gpu.py; prints the process group it joined.
"""

import runpy
import sys
from pathlib import Path

import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import utils.distributed as distributed  # noqa: E402

join_process_group = distributed.init_distributed


def init_and_report() -> None:
    """Join as torchrun's processes do, then say which process group this is."""
    join_process_group()
    backend = dist.get_backend_config() if hasattr(dist, "get_backend_config") else dist.get_backend()
    print(f"one-rank process group: initialized {dist.is_initialized()}, backend {backend}", flush=True)


if __name__ == "__main__":
    # Before the script runs: train.py, options.py and utils/torch_utils.py import these by name.
    distributed.launched_by_torchrun = lambda: True
    distributed.init_distributed = init_and_report
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(str(REPO / script), run_name="__main__")
