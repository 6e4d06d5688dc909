"""Keep inference memory flat over long inputs (glibc's allocator; a no-op elsewhere).

Inference allocates tensors whose size follows the batch's padded width, so each batch asks for
slightly different sizes. glibc serves blocks above its mmap threshold with mmap (given back on free),
but the threshold starts at 128 KiB and rises to the largest block freed so far (up to 32 MiB): after the
first few batches most activations come from the heap instead, where blocks of ever-changing sizes
fragment it and freed memory is kept. Measured with `mlcls predict` (int8, one layer kept, 2,048-line
chunks): peak RSS rose from 975 MiB at 10k lines to 1,150 MiB at 35k; with the threshold pinned at
1 MiB it stayed at 687 MiB from 4k lines to 24k. Trimming the heap between chunks did not help, because
the peak is reached within a chunk. PyTorch has no caching allocator on CPU that would do this for us.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Blocks of `threshold` bytes and more are mmapped (and unmapped when freed), always. True if set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
