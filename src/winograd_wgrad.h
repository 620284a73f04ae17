/* The weight gradient of winograd.h's F(2x2, 3x3) convolution (float32, AVX-512 or AVX2).
 *
 * With U = G g G^T and V_t = B^T d_t B as in the forward pass, Y_t = A^T (sum_c U * V_t) A
 * gives
 *     dU[k, c] = sum over tiles t of (A dY_t[k] A^T) * V_t[c],    dg[k, c] = G^T dU[k, c] G
 * (dY_t: the tile's 2x2 block of grad_out, zero past the output's edge): per position xi of
 * the 4x4 tile, dU[xi] (K x C) = Yt[xi] (K x tiles) @ V[xi]^T (tiles x C), a GEMM that
 * reduces over the tiles. Per block of FC_WN_TB tiles:
 * - V is transformed as in the forward pass, 16 channels x 16 tiles at a time, and stored
 *   transposed, Vt[xi][t][c], through a 16x16 register transpose;
 * - grad_out's tiles are loaded with the forward pass's runs (masked loads of two output
 *   rows, split into even and odd columns) and transformed, Yt[xi][k][t];
 * - an outer-product kernel adds Yt[xi] @ Vt[xi] into the caller's partial dU, 6 output
 *   channels x 64 input channels of it in 24 registers over the block's tiles (8 x 16 when
 *   the input channels fit one vector).
 * The caller sums fixed groups of images into separate partials and adds them in order, so
 * the result does not depend on the thread count. Channels are padded to CP (a multiple of
 * 16) inside Vt and dU.
 */
#ifndef FASTCONV_WINOGRAD_WGRAD_H
#define FASTCONV_WINOGRAD_WGRAD_H
#include "winograd.h"
#include "simd_transpose.h"

static inline int64_t fc_wn_cpad(int64_t C) { return (C + 15) / 16 * 16; }

/* dg[k, c] = G^T dU[k, c] G for k < K, c < C: dU is (16, K, CP), gw (K, C, 3, 3). */
static void fc_wn_wgrad_finish(const float *dU, int64_t K, int64_t C, int64_t k, float *gw)
{
    const int64_t CP = fc_wn_cpad(C);
    for (int64_t c = 0; c < C; ++c) {
        float d[4][4], p[3][4];
        for (int xi = 0; xi < 16; ++xi)
            d[xi / 4][xi % 4] = dU[(xi * K + k) * CP + c];
        for (int j = 0; j < 4; ++j) {
            p[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
            p[1][j] = 0.5f * (d[1][j] - d[2][j]);
            p[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
        }
        float *o = gw + (k * C + c) * 9;
        for (int i = 0; i < 3; ++i) {
            o[3 * i + 0] = p[i][0] + 0.5f * (p[i][1] + p[i][2]);
            o[3 * i + 1] = 0.5f * (p[i][1] - p[i][2]);
            o[3 * i + 2] = 0.5f * (p[i][1] + p[i][2]) + p[i][3];
        }
    }
}

#if FC_CPU_X86
/* The block of nv*16 tiles from t0: add its Yt[xi] @ Vt[xi] into dU (16, K, CP). gy is
 * grad_out of g's images. Vt: 16*TB*CP floats, Yt: 16*K*TB, tmp: 16*16*16. Returns 1 if
 * the block's grad_out holds a NaN or an infinity. */
static __attribute__((target("avx512f"))) int
fc_wn_wgrad_block(const fc_wn_geo *g, const float *xp, const float *gy, int64_t t0, int nv,
                  float *Vt, float *Yt, float *tmp, float *dU)
{
    const int64_t C = g->C, K = g->K, CP = fc_wn_cpad(C), Wq = g->Wq, TB = FC_WN_TB;
    const int64_t ld = g->ld, P = g->OH * g->OW, OW = g->OW;
    fc_wn_run runs[3][16];
    int nruns[3];
    for (int v = 0; v < nv; ++v)
        nruns[v] = fc_wn_runs(g, t0 + 16 * v, runs[v]);
    /* V, transposed: 16 channels x 16 tiles into tmp[xi][c][t], then each xi transposed */
    for (int v = 0; v < nv; ++v) {
        const fc_wn_run *ru = runs[v];
        int nr = nruns[v];
        for (int64_t c0 = 0; c0 < CP; c0 += 16) {
            for (int cc = 0; cc < 16; ++cc) {
                if (c0 + cc >= C) {
                    for (int xi = 0; xi < 16; ++xi)
                        _mm512_storeu_ps(tmp + (xi * 16 + cc) * 16, _mm512_setzero_ps());
                    continue;
                }
                fc_wn_input(xp + 4 * (c0 + cc) * ld, ld, Wq, ru, nr, tmp + cc * 16, 256);
            }
            for (int xi = 0; xi < 16; ++xi) {
                __m512 r[16];
                for (int i = 0; i < 16; ++i)
                    r[i] = _mm512_loadu_ps(tmp + (xi * 16 + i) * 16);
                fc_transpose16_ps(r);
                for (int i = 0; i < 16; ++i)
                    _mm512_storeu_ps(Vt + (xi * TB + 16 * v + i) * CP + c0, r[i]);
            }
        }
    }
    /* grad_out's tiles: A dY A^T */
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    __m512 bad = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const float *gk = gy + k * P;
        for (int v = 0; v < nv; ++v) {
            __m512 r0l = _mm512_setzero_ps(), r0h = r0l, r1l = r0l, r1h = r0l;
            for (int i = 0; i < nruns[v]; ++i) {
                const fc_wn_run *ru = &runs[v][i];
                const float *s = gk + ru->base;
                r0l = _mm512_mask_loadu_ps(r0l, (__mmask16)ru->row0, s);
                r0h = _mm512_mask_loadu_ps(r0h, (__mmask16)(ru->row0 >> 16), s + 16);
                r1l = _mm512_mask_loadu_ps(r1l, (__mmask16)ru->row1, s + OW);
                r1h = _mm512_mask_loadu_ps(r1h, (__mmask16)(ru->row1 >> 16), s + OW + 16);
            }
            __m512 a = _mm512_permutex2var_ps(r0l, ev, r0h);
            __m512 b = _mm512_permutex2var_ps(r0l, od, r0h);
            __m512 c = _mm512_permutex2var_ps(r1l, ev, r1h);
            __m512 d = _mm512_permutex2var_ps(r1l, od, r1h);
            bad = _mm512_add_ps(bad, _mm512_mul_ps(_mm512_setzero_ps(),
                                                   _mm512_add_ps(_mm512_add_ps(a, b),
                                                                 _mm512_add_ps(c, d))));
            __m512 rows[4][2] = {{a, b},
                                 {_mm512_add_ps(a, c), _mm512_add_ps(b, d)},
                                 {_mm512_sub_ps(a, c), _mm512_sub_ps(b, d)},
                                 {_mm512_sub_ps(_mm512_setzero_ps(), c),
                                  _mm512_sub_ps(_mm512_setzero_ps(), d)}};
            float *o = Yt + k * TB + 16 * v;
            for (int i = 0; i < 4; ++i) {
                __m512 p = rows[i][0], q = rows[i][1];
                _mm512_storeu_ps(o + (4 * i + 0) * K * TB, p);
                _mm512_storeu_ps(o + (4 * i + 1) * K * TB, _mm512_add_ps(p, q));
                _mm512_storeu_ps(o + (4 * i + 2) * K * TB, _mm512_sub_ps(p, q));
                _mm512_storeu_ps(o + (4 * i + 3) * K * TB, _mm512_sub_ps(_mm512_setzero_ps(), q));
            }
        }
    }
    if (_mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q))
        return 1;
    /* dU[xi] += Yt[xi] @ Vt[xi]: 6 output channels x up to 64 input channels per tile; 8 x 16
     * when the input channels fit one vector (6 accumulators leave the FMA units waiting on
     * their latency: measured 0.95x the time at C = 16, 0.85x at C = 8, the same sums) */
    if (CP == 16) {
        for (int xi = 0; xi < 16; ++xi)
            for (int64_t k0 = 0; k0 < K; k0 += 8)
                fc_wn_outer(Yt + (xi * K + k0) * TB, TB, K - k0 < 8 ? (int)(K - k0) : 8,
                            Vt + xi * TB * CP, CP, 16 * nv, dU + (xi * K + k0) * CP, CP, 8, 1,
                            1);
        return 0;
    }
    for (int xi = 0; xi < 16; ++xi)
        for (int64_t k0 = 0; k0 < K; k0 += 6) {
            int mr = K - k0 < 6 ? (int)(K - k0) : 6;
            const float *y0 = Yt + (xi * K + k0) * TB, *vt = Vt + xi * TB * CP;
            float *o = dU + (xi * K + k0) * CP;
            int64_t c0 = 0;
            for (; c0 + 64 <= CP; c0 += 64)
                fc_wn_outer(y0, TB, mr, vt + c0, CP, 16 * nv, o + c0, CP, 6, 4, 1);
            switch ((CP - c0) / 16) {
            case 3: fc_wn_outer(y0, TB, mr, vt + c0, CP, 16 * nv, o + c0, CP, 6, 3, 1); break;
            case 2: fc_wn_outer(y0, TB, mr, vt + c0, CP, 16 * nv, o + c0, CP, 6, 2, 1); break;
            case 1: fc_wn_outer(y0, TB, mr, vt + c0, CP, 16 * nv, o + c0, CP, 6, 1, 1); break;
            }
        }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * AVX2 + FMA: fc_wn_wgrad_block with 8-lane halves (the forward's fc_wn_run8 runs), 8x8
 * register transposes, and a 6 x 16 outer-product tile. Every sum is the AVX-512 block's, in
 * the same order, so both paths should give the same bits (not compared on one machine).
 * ------------------------------------------------------------------------------------------ */
/* v | the floats of d[0..8) whose bits are set (the rest read nothing) */
FC_WN_AVX2_INLINE __m256 fc_wn_or_load8(__m256 v, const float *d, unsigned bits)
{
    if (bits == 0xFF)
        return _mm256_or_ps(v, _mm256_loadu_ps(d));
    if (bits)
        return _mm256_or_ps(v, _mm256_maskload_ps(d, fc_wn_mask8(bits)));
    return v;
}

/* The even and odd floats of (u, w): 8 each */
FC_WN_AVX2_INLINE void fc_wn_split8(__m256 u, __m256 w, __m256 *ev, __m256 *od)
{
    __m256 e = _mm256_shuffle_ps(u, w, _MM_SHUFFLE(2, 0, 2, 0));
    __m256 o = _mm256_shuffle_ps(u, w, _MM_SHUFFLE(3, 1, 3, 1));
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* o[r][0 .. 16) += sum over k < K of a[r*lda + k] * b[k*ldb + 0 .. 16), rows r < mr of 6
 * (the sum formed from zero, then added), in named registers. */
FC_WN_AVX2_INLINE void fc_wn_outer8_6x2_acc(const float *a, int64_t lda, int mr, const float *b,
                                           int64_t ldb, int64_t K, float *o, int64_t ldo)
{
#define FC_WN_ROW(r) (a + (mr > (r) ? (r) : mr - 1) * lda)
    const float *a0 = FC_WN_ROW(0), *a1 = FC_WN_ROW(1), *a2 = FC_WN_ROW(2);
    const float *a3 = FC_WN_ROW(3), *a4 = FC_WN_ROW(4), *a5 = FC_WN_ROW(5);
#undef FC_WN_ROW
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < K; ++k) {
        __m256 b0 = _mm256_loadu_ps(b + k * ldb), b1 = _mm256_loadu_ps(b + k * ldb + 8), x;
        x = _mm256_broadcast_ss(a0 + k);
        c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + k);
        c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + k);
        c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + k);
        c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a4 + k);
        c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a5 + k);
        c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < mr; ++r)
        for (int j = 0; j < 2; ++j) {
            float *d = o + r * ldo + 8 * j;
            _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), acc[r][j]));
        }
}

static FC_WN_AVX2 int
fc_wn_wgrad_block_avx2(const fc_wn_geo *g, const float *xp, const float *gy, int64_t t0, int nv,
                       float *Vt, float *Yt, float *tmp, float *dU)
{
    const int64_t C = g->C, K = g->K, CP = fc_wn_cpad(C), Wq = g->Wq, TB = FC_WN_TB;
    const int64_t ld = g->ld, P = g->OH * g->OW, OW = g->OW;
    fc_wn_run8 runs[3][16];
    int nruns[3];
    for (int v = 0; v < nv; ++v)
        nruns[v] = fc_wn_runs8(g, t0 + 16 * v, runs[v]);
    /* V, transposed: 16 channels x 16 tiles into tmp[xi][c][t], then each xi transposed
     * as four 8x8 blocks */
    for (int v = 0; v < nv; ++v) {
        const fc_wn_run8 *ru = runs[v];
        int nr = nruns[v];
        for (int64_t c0 = 0; c0 < CP; c0 += 16) {
            for (int cc = 0; cc < 16; ++cc) {
                if (c0 + cc >= C) {
                    for (int xi = 0; xi < 16; ++xi) {
                        _mm256_storeu_ps(tmp + (xi * 16 + cc) * 16, _mm256_setzero_ps());
                        _mm256_storeu_ps(tmp + (xi * 16 + cc) * 16 + 8, _mm256_setzero_ps());
                    }
                    continue;
                }
                fc_wn_input8(xp + 4 * (c0 + cc) * ld, ld, Wq, ru, nr, tmp + cc * 16, 256);
            }
            for (int xi = 0; xi < 16; ++xi)
                for (int tb = 0; tb < 16; tb += 8)
                    for (int cb = 0; cb < 16; cb += 8) {
                        __m256 r[8];
                        for (int i = 0; i < 8; ++i)
                            r[i] = _mm256_loadu_ps(tmp + (xi * 16 + cb + i) * 16 + tb);
                        fc_transpose8_ps(r);
                        for (int i = 0; i < 8; ++i)
                            _mm256_storeu_ps(Vt + (xi * TB + 16 * v + tb + i) * CP + c0 + cb,
                                             r[i]);
                    }
        }
    }
    /* grad_out's tiles: A dY A^T */
    __m256 bad = _mm256_setzero_ps();
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const float *gk = gy + k * P;
        for (int v = 0; v < nv; ++v) {
            __m256 r0[4] = {zero, zero, zero, zero}, r1[4] = {zero, zero, zero, zero};
            for (int i = 0; i < nruns[v]; ++i) {
                const fc_wn_run8 *ru = &runs[v][i];
                const float *s = gk + ru->base;
                for (int j = 0; j < 4; ++j) {
                    r0[j] = fc_wn_or_load8(r0[j], s + 8 * j, ru->row0[j]);
                    r1[j] = fc_wn_or_load8(r1[j], s + OW + 8 * j, ru->row1[j]);
                }
            }
            for (int h = 0; h < 2; ++h) {
                __m256 a, b, c, d;
                fc_wn_split8(r0[2 * h], r0[2 * h + 1], &a, &b);
                fc_wn_split8(r1[2 * h], r1[2 * h + 1], &c, &d);
                bad = _mm256_add_ps(bad, _mm256_mul_ps(zero, _mm256_add_ps(_mm256_add_ps(a, b),
                                                                           _mm256_add_ps(c, d))));
                __m256 rows[4][2] = {{a, b},
                                     {_mm256_add_ps(a, c), _mm256_add_ps(b, d)},
                                     {_mm256_sub_ps(a, c), _mm256_sub_ps(b, d)},
                                     {_mm256_sub_ps(zero, c), _mm256_sub_ps(zero, d)}};
                float *o = Yt + k * TB + 16 * v + 8 * h;
                for (int i = 0; i < 4; ++i) {
                    __m256 p = rows[i][0], q = rows[i][1];
                    _mm256_storeu_ps(o + (4 * i + 0) * K * TB, p);
                    _mm256_storeu_ps(o + (4 * i + 1) * K * TB, _mm256_add_ps(p, q));
                    _mm256_storeu_ps(o + (4 * i + 2) * K * TB, _mm256_sub_ps(p, q));
                    _mm256_storeu_ps(o + (4 * i + 3) * K * TB, _mm256_sub_ps(zero, q));
                }
            }
        }
    }
    if (_mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q)))
        return 1;
    /* dU[xi] += Yt[xi] @ Vt[xi]: 6 output channels x 16 input channels per tile */
    for (int xi = 0; xi < 16; ++xi)
        for (int64_t k0 = 0; k0 < K; k0 += 6) {
            int mr = K - k0 < 6 ? (int)(K - k0) : 6;
            const float *y0 = Yt + (xi * K + k0) * TB, *vt = Vt + xi * TB * CP;
            float *o = dU + (xi * K + k0) * CP;
            for (int64_t c0 = 0; c0 < CP; c0 += 16)
                fc_wn_outer8_6x2_acc(y0, TB, mr, vt + c0, CP, 16 * nv, o + c0, CP);
        }
    return 0;
}
#else
static int fc_wn_wgrad_block(const fc_wn_geo *g, const float *xp, const float *gy, int64_t t0,
                             int nv, float *Vt, float *Yt, float *tmp, float *dU) { return 1; }
static int fc_wn_wgrad_block_avx2(const fc_wn_geo *g, const float *xp, const float *gy,
                                  int64_t t0, int nv, float *Vt, float *Yt, float *tmp,
                                  float *dU) { return 1; }
#endif

#endif
