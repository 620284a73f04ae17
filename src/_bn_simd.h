/* Float32 reduction runs of src/batchnorm2d.pyx with run-time ISA dispatch (AVX-512, AVX2;
 * elsewhere, or forced with FASTCONV_BN_TARGET=avx2|generic read once, the Cython loops run).
 * Built with the package's plain -O3: the SIMD bodies carry target attributes and run only
 * after __builtin_cpu_supports said yes.
 *
 * Each function does the full RUN blocks (128 values) of a reduction exactly as the Cython
 * loop it replaces: 32 float lanes, lane l of block i summing x[i + 32k + l] for k = 0..3 in
 * order from 0, the lane's run then added into the double acc[l] (kept in memory, in/out).
 * Same operations, same order, no fused multiply-add (contraction is switched off here, the
 * baseline ISA has none), so the result is bit-identical to the Cython loop on every path.
 * They return 1 when they did the work, 0 when the caller's loop must.
 */
#ifndef FC_BN_SIMD_H
#define FC_BN_SIMD_H

#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define FC_BN_X86 1
#include <immintrin.h>
#else
#define FC_BN_X86 0
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF   /* GCC: the optimize("fp-contract=off") attributes below */
#endif

enum { FC_BN_AVX512 = 0, FC_BN_AVX2 = 1, FC_BN_GENERIC = 2 };
static const char *const fc_bn_target_names[3] = {"avx512f", "avx2", "generic"};
static int fc_bn_target_cache = -1;

static int fc_bn_target(void)
{
    int t = __atomic_load_n(&fc_bn_target_cache, __ATOMIC_RELAXED), best = FC_BN_GENERIC;
    const char *want;
    if (t >= 0)
        return t;
#if FC_BN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        best = FC_BN_AVX512;
    else if (__builtin_cpu_supports("avx2"))
        best = FC_BN_AVX2;
#endif
    t = best;
    want = getenv("FASTCONV_BN_TARGET");
    if (want)
        for (int u = best; u <= FC_BN_GENERIC; ++u)
            if (strcmp(want, fc_bn_target_names[u]) == 0)
                t = u;
    /* racing first callers compute the same answer: a relaxed store is enough */
    __atomic_store_n(&fc_bn_target_cache, t, __ATOMIC_RELAXED);
    return t;
}

/* Ask for the first KiB at p ahead of use. One channel's planes lie C*L values apart, and the
 * hardware prefetchers do not follow a stream across a page, so without this every plane of
 * a small-L layer starts with cold misses. */
static inline void fc_prefetch(const void *p, Py_ssize_t nbytes)
{
#if defined(__GNUC__)
    const char *c = (const char *)p;
    if (nbytes > 1024)      /* measured: the first 1 KiB starts the streamer; 4 KiB stalls */
        nbytes = 1024;
    for (Py_ssize_t i = 0; i < nbytes; i += 64)
        __builtin_prefetch(c + i, 0, 3);
#else
    (void)p;
    (void)nbytes;
#endif
}

static const char *fc_bn_active_target(void) { return fc_bn_target_names[fc_bn_target()]; }

#if FC_BN_X86
#define FC_BN_512 __attribute__((target("avx512f"), optimize("fp-contract=off")))
#define FC_BN_256 __attribute__((target("avx2"), optimize("fp-contract=off")))

/* acc[0..32) += (double) p0 (lanes 0-15), p1 (lanes 16-31) */
static inline __attribute__((always_inline)) FC_BN_512 void
fc_bn_acc512(double *acc, __m512 p0, __m512 p1)
{
    __m512 p[2] = {p0, p1};
    for (int h = 0; h < 2; h++) {
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(p[h]));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p[h]), 1)));
        _mm512_storeu_pd(acc + 16 * h, _mm512_add_pd(_mm512_loadu_pd(acc + 16 * h), lo));
        _mm512_storeu_pd(acc + 16 * h + 8, _mm512_add_pd(_mm512_loadu_pd(acc + 16 * h + 8), hi));
    }
}

static inline __attribute__((always_inline)) FC_BN_256 void
fc_bn_acc256(double *acc, __m256 p0, __m256 p1, __m256 p2, __m256 p3)
{
    __m256 p[4] = {p0, p1, p2, p3};
    for (int h = 0; h < 4; h++) {
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(p[h]));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(p[h], 1));
        _mm256_storeu_pd(acc + 8 * h, _mm256_add_pd(_mm256_loadu_pd(acc + 8 * h), lo));
        _mm256_storeu_pd(acc + 8 * h + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 8 * h + 4), hi));
    }
}

/* --- sum x */
static FC_BN_512 void fc_bn_sum_512(const float *x, Py_ssize_t nr, double *acc)
{
    for (Py_ssize_t i = 0; i < nr; i += 128) {
        __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
        for (int k = 0; k < 4; k++) {
            p0 = _mm512_add_ps(p0, _mm512_loadu_ps(x + i + 32 * k));
            p1 = _mm512_add_ps(p1, _mm512_loadu_ps(x + i + 32 * k + 16));
        }
        fc_bn_acc512(acc, p0, p1);
    }
}

static FC_BN_256 void fc_bn_sum_256(const float *x, Py_ssize_t nr, double *acc)
{
    for (Py_ssize_t i = 0; i < nr; i += 128) {
        __m256 p[4];
        for (int l = 0; l < 4; l++)
            p[l] = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 4; l++)
                p[l] = _mm256_add_ps(p[l], _mm256_loadu_ps(x + i + 32 * k + 8 * l));
        fc_bn_acc256(acc, p[0], p[1], p[2], p[3]);
    }
}

/* --- d = x - m: sum d, sum d*d */
static FC_BN_512 void fc_bn_centred_512(const float *x, Py_ssize_t nr, float m, double *acc,
                                        double *acc2)
{
    const __m512 vm = _mm512_set1_ps(m);
    for (Py_ssize_t i = 0; i < nr; i += 128) {
        __m512 p0 = _mm512_setzero_ps(), p1 = p0, q0 = p0, q1 = p0, d0, d1;
        for (int k = 0; k < 4; k++) {
            d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k), vm);
            d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k + 16), vm);
            p0 = _mm512_add_ps(p0, d0);
            p1 = _mm512_add_ps(p1, d1);
            q0 = _mm512_add_ps(q0, _mm512_mul_ps(d0, d0));
            q1 = _mm512_add_ps(q1, _mm512_mul_ps(d1, d1));
        }
        fc_bn_acc512(acc, p0, p1);
        fc_bn_acc512(acc2, q0, q1);
    }
}

static FC_BN_256 void fc_bn_centred_256(const float *x, Py_ssize_t nr, float m, double *acc,
                                        double *acc2)
{
    const __m256 vm = _mm256_set1_ps(m);
    for (Py_ssize_t i = 0; i < nr; i += 128) {
        __m256 p[4], q[4], d;
        for (int l = 0; l < 4; l++)
            p[l] = q[l] = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 4; l++) {
                d = _mm256_sub_ps(_mm256_loadu_ps(x + i + 32 * k + 8 * l), vm);
                p[l] = _mm256_add_ps(p[l], d);
                q[l] = _mm256_add_ps(q[l], _mm256_mul_ps(d, d));
            }
        fc_bn_acc256(acc, p[0], p[1], p[2], p[3]);
        fc_bn_acc256(acc2, q[0], q[1], q[2], q[3]);
    }
}

/* --- sum gy, sum gy * ((x - m_hi) - m_lo) */
static FC_BN_512 void fc_bn_grad_512(const float *gy, const float *x, Py_ssize_t nr, float mh,
                                     float ml, double *acc, double *acc2)
{
    const __m512 vh = _mm512_set1_ps(mh), vl = _mm512_set1_ps(ml);
    for (Py_ssize_t i = 0; i < nr; i += 128) {
        __m512 p0 = _mm512_setzero_ps(), p1 = p0, q0 = p0, q1 = p0, g0, g1, d0, d1;
        for (int k = 0; k < 4; k++) {
            g0 = _mm512_loadu_ps(gy + i + 32 * k);
            g1 = _mm512_loadu_ps(gy + i + 32 * k + 16);
            d0 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k), vh), vl);
            d1 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k + 16), vh), vl);
            p0 = _mm512_add_ps(p0, g0);
            p1 = _mm512_add_ps(p1, g1);
            q0 = _mm512_add_ps(q0, _mm512_mul_ps(g0, d0));
            q1 = _mm512_add_ps(q1, _mm512_mul_ps(g1, d1));
        }
        fc_bn_acc512(acc, p0, p1);
        fc_bn_acc512(acc2, q0, q1);
    }
}

static FC_BN_256 void fc_bn_grad_256(const float *gy, const float *x, Py_ssize_t nr, float mh,
                                     float ml, double *acc, double *acc2)
{
    const __m256 vh = _mm256_set1_ps(mh), vl = _mm256_set1_ps(ml);
    for (Py_ssize_t i = 0; i < nr; i += 128) {
        __m256 p[4], q[4], g, d;
        for (int l = 0; l < 4; l++)
            p[l] = q[l] = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 4; l++) {
                g = _mm256_loadu_ps(gy + i + 32 * k + 8 * l);
                d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 32 * k + 8 * l), vh), vl);
                p[l] = _mm256_add_ps(p[l], g);
                q[l] = _mm256_add_ps(q[l], _mm256_mul_ps(g, d));
            }
        fc_bn_acc256(acc, p[0], p[1], p[2], p[3]);
        fc_bn_acc256(acc2, q[0], q[1], q[2], q[3]);
    }
}

#endif  /* FC_BN_X86 */

static int fc_bn_sum_runs(const float *x, Py_ssize_t nr, double *acc)
{
#if FC_BN_X86
    switch (fc_bn_target()) {
    case FC_BN_AVX512: fc_bn_sum_512(x, nr, acc); return 1;
    case FC_BN_AVX2: fc_bn_sum_256(x, nr, acc); return 1;
    }
#endif
    return 0;
}

static int fc_bn_centred_runs(const float *x, Py_ssize_t nr, float m, double *acc,
                              double *acc2)
{
#if FC_BN_X86
    switch (fc_bn_target()) {
    case FC_BN_AVX512: fc_bn_centred_512(x, nr, m, acc, acc2); return 1;
    case FC_BN_AVX2: fc_bn_centred_256(x, nr, m, acc, acc2); return 1;
    }
#endif
    return 0;
}

static int fc_bn_grad_runs(const float *gy, const float *x, Py_ssize_t nr, float mh, float ml,
                           double *acc, double *acc2)
{
#if FC_BN_X86
    switch (fc_bn_target()) {
    case FC_BN_AVX512: fc_bn_grad_512(gy, x, nr, mh, ml, acc, acc2); return 1;
    case FC_BN_AVX2: fc_bn_grad_256(gy, x, nr, mh, ml, acc, acc2); return 1;
    }
#endif
    return 0;
}

#endif  /* FC_BN_SIMD_H */
