/* Float32 SIMD for src/batchnorm2d.pyx with run-time ISA dispatch (AVX-512, AVX2; elsewhere,
 * or forced with FASTCONV_BN_TARGET=avx2|generic read once, the Cython loops run). Built with
 * the package's plain -O3: the SIMD bodies carry target attributes and run only after
 * __builtin_cpu_supports said yes.
 *
 * The reductions sum in the Cython loops' order: 32 float lanes, lane l of a RUN block
 * (128 values; STATS_RUN = 512 for the statistics' centred sums) at i summing x[i + 32k + l]
 * for k = 0..3 (0..15) in order from 0, the lane's run then added into the double acc[l]; the
 * remaining 32-value blocks and the last values into the float lanes; finally total = sum
 * over l of (acc[l] + part[l]), l in order. AVX-512 and AVX2 do the whole reduction (the
 * *_all functions: accumulators in registers, one call per chunk; and on AVX-512 pairs of
 * chunks, fc_bn_centred_pair). A chunk's shift (_shift, 32 values) stays in Cython. The
 * elementwise passes (fc_bn_normalize, fc_bn_grad_input) are the Cython loops' expressions.
 * Same operations, same order, no fused multiply-add (contraction is switched off here, the
 * baseline ISA has none), so the result is bit-identical to the Cython loops on every path.
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

/* Read-prefetch the cache lines of bytes [from, to) at p. */
static inline void fc_prefetch_lines(const void *p, Py_ssize_t from, Py_ssize_t to)
{
#if defined(__GNUC__)
    const char *c = (const char *)p;
    for (Py_ssize_t i = from; i < to; i += 64)
        __builtin_prefetch(c + i, 0, 3);
#else
    (void)p;
    (void)from;
    (void)to;
#endif
}

/* Ask for the first KiB at p ahead of use. One channel's planes lie C*L values apart, and the
 * hardware prefetchers do not follow a stream across a page, so without this every plane of
 * a small-L layer starts with cold misses. */
static inline void fc_prefetch(const void *p, Py_ssize_t nbytes)
{
    /* measured: the first 1 KiB starts the streamer; 4 KiB stalls */
    fc_prefetch_lines(p, 0, nbytes < 1024 ? nbytes : 1024);
}

/* The same for the first KiB of a plane about to be written: PREFETCHW fetches the lines
 * in the exclusive state, so the stores that follow find them owned instead of queueing in the
 * store buffer for their read-for-ownership, which for a plane at a new page no prefetcher has
 * started. Measured: forward 0.95x the time without it (0.5-2 KiB alike, 4 KiB no gain).
 * PREFETCHW is a no-op on x86 CPUs without it (Intel before Broadwell). */
static inline void fc_prefetch_w(const void *p, Py_ssize_t nbytes)
{
#if FC_BN_X86
    const char *c = (const char *)p;
    if (nbytes > 1024)
        nbytes = 1024;
    for (Py_ssize_t i = 0; i < nbytes; i += 64)
        __asm__ volatile("prefetchw %0" : : "m"(c[i]));
#else
    (void)p;
    (void)nbytes;
#endif
}

/* The rest of the first page after the KiB fc_prefetch asked for: bytes [1024, min(nbytes,
 * 4096)) at p (nothing for NULL). The statistics ask for it once a plane pair's shifts are
 * taken, before its centred passes, so the next pair's loads overlap those passes instead of
 * waiting for them. Measured on (64, 64, 32, 32) planes at 1 thread, statistics alone (then
 * a sum pass before the centred one): 0.77-0.81x the time of the first KiB only, and better
 * than the whole page asked for at once (0.93-0.98x); with the one-pass statistics, the
 * training forward 0.95x the time of no tail prefetch (2 threads). */
static inline void fc_prefetch_tail(const void *p, Py_ssize_t nbytes)
{
    if (p != NULL)
        fc_prefetch_lines(p, 1024, nbytes < 4096 ? nbytes : 4096);
}

static const char *fc_bn_active_target(void) { return fc_bn_target_names[fc_bn_target()]; }

#if FC_BN_X86
#define FC_BN_512 __attribute__((target("avx512f"), optimize("fp-contract=off")))
#define FC_BN_256 __attribute__((target("avx2"), optimize("fp-contract=off")))

/* --- whole reductions: runs, the remaining 32-value blocks, the last n % 32 values, and the
 * final sum over the lanes, exactly as the Cython function they replace (_sum,
 * _centred_sums, _plane_grad_sums): the lane accumulators stay in registers instead of
 * going through memory once per run, and the call overhead is paid once per chunk. AVX-512
 * holds the 32 lanes in 2 vectors, AVX2 (after these) in 4. */

/* the 32 float lanes as two vectors; masks of lanes 0-15 and 16-31 below r (r < 32) */
static inline __attribute__((always_inline)) void fc_bn_tail_masks(Py_ssize_t r, __mmask16 *k0,
                                                                  __mmask16 *k1)
{
    *k0 = (__mmask16)(r >= 16 ? 0xFFFFu : (1u << r) - 1);
    *k1 = (__mmask16)(r > 16 ? (1u << (r - 16)) - 1 : 0);
}

/* acc (4 x 8 double lanes) += (double) p0 (lanes 0-15), p1 (lanes 16-31) */
#define FC_BN_ACC4(a, p0, p1) do { \
    a[0] = _mm512_add_pd(a[0], _mm512_cvtps_pd(_mm512_castps512_ps256(p0))); \
    a[1] = _mm512_add_pd(a[1], _mm512_cvtps_pd(_mm256_castpd_ps( \
        _mm512_extractf64x4_pd(_mm512_castps_pd(p0), 1)))); \
    a[2] = _mm512_add_pd(a[2], _mm512_cvtps_pd(_mm512_castps512_ps256(p1))); \
    a[3] = _mm512_add_pd(a[3], _mm512_cvtps_pd(_mm256_castpd_ps( \
        _mm512_extractf64x4_pd(_mm512_castps_pd(p1), 1)))); \
} while (0)

/* total = 0; total += t[l] for l = 0..31 in order (the Cython epilogue, t[l] = acc[l] +
 * part[l]), shared by both widths */
static inline double fc_bn_sum32(const double *t)
{
    double total = 0;
    for (int l = 0; l < 32; l++)
        total += t[l];
    return total;
}

static inline __attribute__((always_inline)) FC_BN_512 double
fc_bn_lane_total(__m512d *a, __m512 p0, __m512 p1)
{
    double t[32];
    FC_BN_ACC4(a, p0, p1);
    for (int h = 0; h < 4; h++)
        _mm512_storeu_pd(t + 8 * h, a[h]);
    return fc_bn_sum32(t);
}

/* the lanes of _centred_sums: acc a[4], b[4] (double), parts p0, p1, q0, q1 (float) */
static inline __attribute__((always_inline)) FC_BN_512 void
fc_bn_centred_lanes(const float *x, Py_ssize_t n, float m, __m512d *a, __m512d *b, __m512 *pq)
{
    const __m512 vm = _mm512_set1_ps(m);
    Py_ssize_t i, nr = n - n % 512, nv = n - n % 32;
    __m512 p0, p1, q0, q1, d0, d1;
    __mmask16 k0, k1;
    for (int h = 0; h < 4; h++)
        a[h] = b[h] = _mm512_setzero_pd();
    for (i = 0; i < nr; i += 512) {
        p0 = p1 = q0 = q1 = _mm512_setzero_ps();
        for (int k = 0; k < 16; k++) {
            d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k), vm);
            d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k + 16), vm);
            p0 = _mm512_add_ps(p0, d0);
            p1 = _mm512_add_ps(p1, d1);
            q0 = _mm512_add_ps(q0, _mm512_mul_ps(d0, d0));
            q1 = _mm512_add_ps(q1, _mm512_mul_ps(d1, d1));
        }
        FC_BN_ACC4(a, p0, p1);
        FC_BN_ACC4(b, q0, q1);
    }
    p0 = p1 = q0 = q1 = _mm512_setzero_ps();
    for (; i < nv; i += 32) {
        d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
        d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
        p0 = _mm512_add_ps(p0, d0);
        p1 = _mm512_add_ps(p1, d1);
        q0 = _mm512_add_ps(q0, _mm512_mul_ps(d0, d0));
        q1 = _mm512_add_ps(q1, _mm512_mul_ps(d1, d1));
    }
    if (nv < n) {
        fc_bn_tail_masks(n - nv, &k0, &k1);
        d0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(k0, x + nv), vm);
        d1 = _mm512_sub_ps(_mm512_maskz_loadu_ps(k1, x + nv + 16), vm);
        p0 = _mm512_mask_add_ps(p0, k0, p0, d0);
        p1 = _mm512_mask_add_ps(p1, k1, p1, d1);
        q0 = _mm512_mask_add_ps(q0, k0, q0, _mm512_mul_ps(d0, d0));
        q1 = _mm512_mask_add_ps(q1, k1, q1, _mm512_mul_ps(d1, d1));
    }
    pq[0] = p0, pq[1] = p1, pq[2] = q0, pq[3] = q1;
}

static FC_BN_512 void fc_bn_centred_all_512(const float *x, Py_ssize_t n, float m,
                                            double *sum_d, double *sum_dd)
{
    __m512d a[4], b[4];
    __m512 pq[4];
    fc_bn_centred_lanes(x, n, m, a, b, pq);
    *sum_d = fc_bn_lane_total(a, pq[0], pq[1]);
    *sum_dd = fc_bn_lane_total(b, pq[2], pq[3]);
}

/* _centred_sums of two chunks of n values at once, x0 and x1, from their shifts m0 and m1:
 * sd[j] = sum d, sdd[j] = sum d*d. The same operations as one chunk at a time, but the serial
 * lane sums (32-add dependency chains) of one chunk run alongside the other's. */
static FC_BN_512 void fc_bn_centred_pair_512(const float *x0, const float *x1, Py_ssize_t n,
                                             float m0, float m1, double *sd, double *sdd)
{
    __m512d a[4], b[4], c[4], d[4];
    __m512 pq[4], rs[4];
    double t[4][32], s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    fc_bn_centred_lanes(x0, n, m0, a, b, pq);
    fc_bn_centred_lanes(x1, n, m1, c, d, rs);
    FC_BN_ACC4(a, pq[0], pq[1]);
    FC_BN_ACC4(b, pq[2], pq[3]);
    FC_BN_ACC4(c, rs[0], rs[1]);
    FC_BN_ACC4(d, rs[2], rs[3]);
    for (int h = 0; h < 4; h++) {
        _mm512_storeu_pd(t[0] + 8 * h, a[h]);
        _mm512_storeu_pd(t[1] + 8 * h, b[h]);
        _mm512_storeu_pd(t[2] + 8 * h, c[h]);
        _mm512_storeu_pd(t[3] + 8 * h, d[h]);
    }
    for (int l = 0; l < 32; l++) {
        s0 += t[0][l];
        s1 += t[1][l];
        s2 += t[2][l];
        s3 += t[3][l];
    }
    sd[0] = s0, sdd[0] = s1, sd[1] = s2, sdd[1] = s3;
}

/* relu's backward mask of gy (the fused batch_norm + relu, _relu_masked in the .pyx): 0 where
 * the normalised value (d * ra) + rb is <= 0, gy elsewhere (NaN passes) */
static inline __attribute__((always_inline)) FC_BN_512 __m512
fc_bn_relu_mask(__m512 g, __m512 d, __m512 vra, __m512 vrb)
{
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_add_ps(_mm512_mul_ps(d, vra), vrb),
                                                  _mm512_setzero_ps(), _CMP_NLE_UQ), g);
}

/* the lanes of _plane_grad_sums: acc a[4], b[4] (double), parts pq[4] (float); with relu, of
 * gy masked by fc_bn_relu_mask (the same values _relu_masked writes, summed in the same
 * order) */
static inline __attribute__((always_inline)) FC_BN_512 void
fc_bn_grad_lanes(const float *gy, const float *x, Py_ssize_t n, float mh, float ml, __m512d *a,
                 __m512d *b, __m512 *pq, int relu, float ra, float rb)
{
    const __m512 vh = _mm512_set1_ps(mh), vl = _mm512_set1_ps(ml);
    const __m512 vra = _mm512_set1_ps(ra), vrb = _mm512_set1_ps(rb);
    Py_ssize_t i, nr = n - n % 128, nv = n - n % 32;
    __m512 p0, p1, q0, q1, g0, g1, d0, d1;
    __mmask16 k0, k1;
    for (int h = 0; h < 4; h++)
        a[h] = b[h] = _mm512_setzero_pd();
    for (i = 0; i < nr; i += 128) {
        p0 = p1 = q0 = q1 = _mm512_setzero_ps();
        for (int k = 0; k < 4; k++) {
            g0 = _mm512_loadu_ps(gy + i + 32 * k);
            g1 = _mm512_loadu_ps(gy + i + 32 * k + 16);
            d0 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k), vh), vl);
            d1 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 32 * k + 16), vh), vl);
            if (relu) {
                g0 = fc_bn_relu_mask(g0, d0, vra, vrb);
                g1 = fc_bn_relu_mask(g1, d1, vra, vrb);
            }
            p0 = _mm512_add_ps(p0, g0);
            p1 = _mm512_add_ps(p1, g1);
            q0 = _mm512_add_ps(q0, _mm512_mul_ps(g0, d0));
            q1 = _mm512_add_ps(q1, _mm512_mul_ps(g1, d1));
        }
        FC_BN_ACC4(a, p0, p1);
        FC_BN_ACC4(b, q0, q1);
    }
    p0 = p1 = q0 = q1 = _mm512_setzero_ps();
    for (; i < nv; i += 32) {
        g0 = _mm512_loadu_ps(gy + i);
        g1 = _mm512_loadu_ps(gy + i + 16);
        d0 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vh), vl);
        d1 = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vh), vl);
        if (relu) {
            g0 = fc_bn_relu_mask(g0, d0, vra, vrb);
            g1 = fc_bn_relu_mask(g1, d1, vra, vrb);
        }
        p0 = _mm512_add_ps(p0, g0);
        p1 = _mm512_add_ps(p1, g1);
        q0 = _mm512_add_ps(q0, _mm512_mul_ps(g0, d0));
        q1 = _mm512_add_ps(q1, _mm512_mul_ps(g1, d1));
    }
    if (nv < n) {
        fc_bn_tail_masks(n - nv, &k0, &k1);
        g0 = _mm512_maskz_loadu_ps(k0, gy + nv);
        g1 = _mm512_maskz_loadu_ps(k1, gy + nv + 16);
        d0 = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k0, x + nv), vh), vl);
        d1 = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k1, x + nv + 16), vh), vl);
        if (relu) {     /* lanes past n: gy loaded as 0 stays 0 */
            g0 = fc_bn_relu_mask(g0, d0, vra, vrb);
            g1 = fc_bn_relu_mask(g1, d1, vra, vrb);
        }
        p0 = _mm512_mask_add_ps(p0, k0, p0, g0);
        p1 = _mm512_mask_add_ps(p1, k1, p1, g1);
        q0 = _mm512_mask_add_ps(q0, k0, q0, _mm512_mul_ps(g0, d0));
        q1 = _mm512_mask_add_ps(q1, k1, q1, _mm512_mul_ps(g1, d1));
    }
    pq[0] = p0, pq[1] = p1, pq[2] = q0, pq[3] = q1;
}

static FC_BN_512 void fc_bn_grad_all_512(const float *gy, const float *x, Py_ssize_t n,
                                         float mh, float ml, double *sum_gy, double *dot)
{
    __m512d a[4], b[4];
    __m512 pq[4];
    fc_bn_grad_lanes(gy, x, n, mh, ml, a, b, pq, 0, 0.0f, 0.0f);
    *sum_gy = fc_bn_lane_total(a, pq[0], pq[1]);
    *dot = fc_bn_lane_total(b, pq[2], pq[3]);
}

static FC_BN_512 void fc_bn_grad_all_relu_512(const float *gy, const float *x, Py_ssize_t n,
                                              float mh, float ml, float ra, float rb,
                                              double *sum_gy, double *dot)
{
    __m512d a[4], b[4];
    __m512 pq[4];
    fc_bn_grad_lanes(gy, x, n, mh, ml, a, b, pq, 1, ra, rb);
    *sum_gy = fc_bn_lane_total(a, pq[0], pq[1]);
    *dot = fc_bn_lane_total(b, pq[2], pq[3]);
}

#undef FC_BN_ACC4

/* ---- the same whole reductions with AVX2: the 32 lanes as 4 vectors of 8. Masked-off tail
 * lanes are added as +0 (a lane's float sum starts at +0 and so is never -0: adding +0
 * leaves it exactly as it is), and products of masked-off lanes are zeroed first. */
#define FC_BN_ACC8(a, p) do {                                                                \
    for (int v_ = 0; v_ < 4; v_++) {                                                         \
        a[2 * v_] = _mm256_add_pd(a[2 * v_], _mm256_cvtps_pd(_mm256_castps256_ps128(p[v_]))); \
        a[2 * v_ + 1] = _mm256_add_pd(a[2 * v_ + 1],                                         \
                                      _mm256_cvtps_pd(_mm256_extractf128_ps(p[v_], 1)));     \
    }                                                                                        \
} while (0)

static inline __attribute__((always_inline)) FC_BN_256 double
fc_bn_lane_total256(__m256d *a, const __m256 *p)
{
    double t[32];
    FC_BN_ACC8(a, p);
    for (int h = 0; h < 8; h++)
        _mm256_storeu_pd(t + 4 * h, a[h]);
    return fc_bn_sum32(t);
}

/* masks of lanes 8v .. 8v+7 below r (r < 32) */
static inline __attribute__((always_inline)) FC_BN_256 void
fc_bn_tail_masks256(Py_ssize_t r, __m256i *k)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int v = 0; v < 4; v++)
        k[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(r - 8 * v)), iota);
}

static FC_BN_256 void fc_bn_centred_all_256(const float *x, Py_ssize_t n, float m,
                                            double *sum_d, double *sum_dd)
{
    const __m256 vm = _mm256_set1_ps(m);
    Py_ssize_t i, nr = n - n % 512, nv = n - n % 32;
    __m256d a[8], b[8];
    __m256 p[4], q[4], d;
    __m256i k[4];
    for (int h = 0; h < 8; h++)
        a[h] = b[h] = _mm256_setzero_pd();
    for (i = 0; i < nr; i += 512) {
        for (int v = 0; v < 4; v++)
            p[v] = q[v] = _mm256_setzero_ps();
        for (int j = 0; j < 16; j++)
            for (int v = 0; v < 4; v++) {
                d = _mm256_sub_ps(_mm256_loadu_ps(x + i + 32 * j + 8 * v), vm);
                p[v] = _mm256_add_ps(p[v], d);
                q[v] = _mm256_add_ps(q[v], _mm256_mul_ps(d, d));
            }
        FC_BN_ACC8(a, p);
        FC_BN_ACC8(b, q);
    }
    for (int v = 0; v < 4; v++)
        p[v] = q[v] = _mm256_setzero_ps();
    for (; i < nv; i += 32)
        for (int v = 0; v < 4; v++) {
            d = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * v), vm);
            p[v] = _mm256_add_ps(p[v], d);
            q[v] = _mm256_add_ps(q[v], _mm256_mul_ps(d, d));
        }
    if (nv < n) {
        fc_bn_tail_masks256(n - nv, k);
        for (int v = 0; v < 4; v++) {
            d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + nv + 8 * v, k[v]), vm),
                              _mm256_castsi256_ps(k[v]));
            p[v] = _mm256_add_ps(p[v], d);
            q[v] = _mm256_add_ps(q[v], _mm256_mul_ps(d, d));
        }
    }
    *sum_d = fc_bn_lane_total256(a, p);
    *sum_dd = fc_bn_lane_total256(b, q);
}

/* fc_bn_grad_lanes with AVX2 (relu: gy masked as fc_bn_relu_mask does) */
static inline __attribute__((always_inline)) FC_BN_256 void
fc_bn_grad_all256(const float *gy, const float *x, Py_ssize_t n, float mh, float ml, int relu,
                  float ra, float rb, double *sum_gy, double *dot)
{
    const __m256 vh = _mm256_set1_ps(mh), vl = _mm256_set1_ps(ml);
    const __m256 vra = _mm256_set1_ps(ra), vrb = _mm256_set1_ps(rb), z = _mm256_setzero_ps();
    Py_ssize_t i, nr = n - n % 128, nv = n - n % 32;
    __m256d a[8], b[8];
    __m256 p[4], q[4], g, d;
    __m256i k[4];
#define FC_BN_GRAD_STEP(G, X, V, TAIL, KEEP) do {                                            \
        __m256 gd_;                                                                          \
        g = (G);                                                                             \
        d = _mm256_sub_ps(_mm256_sub_ps((X), vh), vl);                                       \
        if (relu)                                                                            \
            g = _mm256_and_ps(g, _mm256_cmp_ps(_mm256_add_ps(_mm256_mul_ps(d, vra), vrb), z, \
                                               _CMP_NLE_UQ));                                \
        p[V] = _mm256_add_ps(p[V], g);                                                       \
        gd_ = _mm256_mul_ps(g, d);                                                           \
        if (TAIL)                                                                            \
            gd_ = _mm256_and_ps(gd_, (KEEP));                                                \
        q[V] = _mm256_add_ps(q[V], gd_);                                                     \
    } while (0)
    for (int h = 0; h < 8; h++)
        a[h] = b[h] = _mm256_setzero_pd();
    for (i = 0; i < nr; i += 128) {
        for (int v = 0; v < 4; v++)
            p[v] = q[v] = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++)
            for (int v = 0; v < 4; v++)
                FC_BN_GRAD_STEP(_mm256_loadu_ps(gy + i + 32 * j + 8 * v),
                                _mm256_loadu_ps(x + i + 32 * j + 8 * v), v, 0, z);
        FC_BN_ACC8(a, p);
        FC_BN_ACC8(b, q);
    }
    for (int v = 0; v < 4; v++)
        p[v] = q[v] = _mm256_setzero_ps();
    for (; i < nv; i += 32)
        for (int v = 0; v < 4; v++)
            FC_BN_GRAD_STEP(_mm256_loadu_ps(gy + i + 8 * v), _mm256_loadu_ps(x + i + 8 * v), v,
                            0, z);
    if (nv < n) {   /* gy loaded as 0 past n stays 0; the product there is zeroed */
        fc_bn_tail_masks256(n - nv, k);
        for (int v = 0; v < 4; v++)
            FC_BN_GRAD_STEP(_mm256_maskload_ps(gy + nv + 8 * v, k[v]),
                            _mm256_maskload_ps(x + nv + 8 * v, k[v]), v, 1,
                            _mm256_castsi256_ps(k[v]));
    }
#undef FC_BN_GRAD_STEP
    *sum_gy = fc_bn_lane_total256(a, p);
    *dot = fc_bn_lane_total256(b, q);
}

static FC_BN_256 void fc_bn_grad_all_256(const float *gy, const float *x, Py_ssize_t n,
                                         float mh, float ml, double *sum_gy, double *dot)
{
    fc_bn_grad_all256(gy, x, n, mh, ml, 0, 0.0f, 0.0f, sum_gy, dot);
}

static FC_BN_256 void fc_bn_grad_all_relu_256(const float *gy, const float *x, Py_ssize_t n,
                                              float mh, float ml, float ra, float rb,
                                              double *sum_gy, double *dot)
{
    fc_bn_grad_all256(gy, x, n, mh, ml, 1, ra, rb, sum_gy, dot);
}
#undef FC_BN_ACC8
#endif  /* FC_BN_X86 */

/* Whole reductions: 1 when done (AVX-512 or AVX2), 0 when the caller's loops must run. */
static int fc_bn_centred_all(const float *x, Py_ssize_t n, float m, double *sum_d,
                             double *sum_dd)
{
#if FC_BN_X86
    if (fc_bn_target() == FC_BN_AVX512) {
        fc_bn_centred_all_512(x, n, m, sum_d, sum_dd);
        return 1;
    }
    if (fc_bn_target() == FC_BN_AVX2) {
        fc_bn_centred_all_256(x, n, m, sum_d, sum_dd);
        return 1;
    }
#endif
    return 0;
}

/* fc_bn_centred_pair: AVX-512 only (elsewhere the caller runs the chunks one after the
 * other, the same sums) */
static int fc_bn_centred_pair(const float *x0, const float *x1, Py_ssize_t n, float m0,
                              float m1, double *sd, double *sdd)
{
#if FC_BN_X86
    if (fc_bn_target() == FC_BN_AVX512) {
        fc_bn_centred_pair_512(x0, x1, n, m0, m1, sd, sdd);
        return 1;
    }
#endif
    return 0;
}

static int fc_bn_grad_all(const float *gy, const float *x, Py_ssize_t n, float mh, float ml,
                          double *sum_gy, double *dot)
{
#if FC_BN_X86
    if (fc_bn_target() == FC_BN_AVX512) {
        fc_bn_grad_all_512(gy, x, n, mh, ml, sum_gy, dot);
        return 1;
    }
    if (fc_bn_target() == FC_BN_AVX2) {
        fc_bn_grad_all_256(gy, x, n, mh, ml, sum_gy, dot);
        return 1;
    }
#endif
    return 0;
}

/* fc_bn_grad_all of gy masked as relu's backward (ra, rb: the forward's scale and shift),
 * the mask applied in registers; AVX-512 or AVX2 (elsewhere the caller masks into a buffer) */
static int fc_bn_grad_all_relu(const float *gy, const float *x, Py_ssize_t n, float mh,
                               float ml, float ra, float rb, double *sum_gy, double *dot)
{
#if FC_BN_X86
    if (fc_bn_target() == FC_BN_AVX512) {
        fc_bn_grad_all_relu_512(gy, x, n, mh, ml, ra, rb, sum_gy, dot);
        return 1;
    }
    if (fc_bn_target() == FC_BN_AVX2) {
        fc_bn_grad_all_relu_256(gy, x, n, mh, ml, ra, rb, sum_gy, dot);
        return 1;
    }
#endif
    return 0;
}

#include "_bn_simd_elementwise.h"

#endif  /* FC_BN_SIMD_H */
