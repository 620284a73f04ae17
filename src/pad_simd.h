/* AVX-512 body of _padded.pxd's stride-2 phase split (float32): dst[k] = src[2k], k < n, one
 * vector of 16 from two loads and a permute instead of the compiler's SSE2 gather of single
 * floats. Built with the package's plain -O3: the body carries a target attribute and runs
 * only after fc_cpu_target() said AVX-512. Loads stop at src[2n - 2] (masked), stores at
 * dst[n - 1]. */
#ifndef FC_PAD_SIMD_H
#define FC_PAD_SIMD_H
#include <stdint.h>
#include "cpu_dispatch.h"

#if FC_CPU_X86
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
#endif

/* dst[k] = src[2k] for k < n. 1: done; 0: no AVX-512, the caller's loop must do it. */
static inline int fc_stride2_copy_f32(const float *src, int64_t n, float *dst)
{
#if FC_CPU_X86
    if (fc_cpu_target() == FC_CPU_AVX512) {
        fc_stride2_copy_avx512(src, n, dst);
        return 1;
    }
#endif
    (void)src;
    (void)n;
    (void)dst;
    return 0;
}

#endif
