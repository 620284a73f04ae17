"""What the compiled part of fastconv was built with, a tiny parallel probe, and a parallel
copy that measures the memory bandwidth (``bench``'s memory probe).

Level of parallelism: one OpenMP region in ``threads_used`` and in ``parallel_copy``; nothing
else here runs in parallel.
"""
from cython.parallel cimport prange
from _openmp cimport FC_HAVE_OPENMP, FC_OPENMP_DATE, omp_get_num_threads, omp_get_num_procs


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FC_HAVE_OPENMP)


def openmp_date():
    """The ``_OPENMP`` macro (yyyymm of the spec) or 0 for a serial build."""
    return FC_OPENMP_DATE


def num_procs():
    """Processors the OpenMP runtime sees (1 for a serial build)."""
    return omp_get_num_procs()


def threads_used(int n_threads):
    """Open one parallel region with ``n_threads`` and return how many threads really ran."""
    cdef int i, seen = 1
    with nogil:
        for i in prange(1, num_threads=n_threads, schedule="static"):
            seen = omp_get_num_threads()
    return seen


def parallel_copy(const float[::1] src, float[::1] dst, int n_threads):
    """dst[:] = src, in n_threads contiguous pieces, one per thread, by a plain loop (STREAM's
    copy): the rate ``bench`` reports as this machine's memory bandwidth."""
    cdef Py_ssize_t n = src.shape[0], piece, i, j, lo, hi
    cdef int T = max(n_threads, 1)
    cdef const float* s
    cdef float* d
    if dst.shape[0] != n:
        raise ValueError(f"parallel_copy: expected src and dst of the same length, got "
                         f"{n} and {dst.shape[0]}")
    if n == 0:
        return
    piece = (n + T - 1) // T
    piece = (piece + 1023) // 1024 * 1024        # 4 KiB of float32
    s, d = &src[0], &dst[0]
    with nogil:
        for i in prange(T, num_threads=T, schedule="static"):
            lo = i * piece
            hi = min(lo + piece, n)
            for j in range(lo, hi):
                d[j] = s[j]
