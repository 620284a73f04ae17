/* AVX-512 body of _im2col.pxd's stride-2 col2im (float32): taps j and j + 1 of a row add
 * into the even and odd columns of one contiguous run. Built with the package's plain -O3:
 * the body carries a target attribute and runs only after fc_cpu_target() said AVX-512. The
 * same additions as the Cython loop (one per destination value), so the same bits. */
#ifndef FC_COL2IM_SIMD_H
#define FC_COL2IM_SIMD_H
#include <stdint.h>
#include "cpu_dispatch.h"

#if FC_CPU_X86
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
#endif

/* dst[2k] += a[k] and dst[2k + 1] += b[k] for k < n. 1: done; 0: no AVX-512, the caller's
 * loop must do it. */
static inline int fc_col2im_pair_f32(float *dst, const float *a, const float *b, int64_t n)
{
#if FC_CPU_X86
    if (fc_cpu_target() == FC_CPU_AVX512) {
        fc_col2im_pair_avx512(dst, a, b, n);
        return 1;
    }
#endif
    (void)dst;
    (void)a;
    (void)b;
    (void)n;
    return 0;
}

#endif
