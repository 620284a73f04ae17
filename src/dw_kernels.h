/* Inner loops of the depthwise convolution (src/conv2d_depthwise.pyx orchestrates), for float
 * (suffix _f) and double (_d), each compiled for AVX-512F, AVX2+FMA and portable C and picked
 * at run time (src/cpu_dispatch.h). Header-only: one translation unit includes it.
 *
 * Packed operands make every tap of every geometry (stride, padding, dilation, kernel size) a
 * contiguous run, so one kernel shape serves all passes:
 *   dw_pack   copies a plane into a zero-padded buffer, splitting columns into s phases
 *             (phase q holds columns q, q + s, ...), and prefetches what the caller names
 *             next (dw_next): for the forward and the weight gradient,
 *             tap (kh, kw) of output row oh then reads a contiguous run of the packed input;
 *             for the input gradient a plain zero-padded copy of grad_out (s = 1) does it.
 *   dw_taps   out[r][i] = base + sum_t w[widx[t]] * src[r * lds + off[t] + i]
 *             (base = b, or out itself when accumulate) - forward and backward_input.
 *   dw_dots   acc[t][lane] += sum_r,i gy[r][i] * src[r * lds + off[t] + i] over the i of
 *             that vector lane (DW_ACC_LANES per tap, unused ones untouched) - backward_weight.
 *   dw_taps2  the same for an output row made of two interleaved column phases, each with
 *             its own taps (input gradient at column stride 2), interleaved in registers.
 *   dw_unphase interleaves the stride phases of the input gradient back into the plane
 *             (column strides above 2).
 * Kernels check nothing: offsets and sizes come from the caller.
 */
#ifndef FASTCONV_DW_KERNELS_H
#define FASTCONV_DW_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "cpu_dispatch.h"

#define DW_CHUNK 9   /* taps kept in registers at once (9 accumulators fit AVX2's 16 regs) */
#define DW_ACC_LANES 16   /* double accumulators per tap in dw_dots (the widest vector) */
#define DW_NB 4           /* vectors of an output row that dw_taps computes side by side */
_Static_assert(DW_NB == 4, "dw_taps_chunk's switch covers 1 to 4 vectors");
#define DW_PACK_MAXV 32   /* vectors of a packed row whose masks dw_pack keeps at once */

/* Memory the caller reads after this plane (the next plane's input and grad_out): up to
 * DW_NEXT regions, each prefetched by dw_pack a slice per source row (row ih of H: bytes
 * [ih * row_bytes[k], (ih + 1) * row_bytes[k]) from p[k]; row_bytes[k] = 0: none), so that
 * their fetch overlaps this plane's taps. The planes are a few KiB, and with the taps in
 * between the hardware prefetcher's streams start too late. Zen 3, against no prefetch:
 * mobilenet-sized forwards 0.62-0.75x the time, backwards 0.84-0.90x. Prefetching the
 * outputs as well was slower, and spreading the prefetch over the taps' rows instead of the
 * packing's gained nothing. */
#define DW_NEXT 2
typedef struct {
    const void *p[DW_NEXT];
    ptrdiff_t row_bytes[DW_NEXT];
} dw_next;

static inline void dw_prefetch_row(const dw_next *nx, ptrdiff_t ih)
{
#if defined(__GNUC__)
    if (nx == NULL)
        return;
    for (int k = 0; k < DW_NEXT; ++k)
        for (ptrdiff_t b = ih * nx->row_bytes[k], e = b + nx->row_bytes[k]; b < e; b += 64)
            __builtin_prefetch((const char *)nx->p[k] + b, 0, 3);
#else
    (void)nx; (void)ih;
#endif
}

/* ---------------------------------------------------------------- portable instantiations */
#define DW_VL 0
#define DW_T float
#define DWN(name) dw_##name##_f_generic
#include "dw_kernels_impl.h"
#undef DW_T
#undef DWN
#define DW_T double
#define DWN(name) dw_##name##_d_generic
#include "dw_kernels_impl.h"
#undef DW_T
#undef DWN
#undef DW_VL

#if FC_CPU_X86
/* ---------------------------------------------------------------- AVX-512F */
#define DW_ATTR __attribute__((target("avx512f")))
/* permutation indices picking the even / odd elements of a pair of vectors */
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_even16(void)
{
    return _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
}
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_odd16(void)
{
    return _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
}
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_ziplo16(void)
{
    return _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_ziphi16(void)
{
    return _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
}
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_ziplo8(void)
{
    return _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
}
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_ziphi8(void)
{
    return _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
}
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_even8(void)
{
    return _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
}
static inline __attribute__((always_inline)) DW_ATTR __m512i dw_odd8(void)
{
    return _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
}
#define DW_T float
#define DWN(name) dw_##name##_f_avx512
#define DWG(name) dw_##name##_f_generic   /* the portable version */
#define DW_VL 16
#define DW_V __m512
#define DW_M __mmask16
#define DW_MASK(n) ((__mmask16)((1u << (n)) - 1u))
#define DW_SET1 _mm512_set1_ps
#define DW_ZERO _mm512_setzero_ps
#define DW_LOAD _mm512_loadu_ps
#define DW_MLOAD(p, m) _mm512_maskz_loadu_ps((m), (p))
#define DW_STORE _mm512_storeu_ps
#define DW_MSTORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define DW_FMA _mm512_fmadd_ps
#define DW_MRANGE(lo, hi) ((__mmask16)(((1u << (hi)) - 1u) & ~((1u << (lo)) - 1u)))
#define DW_EVENS(a, b) _mm512_permutex2var_ps((a), dw_even16(), (b))
#define DW_ZIPLO(a, b) _mm512_permutex2var_ps((a), dw_ziplo16(), (b))
#define DW_ZIPHI(a, b) _mm512_permutex2var_ps((a), dw_ziphi16(), (b))
#define DW_ODDS(a, b) _mm512_permutex2var_ps((a), dw_odd16(), (b))
#include "dw_kernels_impl.h"
#undef DW_T
#undef DWN
#undef DW_VL
#undef DW_V
#undef DW_M
#undef DW_MASK
#undef DW_SET1
#undef DW_ZERO
#undef DW_LOAD
#undef DW_MLOAD
#undef DW_STORE
#undef DW_MSTORE
#undef DW_FMA
#undef DW_MRANGE
#undef DW_EVENS
#undef DW_ODDS
#undef DW_ZIPLO
#undef DW_ZIPHI
#undef DWG

#define DW_T double
#define DWN(name) dw_##name##_d_avx512
#define DWG(name) dw_##name##_d_generic   /* the portable version */
#define DW_VL 8
#define DW_V __m512d
#define DW_M __mmask8
#define DW_MASK(n) ((__mmask8)((1u << (n)) - 1u))
#define DW_SET1 _mm512_set1_pd
#define DW_ZERO _mm512_setzero_pd
#define DW_LOAD _mm512_loadu_pd
#define DW_MLOAD(p, m) _mm512_maskz_loadu_pd((m), (p))
#define DW_STORE _mm512_storeu_pd
#define DW_MSTORE(p, m, v) _mm512_mask_storeu_pd((p), (m), (v))
#define DW_FMA _mm512_fmadd_pd
#define DW_MRANGE(lo, hi) ((__mmask8)(((1u << (hi)) - 1u) & ~((1u << (lo)) - 1u)))
#define DW_EVENS(a, b) _mm512_permutex2var_pd((a), dw_even8(), (b))
#define DW_ZIPLO(a, b) _mm512_permutex2var_pd((a), dw_ziplo8(), (b))
#define DW_ZIPHI(a, b) _mm512_permutex2var_pd((a), dw_ziphi8(), (b))
#define DW_ODDS(a, b) _mm512_permutex2var_pd((a), dw_odd8(), (b))
#include "dw_kernels_impl.h"
#undef DW_T
#undef DWN
#undef DW_VL
#undef DW_V
#undef DW_M
#undef DW_MASK
#undef DW_SET1
#undef DW_ZERO
#undef DW_LOAD
#undef DW_MLOAD
#undef DW_STORE
#undef DW_MSTORE
#undef DW_FMA
#undef DW_MRANGE
#undef DW_EVENS
#undef DW_ODDS
#undef DW_ZIPLO
#undef DW_ZIPHI
#undef DWG
#undef DW_ATTR

/* ---------------------------------------------------------------- AVX2 + FMA */
/* masks for the row tails: lanes [0, n) on, from a sliding window over this table */
static const int32_t dw_mask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t dw_mask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

#define DW_ATTR __attribute__((target("avx2,fma")))
#define DW_T float
#define DWN(name) dw_##name##_f_avx2
#define DWG(name) dw_##name##_f_generic   /* the portable version */
#define DW_VL 8
#define DW_V __m256
#define DW_M __m256i
#define DW_MASK(n) _mm256_loadu_si256((const __m256i *)(dw_mask32 + 8 - (n)))
#define DW_SET1 _mm256_set1_ps
#define DW_ZERO _mm256_setzero_ps
#define DW_LOAD _mm256_loadu_ps
#define DW_MLOAD(p, m) _mm256_maskload_ps((p), (m))
#define DW_STORE _mm256_storeu_ps
#define DW_MSTORE(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define DW_FMA _mm256_fmadd_ps
#define DW_MRANGE(lo, hi) _mm256_andnot_si256(DW_MASK(lo), DW_MASK(hi))
#define DW_EVENS(a, b) _mm256_castpd_ps(_mm256_permute4x64_pd(                                \
    _mm256_castps_pd(_mm256_shuffle_ps((a), (b), 0x88)), 0xD8))
#define DW_ODDS(a, b) _mm256_castpd_ps(_mm256_permute4x64_pd(                                 \
    _mm256_castps_pd(_mm256_shuffle_ps((a), (b), 0xDD)), 0xD8))
#define DW_ZIPLO(a, b) _mm256_permute2f128_ps(_mm256_unpacklo_ps((a), (b)),                  \
                                              _mm256_unpackhi_ps((a), (b)), 0x20)
#define DW_ZIPHI(a, b) _mm256_permute2f128_ps(_mm256_unpacklo_ps((a), (b)),                  \
                                              _mm256_unpackhi_ps((a), (b)), 0x31)
#include "dw_kernels_impl.h"
#undef DW_T
#undef DWN
#undef DW_VL
#undef DW_V
#undef DW_M
#undef DW_MASK
#undef DW_SET1
#undef DW_ZERO
#undef DW_LOAD
#undef DW_MLOAD
#undef DW_STORE
#undef DW_MSTORE
#undef DW_FMA
#undef DW_MRANGE
#undef DW_EVENS
#undef DW_ODDS
#undef DW_ZIPLO
#undef DW_ZIPHI
#undef DWG

#define DW_T double
#define DWN(name) dw_##name##_d_avx2
#define DWG(name) dw_##name##_d_generic   /* the portable version */
#define DW_VL 4
#define DW_V __m256d
#define DW_M __m256i
#define DW_MASK(n) _mm256_loadu_si256((const __m256i *)(dw_mask64 + 4 - (n)))
#define DW_SET1 _mm256_set1_pd
#define DW_ZERO _mm256_setzero_pd
#define DW_LOAD _mm256_loadu_pd
#define DW_MLOAD(p, m) _mm256_maskload_pd((p), (m))
#define DW_STORE _mm256_storeu_pd
#define DW_MSTORE(p, m, v) _mm256_maskstore_pd((p), (m), (v))
#define DW_FMA _mm256_fmadd_pd
#define DW_MRANGE(lo, hi) _mm256_andnot_si256(DW_MASK(lo), DW_MASK(hi))
#define DW_EVENS(a, b) _mm256_permute4x64_pd(_mm256_unpacklo_pd((a), (b)), 0xD8)
#define DW_ODDS(a, b) _mm256_permute4x64_pd(_mm256_unpackhi_pd((a), (b)), 0xD8)
#define DW_ZIPLO(a, b) _mm256_permute2f128_pd(_mm256_unpacklo_pd((a), (b)),                  \
                                              _mm256_unpackhi_pd((a), (b)), 0x20)
#define DW_ZIPHI(a, b) _mm256_permute2f128_pd(_mm256_unpacklo_pd((a), (b)),                  \
                                              _mm256_unpackhi_pd((a), (b)), 0x31)
#include "dw_kernels_impl.h"
#undef DW_T
#undef DWN
#undef DW_VL
#undef DW_V
#undef DW_M
#undef DW_MASK
#undef DW_SET1
#undef DW_ZERO
#undef DW_LOAD
#undef DW_MLOAD
#undef DW_STORE
#undef DW_MSTORE
#undef DW_FMA
#undef DW_MRANGE
#undef DW_EVENS
#undef DW_ODDS
#undef DW_ZIPLO
#undef DW_ZIPHI
#undef DWG
#undef DW_ATTR
#endif

/* ---------------------------------------------------------------- dispatch */
#if FC_CPU_X86
#define DW_DISPATCH(name, sfx, args)                                                       \
    switch (fc_cpu_target()) {                                                             \
    case FC_CPU_AVX512: dw_##name##_##sfx##_avx512 args; return;                           \
    case FC_CPU_AVX2: dw_##name##_##sfx##_avx2 args; return;                               \
    default: dw_##name##_##sfx##_generic args; return;                                     \
    }
#else
#define DW_DISPATCH(name, sfx, args) dw_##name##_##sfx##_generic args;
#endif

#define DW_ENTRY_POINTS(T, sfx)                                                            \
    static inline void dw_pack_##sfx(T *buf, ptrdiff_t Hb, ptrdiff_t nq, ptrdiff_t Jw,     \
                                     const T *src, ptrdiff_t H, ptrdiff_t W, ptrdiff_t r0, \
                                     ptrdiff_t c0, ptrdiff_t s, const dw_next *nx)         \
    {                                                                                      \
        DW_DISPATCH(pack, sfx, (buf, Hb, nq, Jw, src, H, W, r0, c0, s, nx))                \
    }                                                                                      \
    static inline void dw_unphase_##sfx(T *gx, ptrdiff_t H, ptrdiff_t W, const T *P,       \
                                        ptrdiff_t A, ptrdiff_t B, ptrdiff_t sh,            \
                                        ptrdiff_t sw)                                      \
    {                                                                                      \
        dw_unphase_##sfx##_generic(gx, H, W, P, A, B, sh, sw);                             \
    }                                                                                      \
    static inline void dw_taps_##sfx(T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C,      \
                                     const T *src, ptrdiff_t lds, ptrdiff_t nt,            \
                                     const T *w, const ptrdiff_t *widx,                    \
                                     const ptrdiff_t *off, T b, int accumulate)            \
    {                                                                                      \
        DW_DISPATCH(taps, sfx, (out, ldo, R, C, src, lds, nt, w, widx, off, b, accumulate)) \
    }                                                                                      \
    static inline void dw_taps2_##sfx(T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C,     \
                                      const T *src, ptrdiff_t lds, const T *w,             \
                                      ptrdiff_t nt0, const ptrdiff_t *widx0,               \
                                      const ptrdiff_t *off0, ptrdiff_t nt1,                \
                                      const ptrdiff_t *widx1, const ptrdiff_t *off1, T b)  \
    {                                                                                      \
        DW_DISPATCH(taps2, sfx, (out, ldo, R, C, src, lds, w, nt0, widx0, off0, nt1, widx1, \
                                 off1, b))                                                 \
    }                                                                                      \
    static inline void dw_dots_##sfx(double *acc, const T *gy, ptrdiff_t R, ptrdiff_t C,   \
                                     const T *src, ptrdiff_t lds, ptrdiff_t nt,            \
                                     const ptrdiff_t *off)                                 \
    {                                                                                      \
        DW_DISPATCH(dots, sfx, (acc, gy, R, C, src, lds, nt, off))                         \
    }

DW_ENTRY_POINTS(float, f)
DW_ENTRY_POINTS(double, d)

#endif
