/* Row kernels of float32 max pooling (2x2 and 3x3 windows, stride 1 or 2, dilation 1 along
 * W), included from src/pool2d.pyx. Built with the package's plain -O3 (no -march): the
 * AVX-512 and AVX2 bodies carry target attributes and run only after __builtin_cpu_supports
 * said yes; SSE2 is the x86-64 baseline; elsewhere (or forced) the Cython loop does the row.
 * FASTCONV_POOL_TARGET=avx2|sse2|generic in the environment (read once) forces a lower path,
 * for testing every path on one machine.
 *
 * Contract of fc_max_rows_f32 (the same for every path): oi == NULL stores no index (values
 * only; AVX-512 then reduces with a max tree). Windows ow in [lo, hi) over the nr
 * valid window rows r[i] (offset rel[i] from r[0]), window ow starting at column s*ow + off with all its kw taps inside the row. Each window
 * is folded row by row, each row left to right with strict >, so the FIRST maximum in
 * row-major order wins, exactly as PyTorch's per-window loop; only the windows' own taps are
 * read. V windows are done at a time (stride 2: even and odd columns split with shuffles);
 * the last group overlaps the previous one (it recomputes the same values). The folds assume
 * no NaN ("v > best or v is NaN" is then "v > best") and OR an unordered compare of every
 * tap vector on the side: if any tap was NaN the row returns -1 and pool2d.pyx redoes it
 * with the per-window loop, which propagates NaN. So the data are read once, with no NaN
 * pre-pass. Otherwise returns the first ow not done: hi, or lo when the row is too short.
 */
#ifndef FC_POOL_MAX_H
#define FC_POOL_MAX_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && defined(__SSE2__)
#define FC_POOL_X86 1
#include <immintrin.h>
#else
#define FC_POOL_X86 0
#endif

enum { FC_POOL_AVX512 = 0, FC_POOL_AVX2 = 1, FC_POOL_SSE2 = 2, FC_POOL_GENERIC = 3 };
static const char *const fc_pool_target_names[4] = {"avx512f", "avx2", "sse2", "generic"};
static int fc_pool_target_cache = -1;

static int fc_pool_detect(void)
{
    int best = FC_POOL_GENERIC, t;
    const char *want;
#if FC_POOL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        best = FC_POOL_AVX512;
    else if (__builtin_cpu_supports("avx2"))
        best = FC_POOL_AVX2;
    else
        best = FC_POOL_SSE2;
#endif
    want = getenv("FASTCONV_POOL_TARGET");
    if (want)
        for (t = best; t <= FC_POOL_GENERIC; ++t)
            if (strcmp(want, fc_pool_target_names[t]) == 0)
                return t;
    return best;
}

/* Racing first callers compute the same answer: a relaxed store is enough. */
static int fc_pool_target(void)
{
    int t = __atomic_load_n(&fc_pool_target_cache, __ATOMIC_RELAXED);
    if (t < 0) {
        t = fc_pool_detect();
        __atomic_store_n(&fc_pool_target_cache, t, __ATOMIC_RELAXED);
    }
    return t;
}

static const char *fc_pool_active_target(void) { return fc_pool_target_names[fc_pool_target()]; }

#if FC_POOL_X86
/* ------------------------------------------------------------------------------- SSE2 */
static inline __m128i fc_sel_i(__m128 u, __m128i a, __m128i b)   /* u ? a : b */
{
    __m128i m = _mm_castps_si128(u);
    return _mm_or_si128(_mm_and_si128(m, a), _mm_andnot_si128(m, b));
}

/* fold taps r[s*l + j], j < kw, of the windows l = 0..3 of one row into (m, k) */
static inline void fc_fold4(const float *r, int kw, int s, int rel, __m128 *m, __m128i *k,
                            __m128 *nan)
{
    __m128 h, v, u;
    __m128i hk = _mm_set1_epi32(rel);
    if (s == 2) {
        __m128 a = _mm_loadu_ps(r), b = _mm_loadu_ps(r + 4);
        h = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));           /* r[0, 2, 4, 6] */
        v = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));           /* r[1, 3, 5, 7] */
    } else {
        h = _mm_loadu_ps(r);
        v = _mm_loadu_ps(r + 1);
    }
    *nan = _mm_or_ps(*nan, _mm_or_ps(_mm_cmpunord_ps(h, h), _mm_cmpunord_ps(v, v)));
    u = _mm_cmpgt_ps(v, h);
    hk = fc_sel_i(u, _mm_set1_epi32(rel + 1), hk);
    h = _mm_max_ps(v, h);
    if (kw == 3) {
        if (s == 2) {                                                 /* r[2, 4, 6, 8] */
            __m128 a = _mm_loadu_ps(r), b = _mm_loadu_ps(r + 4);
            v = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
            v = _mm_move_ss(v, _mm_load_ss(r + 8));
            v = _mm_shuffle_ps(v, v, _MM_SHUFFLE(0, 3, 2, 1));
        } else {
            v = _mm_loadu_ps(r + 2);
        }
        *nan = _mm_or_ps(*nan, _mm_cmpunord_ps(v, v));
        u = _mm_cmpgt_ps(v, h);
        hk = fc_sel_i(u, _mm_set1_epi32(rel + 2), hk);
        h = _mm_max_ps(v, h);
    }
    u = _mm_cmpgt_ps(h, *m);
    *k = fc_sel_i(u, hk, *k);
    *m = _mm_max_ps(h, *m);
}

static Py_ssize_t fc_max_rows_sse2(const float **r, const int *rel, int nr, int kw, int s,
                                   float *om, int64_t *oi, Py_ssize_t lo, Py_ssize_t hi,
                                   Py_ssize_t off, Py_ssize_t base)
{
    Py_ssize_t ow = lo, c;
    const __m128i step = s == 2 ? _mm_setr_epi32(0, 2, 4, 6) : _mm_setr_epi32(0, 1, 2, 3);
    const __m128i z = _mm_setzero_si128();
    __m128 nan = _mm_setzero_ps();
    if (hi - lo < 4)
        return lo;
    for (;;) {
        __m128 m = _mm_set1_ps(-INFINITY);
        __m128i k = z, col, b;
        int i;
        if (ow + 4 > hi)
            ow = hi - 4;
        c = s * ow + off;
        for (i = 0; i < nr; i++)
            fc_fold4(r[i] + c, kw, s, rel[i], &m, &k, &nan);
        col = _mm_add_epi32(k, step);
        b = _mm_set1_epi64x((long long)(base + c));       /* index: base + c + s*l + k[l] */
        _mm_storeu_ps(om + ow, m);
        if (oi) {
            _mm_storeu_si128((__m128i *)(oi + ow), _mm_add_epi64(b, _mm_unpacklo_epi32(col, z)));
            _mm_storeu_si128((__m128i *)(oi + ow + 2),
                             _mm_add_epi64(b, _mm_unpackhi_epi32(col, z)));
        }
        ow += 4;
        if (ow >= hi)
            return _mm_movemask_ps(nan) ? -1 : hi;
    }
}

/* ------------------------------------------------------------------------------- AVX2 */
#define FC_AVX2 __attribute__((target("avx2")))

static inline __attribute__((always_inline)) FC_AVX2 __m256 fc_pack_lo256(__m256 x)
{   /* 128-bit lanes [a b | c d] (64-bit halves) -> [a c | b d] */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(x), 0xD8));
}

/* fold taps r[s*l + j], j < kw, of the windows l = 0..7 of one row into (m, k) */
static inline __attribute__((always_inline)) FC_AVX2 void
fc_fold8(const float *r, int kw, int s, int rel, __m256 *m, __m256i *k, __m256 *nan)
{
    __m256 h, v, u;
    __m256i hk = _mm256_set1_epi32(rel);
    if (s == 2) {
        __m256 a = _mm256_loadu_ps(r), b = _mm256_loadu_ps(r + 8);
        h = fc_pack_lo256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));  /* r[0, 2..14] */
        v = fc_pack_lo256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));  /* r[1, 3..15] */
    } else {
        h = _mm256_loadu_ps(r);
        v = _mm256_loadu_ps(r + 1);
    }
    *nan = _mm256_or_ps(*nan, _mm256_cmp_ps(h, v, _CMP_UNORD_Q));
    u = _mm256_cmp_ps(v, h, _CMP_GT_OQ);
    hk = _mm256_blendv_epi8(hk, _mm256_set1_epi32(rel + 1), _mm256_castps_si256(u));
    h = _mm256_max_ps(v, h);
    if (kw == 3) {
        if (s == 2) {   /* r[2..9] and r[9..16]: evens of the first, odds of the second */
            __m256 a = _mm256_loadu_ps(r + 2), b = _mm256_loadu_ps(r + 9);
            v = fc_pack_lo256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 2, 0)));
        } else {
            v = _mm256_loadu_ps(r + 2);
        }
        *nan = _mm256_or_ps(*nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        u = _mm256_cmp_ps(v, h, _CMP_GT_OQ);
        hk = _mm256_blendv_epi8(hk, _mm256_set1_epi32(rel + 2), _mm256_castps_si256(u));
        h = _mm256_max_ps(v, h);
    }
    u = _mm256_cmp_ps(h, *m, _CMP_GT_OQ);
    *k = _mm256_blendv_epi8(*k, hk, _mm256_castps_si256(u));
    *m = _mm256_max_ps(h, *m);
}

static FC_AVX2 Py_ssize_t fc_max_rows_avx2(const float **r, const int *rel, int nr, int kw,
                                           int s, float *om, int64_t *oi, Py_ssize_t lo,
                                           Py_ssize_t hi, Py_ssize_t off, Py_ssize_t base)
{
    Py_ssize_t ow = lo, c;
    const __m256i step = s == 2 ? _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)
                                : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 nan = _mm256_setzero_ps();
    if (hi - lo < 8)
        return fc_max_rows_sse2(r, rel, nr, kw, s, om, oi, lo, hi, off, base);
    for (;;) {
        __m256 m = _mm256_set1_ps(-INFINITY);
        __m256i k = _mm256_setzero_si256(), col, b;
        int i;
        if (ow + 8 > hi)
            ow = hi - 8;
        c = s * ow + off;
        if (kw == 3) {        /* constant kw and s let the folds inline without branches */
            if (s == 2)
                for (i = 0; i < nr; i++) fc_fold8(r[i] + c, 3, 2, rel[i], &m, &k, &nan);
            else
                for (i = 0; i < nr; i++) fc_fold8(r[i] + c, 3, 1, rel[i], &m, &k, &nan);
        } else {
            if (s == 2)
                for (i = 0; i < nr; i++) fc_fold8(r[i] + c, 2, 2, rel[i], &m, &k, &nan);
            else
                for (i = 0; i < nr; i++) fc_fold8(r[i] + c, 2, 1, rel[i], &m, &k, &nan);
        }
        col = _mm256_add_epi32(k, step);
        b = _mm256_set1_epi64x((long long)(base + c));
        _mm256_storeu_ps(om + ow, m);
        if (oi) {
            _mm256_storeu_si256((__m256i *)(oi + ow),
                                _mm256_add_epi64(b, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(col))));
            _mm256_storeu_si256((__m256i *)(oi + ow + 4),
                                _mm256_add_epi64(b, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(col, 1))));
        }
        ow += 8;
        if (ow >= hi)
            return _mm256_movemask_ps(nan) ? -1 : hi;
    }
}

/* ---------------------------------------------------------------------------- AVX-512 */
#define FC_AVX512 __attribute__((target("avx512f")))

static inline __attribute__((always_inline)) FC_AVX512 void
fc_fold16(const float *r, int kw, int s, int rel, __m512 *m, __m512i *k, __mmask16 *nan)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    __m512 h, v;
    __mmask16 u;
    __m512i hk = _mm512_set1_epi32(rel);
    if (s == 2) {
        __m512 a = _mm512_loadu_ps(r), b = _mm512_loadu_ps(r + 16);
        h = _mm512_permutex2var_ps(a, ev, b);                               /* r[0, 2..30] */
        v = _mm512_permutex2var_ps(a, _mm512_add_epi32(ev, _mm512_set1_epi32(1)), b);
    } else {
        h = _mm512_loadu_ps(r);
        v = _mm512_loadu_ps(r + 1);
    }
    *nan |= _mm512_cmp_ps_mask(h, v, _CMP_UNORD_Q);
    u = _mm512_cmp_ps_mask(v, h, _CMP_GT_OQ);
    hk = _mm512_mask_mov_epi32(hk, u, _mm512_set1_epi32(rel + 1));
    h = _mm512_mask_mov_ps(h, u, v);
    if (kw == 3) {
        if (s == 2) {   /* r[2..17] and r[17..32]: evens of the first, odds of the second */
            const __m512i eo = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23,
                                                 25, 27, 29, 31);
            v = _mm512_permutex2var_ps(_mm512_loadu_ps(r + 2), eo, _mm512_loadu_ps(r + 17));
        } else {
            v = _mm512_loadu_ps(r + 2);
        }
        *nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        u = _mm512_cmp_ps_mask(v, h, _CMP_GT_OQ);
        hk = _mm512_mask_mov_epi32(hk, u, _mm512_set1_epi32(rel + 2));
        h = _mm512_mask_mov_ps(h, u, v);
    }
    u = _mm512_cmp_ps_mask(h, *m, _CMP_GT_OQ);
    *k = _mm512_mask_mov_epi32(*k, u, hk);
    *m = _mm512_mask_mov_ps(*m, u, h);
}

/* Values only (oi == NULL, inference): the 4 or 9 taps of 16 windows reduced by a max tree
 * (no index to track, so no compare-and-blend chain), NaN detected on the side as above. */
static FC_AVX512 Py_ssize_t fc_max_vals_avx512(const float **r, int nr, int kw, int s,
                                               float *om, Py_ssize_t lo, Py_ssize_t hi,
                                               Py_ssize_t off)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512i eo = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27,
                                         29, 31);
    Py_ssize_t ow = lo;
    __mmask16 nan = 0;
    for (;;) {
        __m512 m = _mm512_set1_ps(-INFINITY), t0, t1, t2;
        if (ow + 16 > hi)
            ow = hi - 16;
        for (int i = 0; i < nr; i++) {
            const float *p = r[i] + s * ow + off;
            if (s == 2) {
                __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
                t0 = _mm512_permutex2var_ps(a, ev, b);
                t1 = _mm512_permutex2var_ps(a, od, b);
                if (kw == 3)
                    t2 = _mm512_permutex2var_ps(_mm512_loadu_ps(p + 2), eo,
                                                _mm512_loadu_ps(p + 17));
            } else {
                t0 = _mm512_loadu_ps(p);
                t1 = _mm512_loadu_ps(p + 1);
                if (kw == 3)
                    t2 = _mm512_loadu_ps(p + 2);
            }
            nan |= _mm512_cmp_ps_mask(t0, t1, _CMP_UNORD_Q);
            t0 = _mm512_max_ps(t0, t1);
            if (kw == 3) {
                nan |= _mm512_cmp_ps_mask(t2, t2, _CMP_UNORD_Q);
                t0 = _mm512_max_ps(t0, t2);
            }
            m = _mm512_max_ps(m, t0);
        }
        _mm512_storeu_ps(om + ow, m);
        ow += 16;
        if (ow >= hi)
            return nan ? -1 : hi;
    }
}

static FC_AVX512 Py_ssize_t fc_max_rows_avx512(const float **r, const int *rel, int nr,
                                               int kw, int s, float *om, int64_t *oi,
                                               Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t off,
                                               Py_ssize_t base)
{
    Py_ssize_t ow = lo, c;
    const __m512i step = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(s));
    __mmask16 nan = 0;
    if (hi - lo < 16)
        return fc_max_rows_avx2(r, rel, nr, kw, s, om, oi, lo, hi, off, base);
    if (oi == NULL) {   /* constant kw and s again let the taps inline without branches */
        if (kw == 3)
            return s == 2 ? fc_max_vals_avx512(r, nr, 3, 2, om, lo, hi, off)
                          : fc_max_vals_avx512(r, nr, 3, 1, om, lo, hi, off);
        return s == 2 ? fc_max_vals_avx512(r, nr, 2, 2, om, lo, hi, off)
                      : fc_max_vals_avx512(r, nr, 2, 1, om, lo, hi, off);
    }
    for (;;) {
        __m512 m = _mm512_set1_ps(-INFINITY);
        __m512i k = _mm512_setzero_si512(), col, b;
        int i;
        if (ow + 16 > hi)
            ow = hi - 16;
        c = s * ow + off;
        if (kw == 3) {
            if (s == 2)
                for (i = 0; i < nr; i++) fc_fold16(r[i] + c, 3, 2, rel[i], &m, &k, &nan);
            else
                for (i = 0; i < nr; i++) fc_fold16(r[i] + c, 3, 1, rel[i], &m, &k, &nan);
        } else {
            if (s == 2)
                for (i = 0; i < nr; i++) fc_fold16(r[i] + c, 2, 2, rel[i], &m, &k, &nan);
            else
                for (i = 0; i < nr; i++) fc_fold16(r[i] + c, 2, 1, rel[i], &m, &k, &nan);
        }
        col = _mm512_add_epi32(k, step);
        b = _mm512_set1_epi64((long long)(base + c));
        _mm512_storeu_ps(om + ow, m);
        _mm512_storeu_si512((void *)(oi + ow),
                            _mm512_add_epi64(b, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(col))));
        _mm512_storeu_si512((void *)(oi + ow + 8),
                            _mm512_add_epi64(b, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(col, 1))));
        ow += 16;
        if (ow >= hi)
            return nan ? -1 : hi;
    }
}
#endif  /* FC_POOL_X86 */

static Py_ssize_t fc_max_rows_f32(const float **r, const int *rel, int nr, int kw, int s,
                                  float *om, int64_t *oi, Py_ssize_t lo, Py_ssize_t hi,
                                  Py_ssize_t off, Py_ssize_t base)
{
#if FC_POOL_X86
    switch (fc_pool_target()) {
    case FC_POOL_AVX512:
        return fc_max_rows_avx512(r, rel, nr, kw, s, om, oi, lo, hi, off, base);
    case FC_POOL_AVX2:
        return fc_max_rows_avx2(r, rel, nr, kw, s, om, oi, lo, hi, off, base);
    case FC_POOL_SSE2:
        return fc_max_rows_sse2(r, rel, nr, kw, s, om, oi, lo, hi, off, base);
    }
#endif
    return lo;
}

#endif  /* FC_POOL_MAX_H */
