/* Float32 average pooling kernels with the run-time ISA choice of _pool_max.h, included
 * from src/pool2d.pyx: the global average (adaptive average to (1, 1)) and 2x2 stride-2
 * windows, forward and backward, whole planes at a time.
 *
 * fc_plane_means_f32(x, P, n, out): out[p] = (sum of the n values of plane p) / H / W for
 * P consecutive planes (the caller passes H and W). With AVX-512 a plane is summed in two
 * 16-lane accumulators (the masked tail included), added, and the vectors of 16 planes are
 * reduced together, each in one fixed order (fc_lane_sums16); the other paths use the 8
 * fixed partial sums of pool2d.pyx's _plane_sum (with AVX2, 8 planes at a time: the same
 * sums). Either way a plane's value does not depend on how the planes are split over threads
 * or grouped. Small planes (global
 * pooling after a CNN's last block: 8x8, 4x4, 7x7) make the per-plane overhead the cost, so
 * a call handles a block of planes.
 */
#ifndef FC_POOL_AVG_H
#define FC_POOL_AVG_H
#include "_pool_max.h"
#include "simd_transpose.h"

static float fc_plane_sum8_f32(const float *x, Py_ssize_t n)
{
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
    Py_ssize_t i, nv = n - n % 8;
    int l;
    for (i = 0; i < nv; i += 8)
        for (l = 0; l < 8; l++)
            lane[l] += x[i + l];
    for (i = nv; i < n; i++)
        lane[i - nv] += x[i];
    for (l = 0; l < 8; l++)
        s += lane[l];
    return s;
}

#if FC_POOL_X86
/* Lane sums of 16 vectors: out lane j = the sum of v[j]'s 16 lanes, added in one fixed tree
 * ((l0 + l2) + (l1 + l3) within each 128-bit quarter, then (q0 + q1) + (q2 + q3)) whatever
 * the other 15 vectors hold: 30 shuffles and 15 adds for 16 sums, where a horizontal
 * reduction per vector is a serial chain of 8 of each. */
static inline __attribute__((always_inline)) FC_AVX512 __m512 fc_lane_sums16(const __m512 *v)
{
    __m512 w[4], y01, y23;
    for (int g = 0; g < 4; g++) {
        const __m512 *u = v + 4 * g;
        __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(u[0], u[1]), _mm512_unpackhi_ps(u[0], u[1]));
        __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(u[2], u[3]), _mm512_unpackhi_ps(u[2], u[3]));
        w[g] = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
    }   /* quarter q of w[g], element k: quarter q's sum of v[4g + k] */
    y01 = _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
    y23 = _mm512_add_ps(_mm512_shuffle_f32x4(w[2], w[3], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_f32x4(w[2], w[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(y01, y23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(y01, y23, _MM_SHUFFLE(3, 1, 3, 1)));
}

static FC_AVX512 void fc_plane_means_avx512(const float *x, Py_ssize_t P, Py_ssize_t n,
                                            float *out, float H, float W)
{
    Py_ssize_t nv = n - n % 32, rem = n - nv;
    __mmask16 t0 = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1);
    __mmask16 t1 = rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1) : 0;
    const __m512 vh = _mm512_set1_ps(H), vw = _mm512_set1_ps(W);
    __m512 v[16];
    for (Py_ssize_t p0 = 0; p0 < P; p0 += 16) {
        int m = P - p0 < 16 ? (int)(P - p0) : 16;
        for (int j = 0; j < 16; j++) {   /* planes past the end: zero vectors */
            const float *xp = x + (p0 + j) * n;
            __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
            if (j < m) {
                a = _mm512_maskz_loadu_ps(t0, xp + nv);
                b = _mm512_maskz_loadu_ps(t1, xp + nv + 16);
                for (Py_ssize_t i = 0; i < nv; i += 32) {
                    a = _mm512_add_ps(a, _mm512_loadu_ps(xp + i));
                    b = _mm512_add_ps(b, _mm512_loadu_ps(xp + i + 16));
                }
            }
            v[j] = _mm512_add_ps(a, b);
        }
        _mm512_mask_storeu_ps(out + p0, (__mmask16)((1u << m) - 1),
                              _mm512_div_ps(_mm512_div_ps(fc_lane_sums16(v), vh), vw));
    }
}
#endif

#if FC_POOL_X86
/* fc_plane_sum8_f32 for 8 planes at once, bit for bit: plane j's 8 partial sums are the lanes
 * of acc[j] (8 independent add chains, where one plane at a time is a serial chain), then an
 * 8x8 transpose and the lanes added in order 0..7 from 0. */
static FC_AVX2 void fc_plane_means8_avx2(const float *x, Py_ssize_t n, float *out, float H,
                                         float W)
{
    Py_ssize_t nv = n - n % 8, rem = n - nv;
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0;
    __m256 a7 = a0;
    for (Py_ssize_t i = 0; i < nv; i += 8) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + n + i));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + 2 * n + i));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + 3 * n + i));
        a4 = _mm256_add_ps(a4, _mm256_loadu_ps(x + 4 * n + i));
        a5 = _mm256_add_ps(a5, _mm256_loadu_ps(x + 5 * n + i));
        a6 = _mm256_add_ps(a6, _mm256_loadu_ps(x + 6 * n + i));
        a7 = _mm256_add_ps(a7, _mm256_loadu_ps(x + 7 * n + i));
    }
    __m256 v[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    if (rem)   /* the tail's lanes; the others add +0 (a -0 lane turns +0, as the sum does) */
        for (int j = 0; j < 8; ++j)
            v[j] = _mm256_add_ps(v[j], _mm256_maskload_ps(x + j * n + nv, tail));
    fc_transpose8_ps(v);   /* v[l] lane j: plane j's partial sum l */
    __m256 sum = _mm256_setzero_ps();
    for (int k = 0; k < 8; ++k)
        sum = _mm256_add_ps(sum, v[k]);
    _mm256_storeu_ps(out, _mm256_div_ps(_mm256_div_ps(sum, _mm256_set1_ps(H)),
                                        _mm256_set1_ps(W)));
}
#endif

static void fc_plane_means_f32(const float *x, Py_ssize_t P, Py_ssize_t n, float *out,
                               float H, float W)
{
#if FC_POOL_X86
    if (fc_pool_target() == FC_POOL_AVX512) {
        fc_plane_means_avx512(x, P, n, out, H, W);
        return;
    }
    if (fc_pool_target() == FC_POOL_AVX2) {
        Py_ssize_t p8 = P - P % 8;
        for (Py_ssize_t p = 0; p < p8; p += 8)
            fc_plane_means8_avx2(x + p * n, n, out + p, H, W);
        for (Py_ssize_t p = p8; p < P; p++)
            out[p] = fc_plane_sum8_f32(x + p * n, n) / H / W;
        return;
    }
#endif
    for (Py_ssize_t p = 0; p < P; p++)
        out[p] = fc_plane_sum8_f32(x + p * n, n) / H / W;
}

/* fc_plane_fill_f32(gy, P, n, gx, H, W): gx[p * n + i] = gy[p] / H / W for i < n and the P
 * planes p, the backward of the global average: whole planes of broadcast stores, a block of
 * planes per call (the plain per-plane loop ran at 10 GB/s on 8x8 planes). */
#if FC_POOL_X86
static FC_AVX2 void fc_plane_fill_avx2(const float *gy, Py_ssize_t P, Py_ssize_t n, float *gx,
                                       float H, float W)
{
    Py_ssize_t nv = n - n % 8;
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - nv)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (Py_ssize_t p = 0; p < P; p++, gx += n) {
        const __m256 v = _mm256_set1_ps(gy[p] / H / W);
        for (Py_ssize_t i = 0; i < nv; i += 8)
            _mm256_storeu_ps(gx + i, v);
        if (nv < n)
            _mm256_maskstore_ps(gx + nv, tail, v);
    }
}
#endif

static void fc_plane_fill_f32(const float *gy, Py_ssize_t P, Py_ssize_t n, float *gx, float H,
                              float W)
{
#if FC_POOL_X86
    if (fc_pool_target() <= FC_POOL_AVX2) {   /* AVX-512 too: the 8-wide body is enough */
        fc_plane_fill_avx2(gy, P, n, gx, H, W);
        return;
    }
#endif
    for (Py_ssize_t p = 0; p < P; p++, gx += n) {
        const float v = gy[p] / H / W;
        for (Py_ssize_t i = 0; i < n; i++)
            gx[i] = v;
    }
}

/* 2x2 stride-2 average, forward: a plane's interior windows (every tap inside: rows
 * [r_lo, r_hi) of the output, columns [lo, hi), at least 16 of them), each summed in
 * PyTorch's order ((x00 + x01) + x10) + x11 and divided by div; the caller does the border
 * windows. The next plane is prefetched (see fc_max_plane_avx512). Returns -1 when the
 * AVX-512 path is not active (the caller then does the whole plane). */
#if FC_POOL_X86
static FC_AVX512 void fc_avg2_plane_avx512(const float *xp, Py_ssize_t H, Py_ssize_t W,
                                           Py_ssize_t OW, int ph, int pw, Py_ssize_t r_lo,
                                           Py_ssize_t r_hi, Py_ssize_t lo, Py_ssize_t hi,
                                           float div, float *op)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512 d = _mm512_set1_ps(div);
    const char *next = (const char *)(xp + H * W);
    Py_ssize_t pf = 0, pf_end = H * W * (Py_ssize_t)sizeof(float);
    Py_ssize_t pf_step = r_hi > r_lo ? (pf_end + (r_hi - r_lo) - 1) / (r_hi - r_lo) : 0;
    for (Py_ssize_t oh = r_lo; oh < r_hi; oh++) {
        const float *r0 = xp + (2 * oh - ph) * W - pw, *r1 = r0 + W;
        float *om = op + oh * OW;
        for (Py_ssize_t e = pf + pf_step; pf < e && pf < pf_end; pf += 64)
            _mm_prefetch(next + pf, _MM_HINT_T0);
        for (Py_ssize_t ow = lo;; ow += 16) {
            if (ow + 16 > hi)
                ow = hi - 16;
            __m512 a0 = _mm512_loadu_ps(r0 + 2 * ow), b0 = _mm512_loadu_ps(r0 + 2 * ow + 16);
            __m512 a1 = _mm512_loadu_ps(r1 + 2 * ow), b1 = _mm512_loadu_ps(r1 + 2 * ow + 16);
            __m512 s = _mm512_add_ps(_mm512_permutex2var_ps(a0, ev, b0),
                                     _mm512_permutex2var_ps(a0, od, b0));
            s = _mm512_add_ps(s, _mm512_permutex2var_ps(a1, ev, b1));
            s = _mm512_add_ps(s, _mm512_permutex2var_ps(a1, od, b1));
            _mm512_storeu_ps(om + ow, _mm512_div_ps(s, d));
            if (ow + 16 >= hi)
                break;
        }
    }
}

/* 2x2 stride-2 average, backward, windows tiling the plane's top-left 2*OH x 2*OW block
 * (no padding): gx = gy / div copied to each window's 4 taps (the caller zeroes the rest).
 * OW >= 16. */
static FC_AVX512 void fc_avg2_backward_plane_avx512(const float *gyp, Py_ssize_t OH,
                                                    Py_ssize_t OW, Py_ssize_t W, float div,
                                                    float *gxp)
{
    const __m512i lo16 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22,
                                           7, 23);
    const __m512i hi16 = _mm512_add_epi32(lo16, _mm512_set1_epi32(8));
    const __m512 d = _mm512_set1_ps(div);
    for (Py_ssize_t oh = 0; oh < OH; oh++) {
        float *g0 = gxp + 2 * oh * W, *g1 = g0 + W;
        const float *gy = gyp + oh * OW;
        for (Py_ssize_t ow = 0;; ow += 16) {
            if (ow + 16 > OW)
                ow = OW - 16;
            __m512 v = _mm512_div_ps(_mm512_loadu_ps(gy + ow), d);
            __m512 x0 = _mm512_permutex2var_ps(v, lo16, v);
            __m512 x1 = _mm512_permutex2var_ps(v, hi16, v);
            _mm512_storeu_ps(g0 + 2 * ow, x0);
            _mm512_storeu_ps(g0 + 2 * ow + 16, x1);
            _mm512_storeu_ps(g1 + 2 * ow, x0);
            _mm512_storeu_ps(g1 + 2 * ow + 16, x1);
            if (ow + 16 >= OW)
                break;
        }
    }
}
#endif

static int fc_avg2_plane_f32(const float *xp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OW,
                             int ph, int pw, Py_ssize_t r_lo, Py_ssize_t r_hi, Py_ssize_t lo,
                             Py_ssize_t hi, float div, float *op)
{
#if FC_POOL_X86
    if (hi - lo >= 16 && fc_pool_target() == FC_POOL_AVX512) {
        fc_avg2_plane_avx512(xp, H, W, OW, ph, pw, r_lo, r_hi, lo, hi, div, op);
        return 0;
    }
#endif
    return -1;
}

static int fc_avg2_backward_plane_f32(const float *gyp, Py_ssize_t OH, Py_ssize_t OW,
                                      Py_ssize_t W, float div, float *gxp)
{
#if FC_POOL_X86
    if (OW >= 16 && fc_pool_target() == FC_POOL_AVX512) {
        fc_avg2_backward_plane_avx512(gyp, OH, OW, W, div, gxp);
        return 0;
    }
#endif
    return -1;
}

#endif  /* FC_POOL_AVG_H */
