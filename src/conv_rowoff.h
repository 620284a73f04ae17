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

/* ------------------------------------------------------------------------------------------
 * The row-offset form without its junk columns (AVX-512), for small planes where much of
 * the padded-width grid would be junk (lenet_c2: 4 junk columns per 10 real ones).
 *
 * The columns are the real outputs of a chunk of images, each image's P = OH*OW of them
 * rounded up to Pv (a multiple of 16) so that a vector of 16 never spans two images:
 * column u = n*Pv + oh*OW + ow, and tap k of it reads X[off[k] + n*S + oh*Wp + ow] (X: the
 * chunk's padded images, S apart). The 16 reads of a vector lie in a window of at most 32
 * floats of one image (its rows are Wp apart, the gaps Wp - OW): two loads and one
 * two-source permute gather them (masked loads per row, 9 per tap for lenet_c2, ran at half
 * the padded-width form's speed on a Zen 4). An image's outputs are contiguous in each
 * channel plane: one masked store per vector. Weights come from a packed copy, A8[k*8 + r]
 * for rows m + r of a tile, one pointer for a tap's 8 broadcasts. Each output is the same
 * sum over k in the same order as in fc_rowoff_tile: the same bits as the padded-width form.
 * ------------------------------------------------------------------------------------------ */
#if FC_CPU_X86
/* A vector of 16 columns: its window (offset of its first read for tap 0), where each lane
 * reads in it, and its outputs (offset in channel 0, lanes). */
typedef struct { int64_t x, y; __m512i idx; __mmask16 ym; } fc_rr_vec;

static inline int fc_rowruns_available(void) { return fc_cpu_target() == FC_CPU_AVX512; }

/* Whether a vector's reads fit a window of 32 floats: it spans at most ceil(15 / OW) + 1
 * rows, with a gap of Wp - OW between each two. */
static inline int fc_rowruns_fits(int64_t OW, int64_t Wp)
{
    return OW > 0 && 15 + (15 + OW - 1) / OW * (Wp - OW) <= 31;
}

/* Columns per image: P rounded up to the lane count. */
static inline int64_t fc_rowruns_cols(int64_t P) { return (P + 15) / 16 * 16; }

static __attribute__((target("avx512f"))) void
fc_rr_plan(int64_t u0, int64_t P, int64_t OW, int64_t Wp, int64_t S, int64_t ys, fc_rr_vec *v)
{
    const int64_t Pv = fc_rowruns_cols(P), n = u0 / Pv, r0 = u0 - n * Pv;
    const int64_t x0 = r0 / OW * Wp + r0 % OW;      /* lane 0's read in its padded image */
    int32_t idx[16];
    v->x = n * S + x0;
    v->y = n * ys + r0;
    v->ym = 0;
    for (int l = 0; l < 16; ++l) {
        int64_t r = r0 + l;
        idx[l] = 0;
        if (r < P) {
            idx[l] = (int32_t)(r / OW * Wp + r % OW - x0);
            v->ym |= (__mmask16)(1u << l);
        }
    }
    v->idx = _mm512_loadu_si512(idx);
}

/* Rows m .. m + mr - 1 (mr <= 8; A8: their packed weights) of the 3 vectors v, stored at
 * Y + r*P + v.y (+ bias[r]). */
static inline __attribute__((always_inline, target("avx512f"))) void
fc_rr_tile(const float *A8, int mr, const float *X, const int64_t *off, int64_t K,
           const fc_rr_vec *v, float *Y, int64_t P, const float *bias)
{
    __m512 c[FC_RO_MR][FC_RO_NV];
    const __m512i i0 = v[0].idx, i1 = v[1].idx, i2 = v[2].idx;
    const int64_t x0 = v[0].x, x1 = v[1].x, x2 = v[2].x;
    for (int r = 0; r < FC_RO_MR; ++r)
        for (int q = 0; q < FC_RO_NV; ++q)
            c[r][q] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const float *xk = X + off[k], *a = A8 + k * FC_RO_MR;
        __m512 b0 = _mm512_permutex2var_ps(_mm512_loadu_ps(xk + x0), i0,
                                           _mm512_loadu_ps(xk + x0 + 16));
        __m512 b1 = _mm512_permutex2var_ps(_mm512_loadu_ps(xk + x1), i1,
                                           _mm512_loadu_ps(xk + x1 + 16));
        __m512 b2 = _mm512_permutex2var_ps(_mm512_loadu_ps(xk + x2), i2,
                                           _mm512_loadu_ps(xk + x2 + 16));
        for (int r = 0; r < FC_RO_MR; ++r) {
            __m512 w = _mm512_set1_ps(a[r]);
            c[r][0] = _mm512_fmadd_ps(w, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(w, b1, c[r][1]);
            c[r][2] = _mm512_fmadd_ps(w, b2, c[r][2]);
        }
    }
    for (int r = 0; r < FC_RO_MR; ++r) {
        if (r >= mr)
            break;
        for (int q = 0; q < FC_RO_NV; ++q)
            _mm512_mask_storeu_ps(Y + r * P + v[q].y, v[q].ym,
                                  bias ? _mm512_add_ps(c[r][q], _mm512_set1_ps(bias[r]))
                                       : c[r][q]);
    }
}

/* The convolution of columns [u0, u1) (u1 a multiple of 16 or the chunk's last) of a chunk
 * of images for output channels [0, M): A8 the weights packed by fc_rowruns_pack; X the
 * chunk's padded images, S apart, followed by at least 32 floats that may be read, not
 * used; off the K tap offsets; Y the chunk's first image, channel planes P apart, images
 * ys apart; bias NULL or M values. */
static __attribute__((target("avx512f"))) void
fc_rowruns_forward_f32(int64_t M, int64_t K, const float *A8, const float *X,
                       const int64_t *off, int64_t u0, int64_t u1, int64_t P, int64_t OW,
                       int64_t Wp, int64_t S, float *Y, int64_t ys, const float *bias)
{
    for (int64_t u = u0; u < u1; u += FC_RO_COLS) {
        fc_rr_vec v[FC_RO_NV];
        for (int q = 0; q < FC_RO_NV; ++q) {
            if (u + 16 * q < u1) {
                fc_rr_plan(u + 16 * q, P, OW, Wp, S, ys, &v[q]);
            } else {                   /* past the range: reads vector 0's, stores nothing */
                v[q] = v[0];
                v[q].ym = 0;
            }
        }
        for (int64_t m = 0; m < M; m += FC_RO_MR)
            fc_rr_tile(A8 + m * K, (int)(M - m < FC_RO_MR ? M - m : FC_RO_MR), X, off, K, v,
                       Y + m * P, P, bias ? bias + m : NULL);
    }
}
#else
static inline int fc_rowruns_available(void) { return 0; }
static inline int fc_rowruns_fits(int64_t OW, int64_t Wp) { return 0; }
static inline int64_t fc_rowruns_cols(int64_t P) { return P; }
static void fc_rowruns_forward_f32(int64_t M, int64_t K, const float *A8, const float *X,
                                   const int64_t *off, int64_t u0, int64_t u1, int64_t P,
                                   int64_t OW, int64_t Wp, int64_t S, float *Y, int64_t ys,
                                   const float *bias) {}
#endif

/* A8[(m/8)*8*K + k*8 + r] = A[(m + r)*lda + k] for tiles of 8 rows m (rows past M repeat
 * row M - 1): fc_rowruns_forward_f32's weights. A8 holds ceil(M/8)*8*K floats. */
static void fc_rowruns_pack(int64_t M, int64_t K, const float *A, int64_t lda, float *A8)
{
    for (int64_t m = 0; m < M; m += FC_RO_MR)
        for (int64_t k = 0; k < K; ++k)
            for (int r = 0; r < FC_RO_MR; ++r) {
                int64_t row = m + r < M ? m + r : M - 1;
                A8[m * K + k * FC_RO_MR + r] = A[row * lda + k];
            }
}

#endif
