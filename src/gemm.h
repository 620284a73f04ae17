/* fastconv's GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, any leading dimensions.
 *
 * op(A) is M x K (A is M x K, or K x M when trans_a), op(B) is K x N (B is K x N, or N x K
 * when trans_b). beta == 0 means C is overwritten without being read (NaN in C is ignored),
 * as in BLAS. M, N or K == 0 is valid (K == 0 scales C by beta).
 *
 * n_threads == 1 runs on the calling thread and opens no OpenMP region, so it is safe to call
 * from inside an outer parallel loop. n_threads > 1 splits the OUTPUT into tiles (disjoint
 * writes); every element of C is reduced over K in the same fixed order whatever the thread
 * count, so results are bit-identical for any n_threads.
 *
 * Packing buffers are thread-local and grow-only (no per-call allocation or first-touch cost).
 * The micro-kernel is chosen once at run time: AVX-512F, AVX2+FMA, or portable C.
 */
#ifndef FASTCONV_GEMM_H
#define FASTCONV_GEMM_H
#include <stdint.h>

void fc_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc, int n_threads);
void fc_dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
              double *C, int64_t ldc, int n_threads);

/* The column matrix of one image, for a GEMM whose B operand is never materialised. With x
 * the image (C, H, W), B is the (C*kh*kw) x (rows*OW) im2col matrix of output rows oh0 on:
 *     B[(c*kh + i)*kw + j, q] = x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]  (0 outside x),
 *     oh = oh0 + q / OW, ow = q % OW.
 * fc_?gemm_im2col(..., x, geo, ...) computes exactly what fc_?gemm computes on that explicit
 * matrix (op(B) = B, or B^T when trans_b), packing B's panels straight from x. Returns 0, or
 * -1 when a packing buffer cannot be allocated (C is then unspecified).
 *
 * Row-offset form, when rowoff != NULL (the other fields are then unused): B is the matrix
 *     B[r, t] = x[rowoff[r] + (t / seg) * segstride + t % seg],
 * every row a contiguous run of x per segment of seg columns. A stride-1 convolution over a
 * zero-padded image (C, Hp, Wp), computed on the output grid of padded width OH x Wp, has
 * rowoff[(c*kh + i)*kw + j] = c*Hp*Wp + i*dh*Wp + j*dw; segments lay several images end to
 * end along t (segstride apart in x). */
typedef struct {
    int64_t C, H, W, OW, oh0;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    const int64_t *rowoff;
    int64_t seg, segstride;
} fc_im2col_t;

int fc_sgemm_im2col(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *x, const fc_im2col_t *geo,
                    float beta, float *C, int64_t ldc, int n_threads);
int fc_dgemm_im2col(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                    const double *A, int64_t lda, const double *x, const fc_im2col_t *geo,
                    double beta, double *C, int64_t ldc, int n_threads);

/* Comma-separated code paths compiled in, best first, e.g. "avx512f,avx2,generic". */
const char *fc_gemm_compiled_targets(void);
/* The code path this CPU runs ("avx512f", "avx2" or "generic"). */
const char *fc_gemm_active_target(void);

#endif
