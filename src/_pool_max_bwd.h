/* Float32 max-pooling backward for 2x2 stride-2 windows that tile the plane (no padding or
 * dilation), with the run-time ISA choice of _pool_max.h (AVX-512 or AVX2); included from
 * src/pool2d.pyx.
 *
 * Each input element is a tap of at most one window, so instead of zeroing the plane and
 * scattering grad_out through the indices, every grad_in row is written once, in order:
 * tap t of window (oh, ow) gets grad_out[oh, ow] where the window's argmax is t, else 0
 * (the value is added to +0, as the scatter does, so -0 gradients give +0 there too).
 * An index outside its own window (not from a 2x2 stride-2 forward) makes the function
 * return -1 when its vector of windows comes up; the caller then redoes the whole plane with
 * the scatter (which zeroes it first).
 */
#ifndef FC_POOL_MAX_BWD_H
#define FC_POOL_MAX_BWD_H
#include "_pool_max.h"

#if defined(__GNUC__)
#define FC_PREFETCH(p, rw) __builtin_prefetch((p), (rw), 3)
#else
#define FC_PREFETCH(p, rw) ((void)0)
#endif

#if FC_POOL_X86
static FC_AVX512 int fc_max2_backward_plane_avx512(const float *gyp, const int64_t *ip,
                                                   Py_ssize_t OH, Py_ssize_t OW,
                                                   Py_ssize_t W, float *gxp)
{
    const __m512i lo16 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22,
                                           7, 23);
    const __m512i hi16 = _mm512_add_epi32(lo16, _mm512_set1_epi32(8));
    const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                            26, 28, 30);
    const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32((int)W);
    const __m512i w1 = _mm512_set1_epi32((int)W + 1);
    const __m512 zero = _mm512_setzero_ps();
    for (Py_ssize_t oh = 0; oh < OH; oh++) {
        float *g0 = gxp + 2 * oh * W, *g1 = g0 + W;
        const float *gy = gyp + oh * OW;
        const int64_t *ix = ip + oh * OW;
        for (Py_ssize_t ow = 0;; ow += 16) {
            if (ow + 16 > OW)
                ow = OW - 16;
            __m512i base = _mm512_add_epi32(_mm512_set1_epi32((int)(2 * oh * W + 2 * ow)), lane2);
            __m256i i0 = _mm512_cvtsepi64_epi32(_mm512_loadu_si512((const void *)(ix + ow)));
            __m256i i1 = _mm512_cvtsepi64_epi32(_mm512_loadu_si512((const void *)(ix + ow + 8)));
            __m512i rel = _mm512_sub_epi32(
                _mm512_inserti64x4(_mm512_castsi256_si512(i0), i1, 1), base);
            __mmask16 m00 = _mm512_cmpeq_epi32_mask(rel, _mm512_setzero_si512());
            __mmask16 m01 = _mm512_cmpeq_epi32_mask(rel, one);
            __mmask16 m10 = _mm512_cmpeq_epi32_mask(rel, wv);
            __mmask16 m11 = _mm512_cmpeq_epi32_mask(rel, w1);
            /* every index in its window (and in int32 range: the caller checks H*W) */
            if ((__mmask16)(m00 | m01 | m10 | m11) != (__mmask16)0xFFFF)
                return -1;
            __m512 v = _mm512_loadu_ps(gy + ow);
            __m512 e = _mm512_add_ps(_mm512_maskz_mov_ps(m00, v), zero);
            __m512 o = _mm512_add_ps(_mm512_maskz_mov_ps(m01, v), zero);
            _mm512_storeu_ps(g0 + 2 * ow, _mm512_permutex2var_ps(e, lo16, o));
            _mm512_storeu_ps(g0 + 2 * ow + 16, _mm512_permutex2var_ps(e, hi16, o));
            e = _mm512_add_ps(_mm512_maskz_mov_ps(m10, v), zero);
            o = _mm512_add_ps(_mm512_maskz_mov_ps(m11, v), zero);
            _mm512_storeu_ps(g1 + 2 * ow, _mm512_permutex2var_ps(e, lo16, o));
            _mm512_storeu_ps(g1 + 2 * ow + 16, _mm512_permutex2var_ps(e, hi16, o));
            if (ow + 16 >= OW)
                break;
        }
    }
    return 0;
}
/* The same with AVX2, 8 windows at a time. The indices' offsets from their windows are taken
 * in 64 bits and checked to fit in 32 (high halves zero) before the 32-bit compares, so a
 * foreign index cannot alias a tap by truncation. */
static FC_AVX2 int fc_max2_backward_plane_avx2(const float *gyp, const int64_t *ip,
                                               Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t W,
                                               float *gxp)
{
    const __m256i halves = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);   /* lo dwords | hi */
    const __m256i lane2 = _mm256_setr_epi64x(0, 2, 4, 6);
    const __m256i one = _mm256_set1_epi32(1), wv = _mm256_set1_epi32((int)W);
    const __m256i w1 = _mm256_set1_epi32((int)W + 1);
    const __m256 zero = _mm256_setzero_ps();
    for (Py_ssize_t oh = 0; oh < OH; oh++) {
        float *g0 = gxp + 2 * oh * W, *g1 = g0 + W;
        const float *gy = gyp + oh * OW;
        const int64_t *ix = ip + oh * OW;
        for (Py_ssize_t ow = 0;; ow += 8) {
            if (ow + 8 > OW)
                ow = OW - 8;
            __m256i base = _mm256_add_epi64(_mm256_set1_epi64x(2 * oh * W + 2 * ow), lane2);
            __m256i a = _mm256_permutevar8x32_epi32(
                _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(ix + ow)), base), halves);
            base = _mm256_add_epi64(base, _mm256_set1_epi64x(8));
            __m256i b = _mm256_permutevar8x32_epi32(
                _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(ix + ow + 4)), base),
                halves);
            __m256i rel = _mm256_permute2x128_si256(a, b, 0x20);
            __m256i high = _mm256_permute2x128_si256(a, b, 0x31);
            __m256 m00 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(rel, _mm256_setzero_si256()));
            __m256 m01 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(rel, one));
            __m256 m10 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(rel, wv));
            __m256 m11 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(rel, w1));
            /* every index in its window */
            if (!_mm256_testz_si256(high, high) ||
                _mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(m00, m01),
                                                _mm256_or_ps(m10, m11))) != 0xFF)
                return -1;
            __m256 v = _mm256_loadu_ps(gy + ow);
            __m256 e = _mm256_add_ps(_mm256_and_ps(m00, v), zero);
            __m256 o = _mm256_add_ps(_mm256_and_ps(m01, v), zero);
            __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
            _mm256_storeu_ps(g0 + 2 * ow, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(g0 + 2 * ow + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
            e = _mm256_add_ps(_mm256_and_ps(m10, v), zero);
            o = _mm256_add_ps(_mm256_and_ps(m11, v), zero);
            lo = _mm256_unpacklo_ps(e, o);
            hi = _mm256_unpackhi_ps(e, o);
            _mm256_storeu_ps(g1 + 2 * ow, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(g1 + 2 * ow + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
            if (ow + 8 >= OW)
                break;
        }
    }
    return 0;
}
#endif

/* 0 when done (the windows' 2*OH x 2*OW block of grad_in; the caller zeroes the rest), -1
 * when the caller must scatter instead (no AVX2, OW below the vector width, or a foreign
 * index). */
static int fc_max2_backward_plane_f32(const float *gyp, const int64_t *ip, Py_ssize_t OH,
                                      Py_ssize_t OW, Py_ssize_t H, Py_ssize_t W, float *gxp)
{
#if FC_POOL_X86
    if (OW >= 16 && H * W < ((Py_ssize_t)1 << 30) && fc_pool_target() == FC_POOL_AVX512)
        return fc_max2_backward_plane_avx512(gyp, ip, OH, OW, W, gxp);
    if (OW >= 8 && H * W < ((Py_ssize_t)1 << 30) && fc_pool_target() <= FC_POOL_AVX2)
        return fc_max2_backward_plane_avx2(gyp, ip, OH, OW, W, gxp);
#endif
    return -1;
}

/* The general backward of one float32 plane: zero it, then scatter grad_out through the
 * indices (an index outside the plane is skipped). The next plane's grad_out, indices and
 * grad_in are prefetched along the way, spread over the scatter: planes are a few pages each
 * and the hardware prefetchers stop at page boundaries. */
static void fc_max_backward_plane_f32(const float *gyp, const int64_t *ip, Py_ssize_t HW,
                                      Py_ssize_t OHW, float *gxp)
{
    const char *ngy = (const char *)(gyp + OHW), *nip = (const char *)(ip + OHW);
    const char *ngx = (const char *)(gxp + HW);
    Py_ssize_t ngx_bytes = HW * (Py_ssize_t)sizeof(float), gx_pf = 0;
    Py_ssize_t gx_step = OHW > 0 ? (ngx_bytes / OHW + 1) * 16 : 0;   /* per 16 outputs */
    memset(gxp, 0, (size_t)HW * sizeof(float));
    for (Py_ssize_t j = 0; j < OHW; j++) {
        int64_t i = ip[j];
        if ((j & 15) == 0) {
            FC_PREFETCH(ngy + 4 * j, 0);
            FC_PREFETCH(nip + 8 * j, 0);
            FC_PREFETCH(nip + 8 * j + 64, 0);
            for (Py_ssize_t e = gx_pf + gx_step; gx_pf < e && gx_pf < ngx_bytes; gx_pf += 64)
                FC_PREFETCH(ngx + gx_pf, 1);
        }
        if ((size_t)i < (size_t)HW)
            gxp[i] += gyp[j];
    }
}

#endif  /* FC_POOL_MAX_BWD_H */
