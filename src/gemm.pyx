"""Test and benchmark wrapper around fastconv's C GEMM (src/fc_gemm.c); the conv kernels cimport
``gemm`` from gemm_api.pxd and never come through here.

Level of parallelism: the C GEMM's own single OpenMP region over disjoint output tiles when
``n_threads > 1``; none when ``n_threads == 1``. Nothing in this file runs in parallel.
"""
from cython cimport floating
from libc.stdint cimport int64_t

from gemm_api cimport (gemm as _gemm, gemm_im2col as _gemm_im2col, fc_im2col_t,
                      fc_gemm_active_target, fc_gemm_compiled_targets)


cdef int64_t _leading_dim(const floating[:, :] x, str name) except -1:
    """Row stride in elements of a 2-D view whose rows are contiguous."""
    cdef Py_ssize_t item = sizeof(floating)
    if x.shape[1] > 1 and x.strides[1] != item:
        raise ValueError(f"gemm: expected {name} with contiguous rows, got strides "
                         f"{(x.strides[0], x.strides[1])}")
    if x.shape[0] > 1 and (x.strides[0] % item != 0 or x.strides[0] // item < x.shape[1]):
        raise ValueError(f"gemm: expected {name} with a row stride >= its width, got strides "
                         f"{(x.strides[0], x.strides[1])} for shape {(x.shape[0], x.shape[1])}")
    if x.shape[0] > 1:
        return x.strides[0] // item
    return max(x.shape[1], 1)


def gemm(const floating[:, :] a, const floating[:, :] b, floating[:, :] c, bint trans_a=False,
         bint trans_b=False, double alpha=1.0, double beta=0.0, int n_threads=1):
    """c = alpha * op(a) @ op(b) + beta * c, in place; op transposes when asked.

    a, b : float32 or float64, 2-D, rows contiguous (any row stride: slices of a bigger array
        test the leading-dimension path of the C code).   # IN
    c : the same dtype, (M, N), rows contiguous.   # OUT; not read when beta == 0
    n_threads : threads of the C GEMM's OpenMP region (1: none opened). The result is
        bit-identical for every value.
    """
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t Kb = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t N = b.shape[0] if trans_b else b.shape[1]
    if Kb != K or c.shape[0] != M or c.shape[1] != N:
        raise ValueError(f"gemm: expected op(a) (M, K) @ op(b) (K, N) -> c (M, N), got op(a) "
                         f"{(M, K)}, op(b) {(Kb, N)}, c {(c.shape[0], c.shape[1])}")
    cdef int64_t lda = _leading_dim(a, "a")
    cdef int64_t ldb = _leading_dim(b, "b")
    cdef int64_t ldc = _leading_dim(c, "c")
    cdef const floating *pa = &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL
    cdef const floating *pb = &b[0, 0] if b.shape[0] > 0 and b.shape[1] > 0 else NULL
    cdef floating *pc = &c[0, 0] if c.shape[0] > 0 and c.shape[1] > 0 else NULL
    with nogil:
        _gemm(trans_a, trans_b, M, N, K, <floating>alpha, pa, lda, pb, ldb, <floating>beta,
              pc, ldc, n_threads)


def gemm_im2col(const floating[:, :] a, const floating[:, :, ::1] x, floating[:, :] c,
                int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h,
                int dil_w, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t oh0=0, bint trans_a=False,
                bint trans_b=False, double alpha=1.0, double beta=0.0, int n_threads=1):
    """c = alpha * op(a) @ op(cols) + beta * c, cols the im2col matrix of the image x (C, H, W)
    for output rows [oh0, OH) (C*kh*kw x (OH - oh0)*OW), packed straight from x: the C
    GEMM's implicit-im2col entry point, bit-identical to gemm on the explicit matrix.
    a # IN, x # IN, c # OUT (not read when beta == 0)."""
    cdef fc_im2col_t geo
    cdef int64_t rows = x.shape[0] * kh * kw, cols = (OH - oh0) * OW
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t Kb = cols if trans_b else rows
    cdef int64_t N = rows if trans_b else cols
    if Kb != K or c.shape[0] != M or c.shape[1] != N:
        raise ValueError(f"gemm_im2col: expected op(a) (M, K) @ op(cols) (K, N) -> c (M, N), "
                         f"got op(a) {(M, K)}, op(cols) {(Kb, N)}, c {(c.shape[0], c.shape[1])}")
    geo.C, geo.H, geo.W, geo.OW, geo.oh0 = x.shape[0], x.shape[1], x.shape[2], OW, oh0
    geo.kh, geo.kw, geo.sh, geo.sw = kh, kw, stride_h, stride_w
    geo.ph, geo.pw, geo.dh, geo.dw = pad_h, pad_w, dil_h, dil_w
    geo.rowoff, geo.seg, geo.segstride = NULL, 0, 0
    cdef int64_t lda = _leading_dim(a, "a")
    cdef int64_t ldc = _leading_dim(c, "c")
    cdef const floating *pa = &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL
    cdef const floating *px = &x[0, 0, 0] if x.size > 0 else NULL
    cdef floating *pc = &c[0, 0] if c.shape[0] > 0 and c.shape[1] > 0 else NULL
    cdef int rc
    with nogil:
        rc = _gemm_im2col(trans_a, trans_b, M, N, K, <floating>alpha, pa, lda, px, &geo,
                          <floating>beta, pc, ldc, n_threads)
    if rc != 0:
        raise MemoryError("gemm_im2col: cannot allocate the packing buffers")


def gemm_rows(const floating[:, :] a, const floating[::1] x, const int64_t[::1] rowoff,
              int64_t seg, int64_t segstride, int64_t ncols, floating[:, :] c,
              bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0,
              int n_threads=1):
    """c = alpha * op(a) @ op(B) + beta * c for the row-offset B of gemm.h:
    B[r, t] = x[rowoff[r] + (t // seg) * segstride + t % seg], len(rowoff) x ncols, packed
    straight from x. a # IN, x # IN, c # OUT (not read when beta == 0)."""
    cdef fc_im2col_t geo
    cdef int64_t rows = rowoff.shape[0]
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t Kb = ncols if trans_b else rows
    cdef int64_t N = rows if trans_b else ncols
    if Kb != K or c.shape[0] != M or c.shape[1] != N:
        raise ValueError(f"gemm_rows: expected op(a) (M, K) @ op(B) (K, N) -> c (M, N), "
                         f"got op(a) {(M, K)}, op(B) {(Kb, N)}, c {(c.shape[0], c.shape[1])}")
    if rows == 0 or seg <= 0 or segstride < 0 or ncols < 0:
        raise ValueError(f"gemm_rows: expected len(rowoff) > 0, seg > 0, segstride >= 0, "
                         f"ncols >= 0, got {rows}, {seg}, {segstride}, {ncols}")
    if ncols > 0:
        last = (ncols - 1) // seg * segstride + min(seg, ncols) - 1
        if min(rowoff) < 0 or max(rowoff) + last >= x.shape[0]:
            raise ValueError(f"gemm_rows: B reads x[{min(rowoff)} .. {max(rowoff) + last}], "
                             f"outside x of length {x.shape[0]}")
    geo.rowoff = &rowoff[0]
    geo.seg, geo.segstride = seg, segstride
    cdef int64_t lda = _leading_dim(a, "a")
    cdef int64_t ldc = _leading_dim(c, "c")
    cdef const floating *pa = &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL
    cdef const floating *px = &x[0] if x.shape[0] > 0 else NULL
    cdef floating *pc = &c[0, 0] if c.shape[0] > 0 and c.shape[1] > 0 else NULL
    cdef int rc
    with nogil:
        rc = _gemm_im2col(trans_a, trans_b, M, N, K, <floating>alpha, pa, lda, px, &geo,
                          <floating>beta, pc, ldc, n_threads)
    if rc != 0:
        raise MemoryError("gemm_rows: cannot allocate the packing buffers")


def simd_targets():
    """``(compiled, active)``: the GEMM code paths built in, best first, and the one in use.

    ``FASTCONV_GEMM_TARGET=avx2`` or ``generic`` (failing that, ``FASTCONV_SIMD_TARGET``) in
    the environment before the first GEMM call forces a lower path (testing only).
    """
    compiled = fc_gemm_compiled_targets().decode("ascii").split(",")
    active = fc_gemm_active_target().decode("ascii")
    return compiled, active
