/* Weight gradient of a stride-1 convolution in the row-offset form (conv2d_im2col.pyx,
 * _padded.pxd) as register-blocked dot products, without packing.
 *
 *     gw[co*ldw + r] += sum over pieces p, t < p.len of
 *                       gy[co*ldg + p.g + t] * x[p.x + off[r] + t]
 *
 * The GEMM form (gy' @ cols'^T) must transpose every tap's run of pixels into its panels,
 * and with few output channels (16 in resnet20's first stage) that packing costs more than
 * the multiply-adds it feeds. Here both operands are read where they lie: a block of 4
 * output channels x 6 taps keeps 24 vector accumulators along t, each step loading 4 rows of
 * gy and 6 (unaligned) runs of x for 24 FMAs, so it is bound by the FMA units, not loads.
 *
 * Rows past the end of a block (co >= nco, r >= nr) repeat the block's last row and are not
 * stored: edges cost wasted FMAs, never a branch in the loop. Each accumulator is reduced
 * lanes-first in a fixed order and added once per call, so results do not depend on which
 * thread ran a block. Lengths are multiples of the lane count (the caller zero-pads gy).
 * AVX-512 and AVX2 bodies (AVX2: the block as two halves of 2 output channels x 6 taps, 12
 * accumulators of 8 or 4 lanes, reduced in a fixed order of their own); callers use the
 * GEMM form elsewhere (fc_wg_available).
 */
#ifndef FASTCONV_WGRAD_DOT_H
#define FASTCONV_WGRAD_DOT_H
#include <stdint.h>
#include "cpu_dispatch.h"

enum { FC_WG_CO = 4, FC_WG_R = 6, FC_WG_ALIGN = 16 };

typedef struct { int64_t x, g, len; } fc_wg_piece;

static inline int fc_wg_available(void)
{
    return fc_cpu_target() == FC_CPU_AVX512 || fc_cpu_target() == FC_CPU_AVX2;
}

/* Whether the AVX-512 body (4 x 6 blocks of 16 lanes) runs, not the AVX2 one. */
static inline int fc_wg_wide(void) { return fc_cpu_target() == FC_CPU_AVX512; }

#if FC_CPU_X86
#define FC_WG_DEFINE(SFX, T, V, LANES, LOADU, FMADD, ZERO, REDUCE)                            \
    static __attribute__((target("avx512f"))) void fc_wg_block512_##SFX(                    \
        const T *x, const T *gy, int64_t ldg, const int64_t *off, const fc_wg_piece *pc,     \
        int64_t npieces, int nco, int nr, T *gw, int64_t ldw)                                \
    {                                                                                        \
        V acc[FC_WG_CO][FC_WG_R];                                                            \
        for (int c = 0; c < FC_WG_CO; ++c)                                                   \
            for (int k = 0; k < FC_WG_R; ++k)                                                \
                acc[c][k] = ZERO();                                                          \
        for (int64_t p = 0; p < npieces; ++p) {                                              \
            const T *g[FC_WG_CO], *xr[FC_WG_R];                                              \
            for (int c = 0; c < FC_WG_CO; ++c)                                               \
                g[c] = gy + (c < nco ? c : nco - 1) * ldg + pc[p].g;                         \
            for (int k = 0; k < FC_WG_R; ++k)                                                \
                xr[k] = x + pc[p].x + off[k < nr ? k : nr - 1];                              \
            for (int64_t t = 0; t < pc[p].len; t += LANES) {                                 \
                V g0 = LOADU(g[0] + t), g1 = LOADU(g[1] + t);                                \
                V g2 = LOADU(g[2] + t), g3 = LOADU(g[3] + t);                                \
                for (int k = 0; k < FC_WG_R; ++k) {                                          \
                    V xv = LOADU(xr[k] + t);                                                 \
                    acc[0][k] = FMADD(g0, xv, acc[0][k]);                                    \
                    acc[1][k] = FMADD(g1, xv, acc[1][k]);                                    \
                    acc[2][k] = FMADD(g2, xv, acc[2][k]);                                    \
                    acc[3][k] = FMADD(g3, xv, acc[3][k]);                                    \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        for (int c = 0; c < nco; ++c)                                                        \
            for (int k = 0; k < nr; ++k)                                                     \
                gw[c * ldw + k] += REDUCE(acc[c][k]);                                        \
    }

FC_WG_DEFINE(f32, float, __m512, 16, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_setzero_ps,
             _mm512_reduce_add_ps)
FC_WG_DEFINE(f64, double, __m512d, 8, _mm512_loadu_pd, _mm512_fmadd_pd, _mm512_setzero_pd,
             _mm512_reduce_add_pd)
#undef FC_WG_DEFINE

/* AVX2 lane sums in a fixed order: upper half + lower half, then pairs */
static inline __attribute__((always_inline, target("avx2,fma"))) float fc_wg_sum8(__m256 v)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
}
static inline __attribute__((always_inline, target("avx2,fma"))) double fc_wg_sum4(__m256d v)
{
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

#define FC_WG_DEFINE2(SFX, T, V, LANES, LOADU, FMADD, ZERO, REDUCE)                           \
    static __attribute__((target("avx2,fma"))) void fc_wg_block256_##SFX(                    \
        const T *x, const T *gy, int64_t ldg, const int64_t *off, const fc_wg_piece *pc,     \
        int64_t npieces, int nco, int nr, T *gw, int64_t ldw)                                \
    {                                                                                        \
        for (int c0 = 0; c0 < nco; c0 += 2) {                                                \
            V acc[2][FC_WG_R];                                                               \
            for (int c = 0; c < 2; ++c)                                                      \
                for (int k = 0; k < FC_WG_R; ++k)                                            \
                    acc[c][k] = ZERO();                                                      \
            for (int64_t p = 0; p < npieces; ++p) {                                          \
                const T *g0 = gy + c0 * ldg + pc[p].g;                                       \
                const T *g1 = gy + (c0 + 1 < nco ? c0 + 1 : c0) * ldg + pc[p].g;             \
                const T *xr[FC_WG_R];                                                        \
                for (int k = 0; k < FC_WG_R; ++k)                                            \
                    xr[k] = x + pc[p].x + off[k < nr ? k : nr - 1];                          \
                for (int64_t t = 0; t < pc[p].len; t += LANES) {                             \
                    V a = LOADU(g0 + t), b = LOADU(g1 + t);                                  \
                    for (int k = 0; k < FC_WG_R; ++k) {                                      \
                        V xv = LOADU(xr[k] + t);                                             \
                        acc[0][k] = FMADD(a, xv, acc[0][k]);                                 \
                        acc[1][k] = FMADD(b, xv, acc[1][k]);                                 \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
            for (int c = 0; c < 2 && c0 + c < nco; ++c)                                      \
                for (int k = 0; k < nr; ++k)                                                 \
                    gw[(c0 + c) * ldw + k] += REDUCE(acc[c][k]);                             \
        }                                                                                    \
    }

FC_WG_DEFINE2(f32, float, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps,
              fc_wg_sum8)
FC_WG_DEFINE2(f64, double, __m256d, 4, _mm256_loadu_pd, _mm256_fmadd_pd, _mm256_setzero_pd,
              fc_wg_sum4)
#undef FC_WG_DEFINE2

/* gw[co*ldw + r] += ... for co < nco <= FC_WG_CO, r < nr <= FC_WG_R (see the top) */
static void fc_wg_block_f32(const float *x, const float *gy, int64_t ldg, const int64_t *off,
                            const fc_wg_piece *pc, int64_t npieces, int nco, int nr,
                            float *gw, int64_t ldw)
{
    if (fc_cpu_target() == FC_CPU_AVX512)
        fc_wg_block512_f32(x, gy, ldg, off, pc, npieces, nco, nr, gw, ldw);
    else
        fc_wg_block256_f32(x, gy, ldg, off, pc, npieces, nco, nr, gw, ldw);
}
static void fc_wg_block_f64(const double *x, const double *gy, int64_t ldg,
                            const int64_t *off, const fc_wg_piece *pc, int64_t npieces,
                            int nco, int nr, double *gw, int64_t ldw)
{
    if (fc_cpu_target() == FC_CPU_AVX512)
        fc_wg_block512_f64(x, gy, ldg, off, pc, npieces, nco, nr, gw, ldw);
    else
        fc_wg_block256_f64(x, gy, ldg, off, pc, npieces, nco, nr, gw, ldw);
}
#else
static void fc_wg_block_f32(const float *x, const float *gy, int64_t ldg, const int64_t *off,
                            const fc_wg_piece *pc, int64_t npieces, int nco, int nr,
                            float *gw, int64_t ldw) {}
static void fc_wg_block_f64(const double *x, const double *gy, int64_t ldg,
                            const int64_t *off, const fc_wg_piece *pc, int64_t npieces,
                            int nco, int nr, double *gw, int64_t ldw) {}
#endif

#endif
