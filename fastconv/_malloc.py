"""Keep freed memory for reuse (glibc's malloc), so a training step does not page-fault.

A training step allocates and frees the same large activations and gradients every step.
glibc's default serves blocks of a few MB from the heap but returns the heap's free top to
the system once it exceeds twice the largest block freed so far, so the next step faults
every page back in, and the kernel zeroes each one: 10% of a resnet20 step on the dev
machine, where the two thresholds below made the step 1.25x faster (290-299 ms against
366-381 ms, batch 64, 2 threads). A caching allocator (PyTorch's on GPUs) keeps its blocks
the same way.

Blocks above glibc's largest mmap threshold (32 MiB) would still get a fresh mapping each,
faulted in and zeroed on every call: a max-pool 3x3 backward on (32, 64, 112, 112) spent
half its time (12 of 23 ms, 2 threads) faulting its 103 MB grad_in in. So ``mmap`` is
switched off (``M_MMAP_MAX = 0``) and every block comes from the heap: the same backward
then took 8.9 against 18.5 ms. The price: a freed block below the heap's top is not given
back to the system until the blocks above it are freed too (it is reused for the next
allocation, which is what a training loop wants).

Called once at import. Every block comes from the heap, and up to 256 MiB of free heap top
stays mapped (a larger free top is trimmed to it). ``FASTCONV_MALLOC_TUNING=0`` in the
environment skips it; so do other C libraries (no ``mallopt``) and other systems.
"""
import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20

_tuned = False


def tune_malloc():
    """Set glibc's thresholds (see the module docstring); True if they were set."""
    global _tuned
    if os.environ.get("FASTCONV_MALLOC_TUNING", "1").strip() in ("0", ""):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_MAX, 0))
    return _tuned


def malloc_tuned():
    """Whether :func:`tune_malloc` set the thresholds in this process."""
    return _tuned
