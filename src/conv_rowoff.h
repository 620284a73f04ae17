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
 * GEMM form, which sums in blocks of K.) AVX-512 and AVX2 bodies (AVX2: tiles of 4 rows x 24
 * columns, 12 accumulators, the same sums in the same order: the same bits expected, not
 * compared on one machine); callers use
 * the GEMM form elsewhere (fc_rowoff_available).
 */
#ifndef FASTCONV_CONV_ROWOFF_H
#define FASTCONV_CONV_ROWOFF_H
#include <stdint.h>
#include "cpu_dispatch.h"

enum { FC_RO_MR = 8, FC_RO_NV = 3, FC_RO_COLS = 16 * FC_RO_NV };

static inline int fc_rowoff_available(void)
{
    return fc_cpu_target() == FC_CPU_AVX512 || fc_cpu_target() == FC_CPU_AVX2;
}

/* Output channels per tile of the active body: 8 (AVX-512) or 4 (AVX2). */
static inline int fc_rowoff_rows(void) { return fc_cpu_target() == FC_CPU_AVX512 ? 8 : 4; }

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

/* AVX2: a tile of 4 rows x 24 columns (n of them valid, n > 0); FULL: n >= 24, no masks.
 * Partial vectors load through masks and store lane by lane (Zen runs AVX2 masked stores as
 * microcode). */
static inline __attribute__((always_inline, target("avx2,fma"))) void
fc_rowoff_tile8(const float *A, int64_t lda, int mr, const float *X, const int64_t *off,
                int64_t K, float *C, int64_t ldc, int64_t n, const int FULL)
{
    const float *a0 = A, *a1 = A + (mr > 1 ? 1 : 0) * lda;
    const float *a2 = A + (mr > 2 ? 2 : mr - 1) * lda, *a3 = A + (mr > 3 ? 3 : mr - 1) * lda;
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_set1_epi32(-1), m1 = m0, m2 = m0;
    if (!FULL) {
        m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 8 ? 8 : n)), iota);
        m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 16 ? 8 : n - 8)), iota);
        m2 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 24 ? 8 : n - 16)), iota);
    }
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    for (int64_t k = 0; k < K; ++k) {
        const float *x = X + off[k];
        __m256 b0, b1, b2, w;
        if (FULL) {
            b0 = _mm256_loadu_ps(x);
            b1 = _mm256_loadu_ps(x + 8);
            b2 = _mm256_loadu_ps(x + 16);
        } else {
            b0 = _mm256_maskload_ps(x, m0);
            b1 = _mm256_maskload_ps(x + 8, m1);
            b2 = _mm256_maskload_ps(x + 16, m2);
        }
        w = _mm256_broadcast_ss(a0 + k);
        c00 = _mm256_fmadd_ps(w, b0, c00); c01 = _mm256_fmadd_ps(w, b1, c01);
        c02 = _mm256_fmadd_ps(w, b2, c02);
        w = _mm256_broadcast_ss(a1 + k);
        c10 = _mm256_fmadd_ps(w, b0, c10); c11 = _mm256_fmadd_ps(w, b1, c11);
        c12 = _mm256_fmadd_ps(w, b2, c12);
        w = _mm256_broadcast_ss(a2 + k);
        c20 = _mm256_fmadd_ps(w, b0, c20); c21 = _mm256_fmadd_ps(w, b1, c21);
        c22 = _mm256_fmadd_ps(w, b2, c22);
        w = _mm256_broadcast_ss(a3 + k);
        c30 = _mm256_fmadd_ps(w, b0, c30); c31 = _mm256_fmadd_ps(w, b1, c31);
        c32 = _mm256_fmadd_ps(w, b2, c32);
    }
    __m256 acc[4][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
    for (int r = 0; r < 4; ++r) {
        if (r >= mr)
            break;
        for (int v = 0; v < 3; ++v) {
            float *d = C + r * ldc + 8 * v;
            int64_t cnt = n - 8 * v;
            if (FULL || cnt >= 8) {
                _mm256_storeu_ps(d, acc[r][v]);
            } else if (cnt > 0) {
                float t[8];
                _mm256_storeu_ps(t, acc[r][v]);
                for (int64_t i = 0; i < cnt; ++i)
                    d[i] = t[i];
            }
        }
    }
}

static __attribute__((target("avx2,fma"))) void
fc_rowoff_forward_f32_avx2(int64_t M, int64_t K, const float *A, int64_t lda, const float *X,
                           const int64_t *off, int64_t n, float *C, int64_t ldc)
{
    for (int64_t j = 0; j < n; j += 24)
        for (int64_t m = 0; m < M; m += 4) {
            int mr = (int)(M - m < 4 ? M - m : 4);
            if (n - j >= 24)
                fc_rowoff_tile8(A + m * lda, lda, mr, X + j, off, K, C + m * ldc + j, ldc,
                                n - j, 1);
            else
                fc_rowoff_tile8(A + m * lda, lda, mr, X + j, off, K, C + m * ldc + j, ldc,
                                n - j, 0);
        }
}

static __attribute__((target("avx512f"))) void
fc_rowoff_forward_f32_avx512(int64_t M, int64_t K, const float *A, int64_t lda,
                             const float *X, const int64_t *off, int64_t n, float *C,
                             int64_t ldc)
{
    for (int64_t j = 0; j < n; j += FC_RO_COLS) {
        __mmask16 m0 = fc_rowoff_mask(n - j), m1 = fc_rowoff_mask(n - j - 16);
        __mmask16 m2 = fc_rowoff_mask(n - j - 32);
        for (int64_t m = 0; m < M; m += FC_RO_MR)
            fc_rowoff_tile(A + m * lda, lda, (int)(M - m < FC_RO_MR ? M - m : FC_RO_MR),
                           X + j, off, K, C + m * ldc + j, ldc, m0, m1, m2);
    }
}

/* Columns [0, n) of one image: X and C point at its column 0. */
static void fc_rowoff_forward_f32(int64_t M, int64_t K, const float *A, int64_t lda,
                                  const float *X, const int64_t *off, int64_t n, float *C,
                                  int64_t ldc)
{
    if (fc_cpu_target() == FC_CPU_AVX512)
        fc_rowoff_forward_f32_avx512(M, K, A, lda, X, off, n, C, ldc);
    else
        fc_rowoff_forward_f32_avx2(M, K, A, lda, X, off, n, C, ldc);
}
#else
static void fc_rowoff_forward_f32(int64_t M, int64_t K, const float *A, int64_t lda,
                                  const float *X, const int64_t *off, int64_t n, float *C,
                                  int64_t ldc) {}
#endif

#endif
