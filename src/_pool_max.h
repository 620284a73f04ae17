/* Row kernels of float32 max pooling (2x2 and 3x3 windows, stride 1 or 2, dilation 1 along
 * W), included from src/pool2d.pyx. Built with the package's plain -O3 (no -march): the
 * AVX-512 and AVX2 bodies carry target attributes and run only after __builtin_cpu_supports
 * said yes; SSE2 is the x86-64 baseline; elsewhere (or forced) pool2d.pyx's loops do it.
 * FASTCONV_POOL_TARGET=avx2|sse2|generic in the environment (read once) forces a lower path,
 * for testing every path on one machine.
 *
 * pool2d.pyx calls fc_max_plane_f32 (at the end), which runs one plane with the widest
 * path that fits. Contract of the row kernels fc_max_rows_* (the same for every path):
 * oi == NULL stores no index (values only; AVX-512 and AVX2 then reduce with a max tree).
 * Windows ow in [lo, hi) over the nr valid window rows r[i] (offset rel[i] from r[0]), window
 * ow starting at column s*ow + off with all its kw taps inside the row. Each window
 * is folded row by row, each row left to right with strict >, so the FIRST maximum in
 * row-major order wins, exactly as PyTorch's per-window loop; only the windows' own taps are
 * read. V windows are done at a time (stride 2: even and odd columns split with shuffles);
 * the last group overlaps the previous one (it recomputes the same values). The folds assume
 * no NaN ("v > best or v is NaN" is then "v > best") and OR an unordered compare of every
 * tap vector on the side: if any tap was NaN the row returns -1 and the plane body redoes
 * it with the per-window loop (fc_max_window_f32), which propagates NaN. So the data are
 * read once, with no NaN pre-pass. Otherwise returns the first ow not done: hi, or lo when
 * the row is too short.
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

/* One max window with bounds checks, dilation 1 along W and dh along H: PyTorch's loop
 * element for element (first maximum wins, NaN propagates; a window holding no element
 * gives -inf and the index of its first tap). oi == NULL: no index. */
static inline void fc_max_window_f32(const float *xp, Py_ssize_t H, Py_ssize_t W,
                                     Py_ssize_t h0, Py_ssize_t w0, int kh, int kw, int dh,
                                     float *om, int64_t *oi)
{
    Py_ssize_t h1 = h0 + (Py_ssize_t)(kh - 1) * dh + 1, w1 = w0 + kw, ih, iw, mi;
    float m = -INFINITY, v;
    if (h0 < 0)
        h0 += ((-h0 + dh - 1) / dh) * dh;
    if (w0 < 0)
        w0 = 0;
    if (h1 > H)
        h1 = H;
    if (w1 > W)
        w1 = W;
    mi = h0 * W + w0;
    for (ih = h0; ih < h1; ih += dh)
        for (iw = w0; iw < w1; iw++) {
            v = xp[ih * W + iw];
            if (v > m || v != v) {
                m = v;
                mi = ih * W + iw;
            }
        }
    *om = m;
    if (oi)
        *oi = mi;
}

/* The windows of output row om (input rows from h0, stride s along W) that a row kernel left:
 * all OW of them when it returned < 0 (a NaN in its rows, or too few windows), else the
 * border windows [0, lo) and [hi, OW). oi == NULL: no index. */
static inline __attribute__((always_inline)) void
fc_max_row_rest_f32(const float *xp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OW, Py_ssize_t h0,
                    int k, int s, int pw, int dh, Py_ssize_t lo, Py_ssize_t hi,
                    Py_ssize_t done, float *om, int64_t *oi)
{
    if (done < 0) {
        lo = OW;
        hi = OW;
    }
    for (Py_ssize_t ow = 0; ow < lo; ow++)
        fc_max_window_f32(xp, H, W, h0, ow * s - pw, k, k, dh, om + ow, oi ? oi + ow : NULL);
    for (Py_ssize_t ow = hi; ow < OW; ow++)
        fc_max_window_f32(xp, H, W, h0, ow * s - pw, k, k, dh, om + ow, oi ? oi + ow : NULL);
}

/* The next plane (the thread's next iteration, most of the time) is prefetched as a plane is
 * done, a share per output row: planes of a few KB are a page or two each, and the hardware
 * prefetchers stop at page boundaries, so each plane would otherwise start with cache misses.
 * Prefetches past the end of the data are harmless (they never fault). */
typedef struct { const char *next; Py_ssize_t at, step, end; } fc_plane_pf;

static inline __attribute__((always_inline)) void fc_plane_pf_row(fc_plane_pf *pf)
{
    for (Py_ssize_t e = pf->at + pf->step; pf->at < e && pf->at < pf->end; pf->at += 64)
        _mm_prefetch(pf->next + pf->at, _MM_HINT_T0);
}

/* The SSE2 row kernel in the values-only kernels' signature (for the plane body below):
 * indices are not stored, so the rows' offsets are not needed (zeros) */
static Py_ssize_t fc_max_vals_sse2(const float **r, int nr, int kw, int s, float *om,
                                   Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t off)
{
    static const int rel[3] = {0, 0, 0};
    return fc_max_rows_sse2(r, rel, nr, kw, s, om, NULL, lo, hi, off, 0);
}

#define PM_ATTR
#define PM(name) name##_sse2
#define PM_VALS fc_max_vals_sse2
#define PM_ROWS fc_max_rows_sse2
#include "_pool_max_plane.h"

/* The values-only kernels FN(r, nr, kw, s, ...) with nr, kw and s as constants, one case
 * per valid (nr <= kw, kw = 2 or 3, s = 1 or 2), keyed by nr * 4 + (kw - 2) * 2 + s - 1. */
#define FC_VALS_CASE(FN, NR, KW, S) \
    case ((NR) * 4 + ((KW) - 2) * 2 + (S) - 1): \
        return FN(r, NR, KW, S, om, lo, hi, off);
#define FC_VALS_SWITCH(FN) \
    FC_VALS_CASE(FN, 1, 2, 1) FC_VALS_CASE(FN, 1, 2, 2) FC_VALS_CASE(FN, 1, 3, 1) \
    FC_VALS_CASE(FN, 1, 3, 2) FC_VALS_CASE(FN, 2, 2, 1) FC_VALS_CASE(FN, 2, 2, 2) \
    FC_VALS_CASE(FN, 2, 3, 1) FC_VALS_CASE(FN, 2, 3, 2) FC_VALS_CASE(FN, 3, 3, 1) \
    FC_VALS_CASE(FN, 3, 3, 2)

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

/* Values only with AVX2, as fc_max_vals_in below for AVX-512 (its comment): 8 windows a
 * group; stride 2 splits even and odd columns once per group with in-lane shuffles and one
 * 64-bit permute (fc_pack_lo256 of the shuffles' max). */
static inline __attribute__((always_inline)) FC_AVX2 void
fc_vmax2_8(const float **r, int nr, Py_ssize_t c, int o0, int o1, __m256 *a, __m256 *b,
           __m256 *nan)
{
    __m256 x = _mm256_loadu_ps(r[0] + c + o0), y = _mm256_loadu_ps(r[0] + c + o1);
    __m256 u = _mm256_cmp_ps(x, y, _CMP_UNORD_Q);
    for (int i = 1; i < nr; i++) {
        __m256 p = _mm256_loadu_ps(r[i] + c + o0), q = _mm256_loadu_ps(r[i] + c + o1);
        u = _mm256_or_ps(u, _mm256_cmp_ps(p, q, _CMP_UNORD_Q));
        x = _mm256_max_ps(x, p);
        y = _mm256_max_ps(y, q);
    }
    *a = x;
    *b = y;
    *nan = _mm256_or_ps(*nan, u);
}

static inline __attribute__((always_inline)) FC_AVX2 Py_ssize_t
fc_max_vals_in8(const float **r, int nr, int kw, int s, float *om, Py_ssize_t lo,
                Py_ssize_t hi, Py_ssize_t off)
{
    Py_ssize_t ow = lo;
    __m256 nan = _mm256_setzero_ps();
    for (;;) {
        __m256 a, b, c2, d, t;
        if (ow + 8 > hi)
            ow = hi - 8;
        if (s == 2) {   /* columns 2ow+off .. 2ow+off+15 (+ 2 .. 16 for kw = 3) */
            fc_vmax2_8(r, nr, 2 * ow + off, 0, 8, &a, &b, &nan);
            t = _mm256_max_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
            if (kw == 3) {   /* evens of columns 2..9, odds of 9..16 */
                fc_vmax2_8(r, nr, 2 * ow + off, 2, 9, &c2, &d, &nan);
                t = _mm256_max_ps(t, _mm256_shuffle_ps(c2, d, _MM_SHUFFLE(3, 1, 2, 0)));
            }
            t = fc_pack_lo256(t);
        } else {
            fc_vmax2_8(r, nr, ow + off, 0, 1, &a, &b, &nan);
            t = _mm256_max_ps(a, b);
            if (kw == 3) {
                fc_vmax2_8(r, nr, ow + off, 2, 2, &c2, &d, &nan);
                t = _mm256_max_ps(t, c2);
            }
        }
        _mm256_storeu_ps(om + ow, t);
        ow += 8;
        if (ow >= hi)
            return _mm256_movemask_ps(nan) ? -1 : hi;
    }
}

static FC_AVX2 Py_ssize_t fc_max_vals_avx2(const float **r, int nr, int kw, int s, float *om,
                                           Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t off)
{
    switch (nr * 4 + (kw - 2) * 2 + s - 1) {
    FC_VALS_SWITCH(fc_max_vals_in8)
    }
    return lo;   /* not reached: nr <= kw */
}

static inline __attribute__((always_inline)) FC_AVX2 Py_ssize_t
fc_max_rows_avx2_in(const float **r, const int *rel, int nr, int kw, int s, float *om,
                    int64_t *oi, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t off,
                    Py_ssize_t base)
{
    Py_ssize_t ow = lo, c;
    const __m256i step = s == 2 ? _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)
                                : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 nan = _mm256_setzero_ps();
    if (hi - lo < 8)
        return fc_max_rows_sse2(r, rel, nr, kw, s, om, oi, lo, hi, off, base);
    if (oi == NULL)
        return fc_max_vals_avx2(r, nr, kw, s, om, lo, hi, off);
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
                                _mm256_add_epi64(
                                    b, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(col))));
            _mm256_storeu_si256((__m256i *)(oi + ow + 4),
                                _mm256_add_epi64(
                                    b, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(col, 1))));
        }
        ow += 8;
        if (ow >= hi)
            return _mm256_movemask_ps(nan) ? -1 : hi;
    }
}

static FC_AVX2 Py_ssize_t fc_max_rows_avx2(const float **r, const int *rel, int nr, int kw,
                                           int s, float *om, int64_t *oi, Py_ssize_t lo,
                                           Py_ssize_t hi, Py_ssize_t off, Py_ssize_t base)
{
    return fc_max_rows_avx2_in(r, rel, nr, kw, s, om, oi, lo, hi, off, base);
}

#define PM_ATTR FC_AVX2
#define PM(name) name##_avx2
#define PM_VALS fc_max_vals_in8
#define PM_ROWS fc_max_rows_avx2_in
#include "_pool_max_plane.h"

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

/* Values only (oi == NULL, inference): no index to track, so each group of 16 windows is
 * reduced with max instructions, down the nr window rows first (vertical: one max per
 * loaded vector) and then across the taps (stride 2: one even/odd split per group, not one
 * per row). NaN is detected on the side, one unordered compare per pair of loaded vectors.
 * nr, kw and s are constants at every call (the switch below), so the row loop has no
 * branches and keeps the row pointers in registers. */
static inline __attribute__((always_inline)) FC_AVX512 void
fc_vmax2(const float **r, int nr, Py_ssize_t c, int o0, int o1, __m512 *a, __m512 *b,
         __mmask16 *nan)
{
    __m512 x = _mm512_loadu_ps(r[0] + c + o0), y = _mm512_loadu_ps(r[0] + c + o1);
    __mmask16 u = _mm512_cmp_ps_mask(x, y, _CMP_UNORD_Q);
    for (int i = 1; i < nr; i++) {
        __m512 p = _mm512_loadu_ps(r[i] + c + o0), q = _mm512_loadu_ps(r[i] + c + o1);
        u = _kor_mask16(u, _mm512_cmp_ps_mask(p, q, _CMP_UNORD_Q));
        x = _mm512_max_ps(x, p);
        y = _mm512_max_ps(y, q);
    }
    *a = x;
    *b = y;
    *nan = _kor_mask16(*nan, u);
}

static inline __attribute__((always_inline)) FC_AVX512 Py_ssize_t
fc_max_vals_in(const float **r, int nr, int kw, int s, float *om, Py_ssize_t lo,
               Py_ssize_t hi, Py_ssize_t off)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512i eo = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27,
                                         29, 31);
    Py_ssize_t ow = lo;
    __mmask16 nan = 0;
    for (;;) {
        __m512 a, b, c2, d, t;
        if (ow + 16 > hi)
            ow = hi - 16;
        if (s == 2) {   /* columns 2ow+off .. 2ow+off+31 (+ 2 .. 33 for kw = 3) */
            fc_vmax2(r, nr, 2 * ow + off, 0, 16, &a, &b, &nan);
            t = _mm512_max_ps(_mm512_permutex2var_ps(a, ev, b), _mm512_permutex2var_ps(a, od, b));
            if (kw == 3) {
                fc_vmax2(r, nr, 2 * ow + off, 2, 17, &c2, &d, &nan);
                t = _mm512_max_ps(t, _mm512_permutex2var_ps(c2, eo, d));
            }
        } else {
            fc_vmax2(r, nr, ow + off, 0, 1, &a, &b, &nan);
            t = _mm512_max_ps(a, b);
            if (kw == 3) {
                fc_vmax2(r, nr, ow + off, 2, 2, &c2, &d, &nan);
                t = _mm512_max_ps(t, c2);
            }
        }
        _mm512_storeu_ps(om + ow, t);
        ow += 16;
        if (ow >= hi)
            return nan ? -1 : hi;
    }
}

static FC_AVX512 Py_ssize_t fc_max_vals_avx512(const float **r, int nr, int kw, int s,
                                               float *om, Py_ssize_t lo, Py_ssize_t hi,
                                               Py_ssize_t off)
{
    switch (nr * 4 + (kw - 2) * 2 + s - 1) {
    FC_VALS_SWITCH(fc_max_vals_in)
    }
    return lo;   /* not reached: nr <= kw */
}

static inline __attribute__((always_inline)) FC_AVX512 Py_ssize_t
fc_max_rows_avx512_in(const float **r, const int *rel, int nr, int kw, int s, float *om,
                      int64_t *oi, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t off,
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
        return fc_max_vals_avx512(r, nr, kw, s, om, lo, hi, off);
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
                            _mm512_add_epi64(
                                b, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(col))));
        _mm512_storeu_si512((void *)(oi + ow + 8),
                            _mm512_add_epi64(
                                b, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(col, 1))));
        ow += 16;
        if (ow >= hi)
            return nan ? -1 : hi;
    }
}

#define PM_ATTR FC_AVX512
#define PM(name) name##_avx512
#define PM_VALS fc_max_vals_in
#define PM_ROWS fc_max_rows_avx512_in
#include "_pool_max_plane.h"

#endif  /* FC_POOL_X86 */

/* The plane path: returns 0 when it did the plane, -1 when the caller must (the portable
 * path forced, or fewer than 4 interior windows per row). It takes the widest body whose
 * vector the rows fill, up to the CPU's (or the forced) target: AVX-512 >= 16 windows,
 * AVX2 >= 8 (every AVX-512 CPU has AVX2), SSE2 >= 4. */
static int fc_max_plane_f32(const float *xp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                            Py_ssize_t OW, int k, int sh, int s, int ph, int pw, int dh,
                            Py_ssize_t lo, Py_ssize_t hi, float *op, int64_t *ip)
{
#if FC_POOL_X86
    int t = fc_pool_target();
    if (hi - lo >= 16 && t == FC_POOL_AVX512) {
        fc_max_plane_avx512(xp, H, W, OH, OW, k, sh, s, ph, pw, dh, lo, hi, op, ip);
        return 0;
    }
    if (hi - lo >= 8 && t <= FC_POOL_AVX2) {
        fc_max_plane_avx2(xp, H, W, OH, OW, k, sh, s, ph, pw, dh, lo, hi, op, ip);
        return 0;
    }
    if (hi - lo >= 4 && t <= FC_POOL_SSE2) {
        fc_max_plane_sse2(xp, H, W, OH, OW, k, sh, s, ph, pw, dh, lo, hi, op, ip);
        return 0;
    }
#endif
    return -1;
}

#endif  /* FC_POOL_MAX_H */
