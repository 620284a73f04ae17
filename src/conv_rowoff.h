/* Forward convolution in the row-offset form (conv2d_im2col.pyx, _padded.pxd) without
 * packing, for layers with few output channels.
 *
 *     C[m*ldc + j] = sum over k < K of A[m*lda + k] * X[off[k] + j]
 *
 * for m < M and columns j < n of one image: X is the zero-padded image (or a column of it),
 * off[k] is tap k's offset in it, so every tap reads a contiguous run. The GEMM form packs
 * that run into its panels first; with M = 16 or 32 output channels each packed value feeds
 * only M multiply-adds, and the packing costs as much as they do. Here a tile of 8 rows x 48
 * columns keeps 24 vector accumulators, and each tap loads 3 runs of X where they lie and
 * broadcasts 8 weights, for 24 FMAs: bound by the FMA units, not by loads. Rows past M
 * repeat row M-1 and are not stored; columns past seg are masked.
 *
 * Each output is summed over k in order 0..K-1 in one accumulator lane: the result does not
 * depend on the tiling or the thread that ran a tile. (It differs in the last bits from the
 * GEMM form, which sums in blocks of K.) Only an AVX-512 body exists; callers use the GEMM
 * form elsewhere (fc_rowoff_available).
 */
#ifndef FASTCONV_CONV_ROWOFF_H
#define FASTCONV_CONV_ROWOFF_H
#include <stdint.h>
#include "cpu_dispatch.h"

enum { FC_RO_MR = 8, FC_RO_NV = 3, FC_RO_COLS = 16 * FC_RO_NV };

static inline int fc_rowoff_available(void) { return fc_cpu_target() == FC_CPU_AVX512; }

#if FC_CPU_X86
#include <immintrin.h>

static inline __attribute__((always_inline, target("avx512f"))) void
fc_rowoff_tile(const float *A, int64_t lda, int mr, const float *X, const int64_t *off,
               int64_t K, float *C, int64_t ldc, __mmask16 m0, __mmask16 m1, __mmask16 m2)
{
    __m512 c[FC_RO_MR][FC_RO_NV];
    const float *a[FC_RO_MR];
    for (int r = 0; r < FC_RO_MR; ++r) {
        a[r] = A + (r < mr ? r : mr - 1) * lda;
        for (int v = 0; v < FC_RO_NV; ++v)
            c[r][v] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < K; ++k) {
        const float *x = X + off[k];
        __m512 b0 = _mm512_maskz_loadu_ps(m0, x);
        __m512 b1 = _mm512_maskz_loadu_ps(m1, x + 16);
        __m512 b2 = _mm512_maskz_loadu_ps(m2, x + 32);
        for (int r = 0; r < FC_RO_MR; ++r) {
            __m512 w = _mm512_set1_ps(a[r][k]);
            c[r][0] = _mm512_fmadd_ps(w, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(w, b1, c[r][1]);
            c[r][2] = _mm512_fmadd_ps(w, b2, c[r][2]);
        }
    }
    for (int r = 0; r < FC_RO_MR; ++r) {   /* a constant trip count: c stays in registers */
        if (r >= mr)
            break;
        _mm512_mask_storeu_ps(C + r * ldc, m0, c[r][0]);
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c[r][1]);
        _mm512_mask_storeu_ps(C + r * ldc + 32, m2, c[r][2]);
    }
}

static inline __mmask16 fc_rowoff_mask(int64_t n) /* the first n (clipped to 0..16) lanes */
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* Columns [0, n) of one image: X and C point at its column 0. */
static __attribute__((target("avx512f"))) void
fc_rowoff_forward_f32(int64_t M, int64_t K, const float *A, int64_t lda, const float *X,
                      const int64_t *off, int64_t n, float *C, int64_t ldc)
{
    for (int64_t j = 0; j < n; j += FC_RO_COLS) {
        __mmask16 m0 = fc_rowoff_mask(n - j), m1 = fc_rowoff_mask(n - j - 16);
        __mmask16 m2 = fc_rowoff_mask(n - j - 32);
        for (int64_t m = 0; m < M; m += FC_RO_MR)
            fc_rowoff_tile(A + m * lda, lda, (int)(M - m < FC_RO_MR ? M - m : FC_RO_MR),
                           X + j, off, K, C + m * ldc + j, ldc, m0, m1, m2);
    }
}
#else
static void fc_rowoff_forward_f32(int64_t M, int64_t K, const float *A, int64_t lda,
                                  const float *X, const int64_t *off, int64_t n, float *C,
                                  int64_t ldc) {}
#endif

#endif
