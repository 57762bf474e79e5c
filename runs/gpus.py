"""Which GPUs each parallel job of a sweep gets, through CUDA_VISIBLE_DEVICES.

The GPUs to share out are those in the sweep's own CUDA_VISIBLE_DEVICES if it is set, else
every GPU torch sees (torch is imported only then: the sweep itself needs no torch, and
importing it takes seconds). Job slot k (0 .. --jobs - 1) gets `--gpus_per_job` consecutive
GPUs starting at k * gpus_per_job, wrapping around: with 4 GPUs, `--jobs 4` gives each job
one GPU, `--jobs 2 --gpus_per_job 2` gives 0,1 and 2,3, and `--jobs 8` puts two jobs on
each GPU. Inside a job the GPUs are renumbered from 0, so train.py's default (GPU 0) and
`--gpus 0 1` mean the job's own GPUs.
"""

import os

from utils.errors import UserError


def cuda_device_count() -> int:
    """How many CUDA GPUs torch sees (tests replace this function)."""
    import torch  # here: only a sweep that shares out GPUs pays for the import

    return torch.cuda.device_count()


def visible_devices() -> list[str]:
    """The GPUs to share out: CUDA_VISIBLE_DEVICES' entries (ids or UUIDs, up to the first
    invalid one, as CUDA reads it), else 0 .. cuda_device_count() - 1."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(index) for index in range(cuda_device_count())]
    devices = []
    for entry in (entry.strip() for entry in listed.split(",")):
        if not entry or entry.startswith("-"):
            break
        devices.append(entry)
    return devices


def job_devices(jobs: int, gpus_per_job: int | None) -> list[str] | None:
    """The GPUs to share out, or None when jobs are not given their own (one job at a time
    and no --gpus_per_job, or no GPU: the jobs share the CPU). Refuses impossible requests."""
    if jobs == 1 and gpus_per_job is None:
        return None
    devices = visible_devices()
    if not devices:
        if gpus_per_job is not None:
            raise UserError(f"--gpus_per_job {gpus_per_job}: no CUDA GPU is visible here "
                            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); leave "
                            "--gpus_per_job out to run the jobs on the CPU.")
        return None
    if (gpus_per_job or 1) > len(devices):
        raise UserError(f"--gpus_per_job {gpus_per_job}: only {len(devices)} GPU(s) visible "
                        f"({','.join(devices)}); ask for at most {len(devices)}.")
    return devices


def slot_devices(slot: int, devices: list[str], gpus_per_job: int | None) -> str:
    """CUDA_VISIBLE_DEVICES for job slot `slot`: `gpus_per_job` consecutive GPUs, wrapping."""
    count = gpus_per_job or 1
    return ",".join(devices[(slot * count + offset) % len(devices)] for offset in range(count))
