"""GFLOP/s of fastconv's GEMM next to NumPy's matmul (OpenBLAS) on conv-shaped products.

    python bench/gemm.py [--repeats 15] [--dtype float32|float64|both]

Shapes are those the im2col convolutions produce (M, N, K = channels, pixels, taps). Each
entry is the median over the repeats after one warm-up call. fastconv runs with n_threads 1 and
2; NumPy's OpenBLAS is timed in its own loop at 1 thread and at its default, pinned with
threadpoolctl when installed (it is not a dependency; without it the 1-thread column is left
empty). On a shared machine, re-run when the 2-thread figure looks like the 1-thread one: the
second core was busy.
"""
import argparse
import os
import sys
import time

import numpy as np

try:
    from fastconv._ext import gemm as G
except ImportError:  # `python bench/gemm.py` from a checkout built with build_ext --inplace
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fastconv._ext import gemm as G

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional, bench only
    threadpool_limits = None

SHAPES = [  # M, N, K, trans_b
    (64, 1024, 576, False),
    (128, 256, 1152, False),
    (256, 64, 2304, False),
    (64, 576, 1024, True),
    (1024, 1024, 1024, False),
]


def _median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _numpy_seconds(a, b, c, tb, repeats, threads):
    bb = b.T if tb else b
    run = lambda: np.matmul(a, bb, out=c)  # noqa: E731
    if threads is None:
        return _median_seconds(run, repeats)
    if threadpool_limits is None:
        return None
    with threadpool_limits(limits=threads, user_api="blas"):
        return _median_seconds(run, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    args = parser.parse_args()
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    compiled, active = G.simd_targets()
    print(f"fastconv GEMM: {active} micro-kernel (compiled: {', '.join(compiled)}); "
          f"NumPy {np.__version__}; GFLOP/s, median of {args.repeats}")
    header = (f"{'dtype':8} {'M':>5} {'N':>5} {'K':>5} {'op(B)':>5} | {'fc 1T':>7} "
              f"{'fc 2T':>7} {'2T/1T':>6} | {'np 1T':>7} {'np dflt':>7}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        for M, N, K, tb in SHAPES:
            a = rng.standard_normal((M, K)).astype(dtype)
            b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            c = np.empty((M, N), dtype)
            gflop = 2.0 * M * N * K * 1e-9
            fc = [gflop / _median_seconds(lambda: G.gemm(a, b, c, False, tb, n_threads=nt),
                                          args.repeats) for nt in (1, 2)]
            npt = [_numpy_seconds(a, b, c, tb, args.repeats, th) for th in (1, None)]
            np_txt = [f"{gflop / t:7.1f}" if t else f"{'-':>7}" for t in npt]
            print(f"{dtype:8} {M:5d} {N:5d} {K:5d} {'B^T' if tb else 'B':>5} | {fc[0]:7.1f} "
                  f"{fc[1]:7.1f} {fc[1] / fc[0]:6.2f} | {np_txt[0]} {np_txt[1]}")


if __name__ == "__main__":
    main()
