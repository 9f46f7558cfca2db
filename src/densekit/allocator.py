"""Let glibc keep freed tensor memory for reuse instead of handing it back to the OS.

By default glibc serves every allocation above a (self-adjusting) threshold with a fresh
``mmap`` and returns freed memory to the kernel (``munmap``, heap trimming). A training step
frees its activations and allocates them again in the next step, so the kernel zero-fills every
4 KiB page of them anew on first touch: ~400,000 page faults in 20 steps of the default model,
whose steps run 1.21x faster on 2 cores without them (docs/speed.md). PyTorch has no caching
allocator for CPU tensors, so densekit tells glibc to behave like one: serve allocations up to
glibc's ceiling (32 MiB) from the heap and never trim it. Freed blocks are then reused by the next step; peak
memory stays the same (the same blocks are reused, none are added), but the process keeps its
peak resident until it exits instead of shrinking after a peak.

It is applied by the ``densekit`` command and by ``densekit.train`` (never by ``import densekit``:
a library must not change its host process's allocator behind its back; call
``keep_freed_memory()`` yourself for your own training loop), on glibc-based Linux only; ``DENSEKIT_MALLOC=system`` leaves glibc's defaults
alone. The jemalloc/tcmalloc ``LD_PRELOAD`` that CPU PyTorch guides recommend does the same job
and can be used instead.
"""
from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses thresholds above HEAP_MAX_SIZE / 2, which is 32 MiB on 64-bit systems; larger
# blocks keep coming from mmap.
MMAP_THRESHOLD = 32 << 20

_state = {"tuned": False}


def keep_freed_memory() -> bool:
    """Tune glibc as described above; True if it was done (now or before), False where it
    cannot be (not glibc, or turned off with ``DENSEKIT_MALLOC=system``)."""
    if _state["tuned"]:
        return True
    if os.environ.get("DENSEKIT_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it; musl's mallopt does nothing useful
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Setting the threshold also stops glibc's own adjustment of it; -1 disables trimming.
    _state["tuned"] = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
    return _state["tuned"]
