"""Process-wide settings: thread count, random seed, and what the build contains."""
import os
import platform
import sys
import threading

import numpy as np

from ._version import __version__

_lock = threading.Lock()
_num_threads = None
_rng = np.random.default_rng()


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
            if n >= 1:
                return n
        except ValueError:
            pass
    return _available_cores()


def set_num_threads(n):
    """Set the number of threads every fastconv kernel and GEMM uses.

    Parameters
    ----------
    n : int
        At least 1. The default is ``OMP_NUM_THREADS`` when set, otherwise the number of cores
        this process may run on.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: expected n >= 1, got {n}")
    with _lock:
        _num_threads = int(n)


def get_num_threads():
    """The number of threads kernels use (see :func:`set_num_threads`)."""
    global _num_threads
    if _num_threads is None:
        with _lock:
            if _num_threads is None:
                _num_threads = _default_threads()
    return _num_threads


def _default_grain():
    env = os.environ.get("FASTCONV_GRAIN", "").strip()
    try:
        return max(0, int(env)) if env else 32768
    except ValueError:
        return 32768


# Work below GRAIN units runs on one thread: waking an idle OpenMP thread (they sleep
# between kernels: README, Threads) costs 20 us or more on the dev VM, more than a second
# thread saves on smaller work. A unit is one element of a memory-bound op (PyTorch's grain
# size, at::internal::GRAIN_SIZE, is the same 32768 elements) or MACS_PER_UNIT
# multiply-adds of a convolution or GEMM (GRAIN units: about 4M, some 80 us at one thread).
# FASTCONV_GRAIN in the environment overrides GRAIN (0: every call on all threads).
GRAIN = _default_grain()
MACS_PER_UNIT = 128


def threads_for(elements=0, macs=0):
    """Threads for one kernel call that touches ``elements`` values and does ``macs``
    multiply-adds: 1 when ``elements + macs / MACS_PER_UNIT`` is below :data:`GRAIN`, else
    :func:`get_num_threads`. Kernels give the same bits for any thread count, so this
    changes only the time."""
    return 1 if elements + macs / MACS_PER_UNIT < GRAIN else get_num_threads()


def manual_seed(seed):
    """Seed every random source fastconv uses (initialisation, dropout, shuffling)."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: expected an int, got {type(seed).__name__}")
    _rng = np.random.default_rng(int(seed))
    return _rng


def default_rng():
    """The generator seeded by :func:`manual_seed`."""
    return _rng


def build_info():
    """What this installation was built with.

    Returns
    -------
    dict
        ``version``, ``compiler``, ``openmp`` (bool), ``openmp_version`` (the ``_OPENMP``
        date or None), ``simd`` (code paths compiled into the GEMM), ``simd_active`` (the one
        this CPU runs), ``gemm`` (the GEMM provider), ``threads`` (current setting),
        ``cores`` (available to this process), ``cython_debug``, ``python``, ``numpy``,
        ``machine``, ``malloc_tuned`` (glibc keeps freed memory for reuse: see
        ``fastconv._malloc``).
    """
    from . import _build_config as bc
    from ._ext import _runtime, gemm
    from ._malloc import malloc_tuned

    compiled, active = gemm.simd_targets()
    return {
        "version": __version__,
        "compiler": bc.compiler,
        "compile_args": list(bc.compile_args),
        "openmp": _runtime.openmp_enabled(),
        "openmp_version": _runtime.openmp_date() or None,
        "simd": compiled,
        "simd_active": active,
        "gemm": f"fastconv packed GEMM ({active} micro-kernel, OpenMP over output tiles)",
        "threads": get_num_threads(),
        "cores": _available_cores(),
        "cython_debug": bc.cython_debug,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "machine": platform.machine(),
        "malloc_tuned": malloc_tuned(),
    }
