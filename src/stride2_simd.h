/* SIMD bodies of the stride-2 column moves (float32), each one vector of columns from two
 * loads and a permute or two instead of the compiler's SSE2 loop over single floats:
 * - fc_col2im_pair_f32, for _im2col.pxd's stride-2 col2im: taps j and j + 1 of a row add
 *   into the even and odd columns of one run (the same additions as the Cython loop);
 * - fc_stride2_copy_f32, for _padded.pxd's phase split and conv2d_winograd.pyx's dilation
 *   phases: dst[k] = src[2k];
 * - fc_interleave2_f32, for conv2d_winograd.pyx's merge of two phases: dst[2k] = a[k],
 *   dst[2k + 1] = b[k].
 * AVX-512 bodies (16 columns) and AVX2 bodies (8 columns; AVX2 stores are plain, as Zen
 * takes a masked store as microcode: the last partial vector is done by the caller's loop).
 * Built with the package's plain -O3: the bodies carry a target attribute and run only after
 * fc_cpu_target() said so; elsewhere the functions return 0 and the caller's loop runs. */
#ifndef FC_STRIDE2_SIMD_H
#define FC_STRIDE2_SIMD_H
#include <stdint.h>
#include "cpu_dispatch.h"

#if FC_CPU_X86
/* dst[2k] += a[k], dst[2k + 1] += b[k], k < n */
static __attribute__((target("avx512f"))) void
fc_col2im_pair_avx512(float *dst, const float *a, const float *b, int64_t n)
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7,
                                         23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 va = _mm512_loadu_ps(a + i), vb = _mm512_loadu_ps(b + i);
        float *d = dst + 2 * i;
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_permutex2var_ps(va, lo, vb)));
        _mm512_storeu_ps(d + 16, _mm512_add_ps(_mm512_loadu_ps(d + 16),
                                               _mm512_permutex2var_ps(va, hi, vb)));
    }
    if (i < n) {     /* r = 1..15 values of each: 2r destination values */
        int r = (int)(n - i);
        __mmask16 m = (__mmask16)((1u << r) - 1);
        __mmask16 m0 = r >= 8 ? (__mmask16)0xFFFF : (__mmask16)((1u << (2 * r)) - 1);
        __mmask16 m1 = r > 8 ? (__mmask16)((1u << (2 * (r - 8))) - 1) : (__mmask16)0;
        __m512 va = _mm512_maskz_loadu_ps(m, a + i), vb = _mm512_maskz_loadu_ps(m, b + i);
        float *d = dst + 2 * i;
        _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, d),
                                                   _mm512_permutex2var_ps(va, lo, vb)));
        _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, d + 16),
                                                        _mm512_permutex2var_ps(va, hi, vb)));
    }
}

/* dst[k] = src[2k], k < n: loads stop at src[2n - 2] (masked), stores at dst[n - 1] */
static __attribute__((target("avx512f"))) void
fc_stride2_copy_avx512(const float *src, int64_t n, float *dst)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        /* the last full block reads src[2k + 30] at most: the second load stops there */
        __m512 a = _mm512_loadu_ps(src + 2 * k);
        __m512 b = _mm512_maskz_loadu_ps((__mmask16)0x7FFF, src + 2 * k + 16);
        _mm512_storeu_ps(dst + k, _mm512_permutex2var_ps(a, ev, b));
    }
    if (k < n) {     /* r = 1..15 outputs read 2r - 1 sources */
        int r = (int)(n - k), m = 2 * r - 1;
        __mmask16 m0 = m >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << m) - 1);
        __mmask16 m1 = m > 16 ? (__mmask16)((1u << (m - 16)) - 1) : (__mmask16)0;
        __m512 a = _mm512_maskz_loadu_ps(m0, src + 2 * k);
        __m512 b = _mm512_maskz_loadu_ps(m1, src + 2 * k + 16);
        _mm512_mask_storeu_ps(dst + k, (__mmask16)((1u << r) - 1),
                              _mm512_permutex2var_ps(a, ev, b));
    }
}

/* dst[2k] (+)= a[k], dst[2k + 1] (+)= b[k] (add: fc_col2im_pair_avx512's additions, else
 * plain stores), 8 columns a step; returns how many columns it did (a multiple of 8), the
 * rest is the caller's */
static __attribute__((target("avx2"))) int64_t
fc_zip2_avx2(float *dst, const float *a, const float *b, int64_t n, int add)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
        __m256 lo = _mm256_unpacklo_ps(va, vb), hi = _mm256_unpackhi_ps(va, vb);
        __m256 z0 = _mm256_permute2f128_ps(lo, hi, 0x20);
        __m256 z1 = _mm256_permute2f128_ps(lo, hi, 0x31);
        float *d = dst + 2 * i;
        if (add) {
            z0 = _mm256_add_ps(_mm256_loadu_ps(d), z0);
            z1 = _mm256_add_ps(_mm256_loadu_ps(d + 8), z1);
        }
        _mm256_storeu_ps(d, z0);
        _mm256_storeu_ps(d + 8, z1);
    }
    return i;
}

/* dst[k] = src[2k], 8 columns a step, reading no further than src[2n - 2] (the second load
 * of the last block is masked: masked loads are cheap); returns how many it did */
static __attribute__((target("avx2"))) int64_t
fc_stride2_copy_avx2(const float *src, int64_t n, float *dst)
{
    const __m256i first7 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 a = _mm256_loadu_ps(src + 2 * k);
        __m256 b = k + 8 < n ? _mm256_loadu_ps(src + 2 * k + 8)
                             : _mm256_maskload_ps(src + 2 * k + 8, first7);
        __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        _mm256_storeu_ps(dst + k, _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0))));
    }
    return k;
}
#endif

/* dst[2k] += a[k] and dst[2k + 1] += b[k] for k < n. 1: done; 0: the caller must. */
static inline int fc_col2im_pair_f32(float *dst, const float *a, const float *b, int64_t n)
{
#if FC_CPU_X86
    if (fc_cpu_target() == FC_CPU_AVX512) {
        fc_col2im_pair_avx512(dst, a, b, n);
        return 1;
    }
    if (fc_cpu_target() == FC_CPU_AVX2) {
        for (int64_t i = fc_zip2_avx2(dst, a, b, n, 1); i < n; ++i) {
            dst[2 * i] += a[i];
            dst[2 * i + 1] += b[i];
        }
        return 1;
    }
#endif
    (void)dst, (void)a, (void)b, (void)n;
    return 0;
}

/* dst[k] = src[2k] for k < n. 1: done; 0: the caller must. */
static inline int fc_stride2_copy_f32(const float *src, int64_t n, float *dst)
{
#if FC_CPU_X86
    if (fc_cpu_target() == FC_CPU_AVX512) {
        fc_stride2_copy_avx512(src, n, dst);
        return 1;
    }
    if (fc_cpu_target() == FC_CPU_AVX2) {
        for (int64_t k = fc_stride2_copy_avx2(src, n, dst); k < n; ++k)
            dst[k] = src[2 * k];
        return 1;
    }
#endif
    (void)src, (void)n, (void)dst;
    return 0;
}

/* dst[2k] = a[k], dst[2k + 1] = b[k] for k < n (the AVX2 body on AVX-512 CPUs too: no
 * AVX-512 body was written, as none could be run on the machine this was measured on).
 * 1: done; 0: the caller must. */
static inline int fc_interleave2_f32(float *dst, const float *a, const float *b, int64_t n)
{
#if FC_CPU_X86
    if (fc_cpu_target() != FC_CPU_GENERIC) {
        for (int64_t k = fc_zip2_avx2(dst, a, b, n, 0); k < n; ++k) {
            dst[2 * k] = a[k];
            dst[2 * k + 1] = b[k];
        }
        return 1;
    }
#endif
    (void)dst, (void)a, (void)b, (void)n;
    return 0;
}

#endif
