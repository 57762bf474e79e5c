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
