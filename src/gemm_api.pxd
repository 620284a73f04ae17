# Cython view of src/gemm.h; `gemm` picks the float32 or float64 routine from the fused type.
from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "gemm.h" nogil:
    void fc_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc, int n_threads) noexcept
    void fc_dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                  const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                  double *C, int64_t ldc, int n_threads) noexcept
    ctypedef struct fc_im2col_t:
        int64_t C, H, W, OW, oh0
        int kh, kw, sh, sw, ph, pw, dh, dw
        const int64_t *rowoff
        int64_t seg, segstride
    int fc_sgemm_im2col(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *x, const fc_im2col_t *geo,
                        float beta, float *C, int64_t ldc, int n_threads) noexcept
    int fc_dgemm_im2col(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                        double alpha, const double *A, int64_t lda, const double *x,
                        const fc_im2col_t *geo, double beta, double *C, int64_t ldc,
                        int n_threads) noexcept
    const char *fc_gemm_compiled_targets() noexcept
    const char *fc_gemm_active_target() noexcept


cdef inline void gemm(bint trans_a, bint trans_b, int64_t M, int64_t N, int64_t K,
                      floating alpha, const floating *A, int64_t lda,
                      const floating *B, int64_t ldb, floating beta,
                      floating *C, int64_t ldc, int n_threads) noexcept nogil:
    if floating is float:
        fc_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, n_threads)
    else:
        fc_dgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, n_threads)


cdef inline int gemm_im2col(bint trans_a, bint trans_b, int64_t M, int64_t N, int64_t K,
                            floating alpha, const floating *A, int64_t lda,
                            const floating *x, const fc_im2col_t *geo, floating beta,
                            floating *C, int64_t ldc, int n_threads) noexcept nogil:
    """gemm with B the implicit column matrix of the image x (gemm.h); 0, or -1: no memory."""
    if floating is float:
        return fc_sgemm_im2col(trans_a, trans_b, M, N, K, alpha, A, lda, x, geo, beta, C, ldc,
                               n_threads)
    else:
        return fc_dgemm_im2col(trans_a, trans_b, M, N, K, alpha, A, lda, x, geo, beta, C, ldc,
                               n_threads)
