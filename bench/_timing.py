"""Timing helpers shared by the suites."""
import time

import numpy as np


def _settle(fn, calls, settle_ms):
    """Untimed calls of ``fn``: ``calls`` of them, and more until ``settle_ms`` have passed.

    After another library's call its OpenMP threads still spin for a while and take the
    cores (PyTorch's for some 0.1-1 ms), and a thread that has slept is slow to wake: a
    sub-millisecond call timed right after a switch measures that, not the op. Calls that
    follow a millisecond of the same library's calls measure the op as a network's loop
    runs it (measured for global average pooling on the 2-core Zen 3 VM, 2 threads: 0.081
    ms right after a PyTorch call, 0.056 after ten of its own, 0.053 in a loop of its own)."""
    start = time.perf_counter()
    done = 0
    while done < calls or (time.perf_counter() - start) * 1e3 < settle_ms:
        fn()
        done += 1


def median_ms(fn, repeat=5, warmup=1, budget_s=None, settle_ms=0.0):
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` runs after ``warmup``
    untimed ones (and more until ``settle_ms`` have passed: :func:`_settle`).

    ``budget_s`` caps the total time: once spent, fewer repeats are taken (at least one)."""
    _settle(fn, warmup, settle_ms)
    times = []
    start = time.perf_counter()
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return 1e3 * float(np.median(times))


def under_no_grad(fn):
    """``fn`` wrapped to run under ``fastconv.no_grad()``: a forward as inference runs it."""
    import fastconv as fc

    def run():
        with fc.no_grad():
            fn()
    return run


def interleaved_ms(fns, repeat=5, warmup=1, settle_ms=0.0):
    """Median wall times (ms) of several callables timed in alternation: one repeat runs
    each once, in forward order on even repeats and reverse order on odd ones. Slow phases
    of a shared machine (another process taking a core for a while) then hit every callable
    alike, so their ratios stay meaningful even when the absolute times do not.
    ``settle_ms`` > 0: before each timed call, untimed calls of the same callable for that
    long (at least one), so that the call is not timed against the previous library's
    spinning threads (:func:`_settle`; for sub-millisecond ops)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for r in range(max(1, repeat)):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            if settle_ms > 0:
                _settle(fns[i], 1, settle_ms)
            t0 = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - t0)
    return [1e3 * float(np.median(t)) for t in times]


def gemm_probe(threads):
    """GFLOP/s of fastconv's sgemm (1024^3) at ``threads``: tells whether the cores we asked
    for were really available during a run."""
    from fastconv._ext import gemm
    a = np.ones((1024, 1024), np.float32)
    c = np.empty_like(a)
    ms = median_ms(lambda: gemm.gemm(a, a, c, n_threads=threads), repeat=5)
    return 2 * 1024 ** 3 / ms / 1e6


def memory_probe(threads, mib=64):
    """GB/s (bytes read + written / time) of a plain parallel float32 copy of ``mib`` MiB
    (STREAM's copy; ``fastconv._ext._runtime.parallel_copy``) at ``threads``: this machine's
    memory bandwidth as the memory-bound ops see it, measured rather than assumed. The
    arrays are written once before timing (first touch), so page faults are not timed."""
    from fastconv._ext import _runtime
    n = (mib << 20) // 4
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)
    ms = median_ms(lambda: _runtime.parallel_copy(src, dst, threads), repeat=5)
    return 2 * src.nbytes / ms / 1e6


def blas_sgemm_gflops(threads, n=1024):
    """(GFLOP/s, threads) of NumPy's BLAS (OpenBLAS in NumPy's wheels) on an n^3 float32
    matmul: the machine's BLAS rate that the conv suite compares with. Pinned to ``threads``
    with threadpoolctl when it is installed (it is not a dependency), else at the BLAS's own
    default (returned as None). Sleeps briefly afterwards, so BLAS threads that spin after a
    call have gone idle before the next timing."""
    a = np.ones((n, n), np.float32)
    c = np.empty_like(a)
    run = lambda: np.matmul(a, a, out=c)  # noqa: E731
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threads, ms = None, median_ms(run, repeat=7)
    else:
        with threadpool_limits(limits=threads, user_api="blas"):
            ms = median_ms(run, repeat=7)
    time.sleep(0.2)
    return 2 * n ** 3 / ms / 1e6, threads


def try_import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch
