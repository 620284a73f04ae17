"""What the compiled part of fastconv was built with, and a tiny parallel probe.

Level of parallelism: one OpenMP region in ``threads_used``; nothing else here runs in parallel.
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
