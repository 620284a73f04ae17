"""Timing helpers shared by the suites."""
import time

import numpy as np


def median_ms(fn, repeat=5, warmup=1, budget_s=None):
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` runs after ``warmup``.

    ``budget_s`` caps the total time: once spent, fewer repeats are taken (at least one)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return 1e3 * float(np.median(times))


def gemm_probe(threads):
    """GFLOP/s of fastconv's sgemm (1024^3) at ``threads``: tells whether the cores we asked
    for were really available during a run."""
    from fastconv._ext import gemm
    a = np.ones((1024, 1024), np.float32)
    c = np.empty_like(a)
    ms = median_ms(lambda: gemm.gemm(a, a, c, n_threads=threads), repeat=5)
    return 2 * 1024 ** 3 / ms / 1e6


def try_import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch
