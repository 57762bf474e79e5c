"""Keep freed host memory for reuse (Linux, glibc) instead of handing it back at once.

Why: glibc's malloc gives large freed blocks back to the system straight away (a block of
128 KiB or more is mapped and unmapped on its own, and a free top of the heap is trimmed).
A training step on the CPU frees and allocates the same activations every step, so each one
was mapped again and its pages zeroed on first touch: a 32 x 32 U-Net epoch took ~400,000
page faults, and 15-25% longer than with the memory kept (docs/performance.md). PyTorch's CPU
tuning guides reach the same end with another allocator (jemalloc, tcmalloc: LD_PRELOAD);
this needs no package. Memory in use does not grow: freed blocks are reused, not added to.
"""

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # the most glibc accepts: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 2**30  # up to 1 GiB free at the top of the heap is kept for the next step
# A user's own malloc settings (or another allocator, LD_PRELOAD) win.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def keep_freed_memory() -> bool:
    """Set glibc malloc's thresholds for this process and the loader workers it starts.
    Returns False, changing nothing, where the C library is not glibc (macOS, Windows, musl)
    or where the environment sets malloc up itself."""
    if any(os.environ.get(name) for name in USER_SETTINGS) or not is_glibc():
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def is_glibc() -> bool:
    """Whether this process runs on the GNU C library, whose malloc mallopt tunes."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a GNU C library, or no confstr (Windows)
        return False


def available_memory() -> int | None:
    """Bytes of memory this process can still fill without swapping or the kernel's OOM killer
    (Linux's MemAvailable, shared by the processes of one machine: under torchrun, this
    process's share), or None where the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # macOS and Windows have no such count
            return None
    return available // local_processes()


def local_processes() -> int:
    """The training processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without it),
    which share its cores and memory."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "")
    return max(1, int(value)) if value.isdigit() else 1
