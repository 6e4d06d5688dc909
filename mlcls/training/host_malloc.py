"""glibc's malloc set for a training process: freed activation memory kept for the next step, not returned.

Why: a training step allocates and frees the same large blocks at every step (activations and their gradients:
tens of MiB for a batch of 32 articles in 128-token windows). glibc hands a block above its mmap threshold
(dynamic, at most 32 MiB) back to the kernel when it is freed, and trims the free top of its heap beyond the trim
threshold, so the next step faults the same memory in again, page by page. mallopt pins the mmap threshold at
its 32 MiB ceiling, trims only beyond 1 GiB and grows the heap 256 MiB at a time: on this project's 2-core Xeon
the loop ran 1.25x and 1.41x faster in two interleaved benchmarks (docs/benchmarks.md, "Training engine":
`scripts/bench_train.py --arms mlcls-glibc mlcls`), and a whole `mlcls train -c configs/reuters.yaml` 1.08x, with the
same figures (`scripts/bench_train_malloc.py`). PyTorch keeps no caching allocator on the CPU (it has one
on the GPU); jemalloc or tcmalloc, which Intel's PyTorch tuning guide advises, must be installed and
LD_PRELOADed before the process starts, while mallopt is glibc's own switch and needs neither.

The CLI's `mlcls train` and `mlcls tune` call it, once, before training; a program that imports mlcls.api keeps
its own allocator. It leaves glibc alone where the user has set it (any MALLOC_* variable, or GLIBC_TUNABLES),
and on a C library that is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 256 << 20))


def user_set_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the environment already configures glibc's malloc (its MALLOC_* variables or GLIBC_TUNABLES)."""
    return "GLIBC_TUNABLES" in environ or any(k.startswith("MALLOC_") for k in environ)


def keep_freed_memory() -> bool:
    """Set glibc's malloc for training (see the module's docstring); True when it was set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or user_set_malloc():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
