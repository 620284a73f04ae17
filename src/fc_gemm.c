/* fastconv's GEMM (contract in gemm.h): GotoBLAS/BLIS blocking, packed operands, a register-
 * blocked micro-kernel picked once at run time (AVX-512F, AVX2+FMA, portable C).
 *
 * Level of parallelism: at most one OpenMP region per call, over disjoint rectangles of C
 * (each thread packs its own panels). n_threads == 1 opens no region.
 *
 * The float and double bodies are one template, src/gemm_impl.h, included twice below.
 * Built with plain -O3 (no -march): the SIMD kernels carry target attributes and are only
 * called after __builtin_cpu_supports said yes. FASTCONV_GEMM_TARGET=avx2|generic in the
 * environment (read once; failing that, FASTCONV_SIMD_TARGET, the other kernels' switch)
 * forces a lower code path, for testing every kernel on one machine.
 */
#include "gemm.h"
#include "simd_transpose.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define FC_X86 1
#include <immintrin.h>
#else
#define FC_X86 0
#endif

#if defined(_MSC_VER)
#define FC_TLS __declspec(thread)
#else
#define FC_TLS _Thread_local
#endif

/* ------------------------------------------------------------------------------------------
 * Run-time choice of code path, made once. Racing first callers compute the same answer, so
 * a relaxed atomic store is enough.
 * ------------------------------------------------------------------------------------------ */
enum { FC_AVX512 = 0, FC_AVX2 = 1, FC_GENERIC = 2 };
#if FC_X86
#define FC_N_TARGETS 3
static const char *const fc_target_names[FC_N_TARGETS] = {"avx512f", "avx2", "generic"};
#else
#define FC_N_TARGETS 1
static const char *const fc_target_names[FC_N_TARGETS] = {"generic"};
#endif

static int fc_detect(void)
{
    int best = FC_N_TARGETS - 1;
#if FC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        best = FC_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = FC_AVX2;
#endif
    const char *want = getenv("FASTCONV_GEMM_TARGET");
    if (want == NULL)   /* the other kernels' switch (cpu_dispatch.h) moves the GEMM too */
        want = getenv("FASTCONV_SIMD_TARGET");
    if (want)
        for (int t = best; t < FC_N_TARGETS; ++t)
            if (strcmp(want, fc_target_names[t]) == 0)
                return t;
    return best;
}

static int fc_target_cache = -1;

static int fc_target(void)
{
#if defined(__GNUC__)
    int t = __atomic_load_n(&fc_target_cache, __ATOMIC_RELAXED);
    if (t < 0) {
        t = fc_detect();
        __atomic_store_n(&fc_target_cache, t, __ATOMIC_RELAXED);
    }
#else
    int t = fc_target_cache;
    if (t < 0)
        fc_target_cache = t = fc_detect();
#endif
    return t;
}

const char *fc_gemm_compiled_targets(void)
{
#if FC_X86
    return "avx512f,avx2,generic";
#else
    return "generic";
#endif
}

const char *fc_gemm_active_target(void) { return fc_target_names[fc_target()]; }

/* ------------------------------------------------------------------------------------------
 * Thread-local packing buffers (0: A, 1: B, 2: implicit-im2col rows), 64-byte aligned, grown and never shrunk: no
 * allocation or first-touch cost in steady state. OpenMP worker threads persist, so do these.
 * ------------------------------------------------------------------------------------------ */
static FC_TLS void *fc_buf[3];
static FC_TLS size_t fc_buf_cap[3];

static void *fc_aligned_alloc(size_t bytes)
{
#if defined(_MSC_VER)
    return _aligned_malloc(bytes, 64);
#else
    void *p = NULL;
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
#endif
}

static void fc_aligned_free(void *p)
{
#if defined(_MSC_VER)
    _aligned_free(p);
#else
    free(p);
#endif
}

static void *fc_buffer(int which, size_t bytes)
{
    if (bytes > fc_buf_cap[which]) {
        /* Round up so that slowly growing requests do not reallocate every time. */
        size_t cap = (bytes + ((size_t)1 << 16) - 1) & ~(((size_t)1 << 16) - 1);
        void *p = fc_aligned_alloc(cap);
        if (!p)
            return NULL;
        fc_aligned_free(fc_buf[which]);
        fc_buf[which] = p;
        fc_buf_cap[which] = cap;
    }
    return fc_buf[which];
}

/* ------------------------------------------------------------------------------------------
 * Work split. The output is cut along micro-tile boundaries into a tm x tn grid of
 * rectangles, one per thread; the grid minimises the largest per-thread cost (padded
 * multiply-adds plus packing, which each thread does for its own rows of A and columns of B).
 * M = 64, N = 576 splits N; M = 256, N = 64 splits M.
 * ------------------------------------------------------------------------------------------ */
typedef struct {
    int64_t m0, m1, n0, n1;
} fc_rect_t;

static int fc_useful_threads(int n_threads, int64_t M, int64_t N, int64_t K, int mr, int nr)
{
    if (n_threads <= 1)
        return 1;
    /* Below ~1 MFLOP the fork/join costs more than it saves. */
    if ((double)M * (double)N * (double)K < 5e5)
        return 1;
    int64_t tiles = ((M + mr - 1) / mr) * ((N + nr - 1) / nr);
    return tiles < n_threads ? (int)tiles : n_threads;
}

#ifdef _OPENMP
static fc_rect_t fc_split(int t, int T, int64_t M, int64_t N, int64_t K, int mr, int nr)
{
    (void)K; /* every thread runs all of K */
    int64_t pm = (M + mr - 1) / mr, pn = (N + nr - 1) / nr;
    int best_tm = 1;
    double best = -1;
    for (int tm = 1; tm <= T; ++tm) {
        if (T % tm)
            continue;
        int tn = T / tm;
        double rows = (double)((pm + tm - 1) / tm) * mr, cols = (double)((pn + tn - 1) / tn) * nr;
        /* One packed element costs about as much as ~24 multiply-adds. */
        double cost = rows * cols + 24.0 * (rows + cols);
        if (best < 0 || cost < best) {
            best = cost;
            best_tm = tm;
        }
    }
    int tm = best_tm, tn = T / tm, ti = t / tn, tj = t % tn;
    fc_rect_t r;
    r.m0 = pm * ti / tm * mr;
    r.m1 = pm * (ti + 1) / tm * mr;
    r.n0 = pn * tj / tn * nr;
    r.n1 = pn * (tj + 1) / tn * nr;
    if (r.m1 > M)
        r.m1 = M;
    if (r.n1 > N)
        r.n1 = N;
    return r;
}
#endif

/* Longest k block of any configuration (sizes the zero row of the transposing packer). */
#define FC_KC_MAX 512

#if FC_X86
/* TB x TB transposes for the packers: rows[r][k0 + kk] -> d[kk * W + r]. */
static inline void transpose_tb_s(const float *const *rows, int64_t k0, float *d, int W)
{
    __m128 r0 = _mm_loadu_ps(rows[0] + k0), r1 = _mm_loadu_ps(rows[1] + k0);
    __m128 r2 = _mm_loadu_ps(rows[2] + k0), r3 = _mm_loadu_ps(rows[3] + k0);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(d, r0);
    _mm_storeu_ps(d + W, r1);
    _mm_storeu_ps(d + 2 * W, r2);
    _mm_storeu_ps(d + 3 * W, r3);
}

static inline void transpose_tb_d(const double *const *rows, int64_t k0, double *d, int W)
{
    __m128d r0 = _mm_loadu_pd(rows[0] + k0), r1 = _mm_loadu_pd(rows[1] + k0);
    _mm_storeu_pd(d, _mm_unpacklo_pd(r0, r1));
    _mm_storeu_pd(d + W, _mm_unpackhi_pd(r0, r1));
}

/* The float packers' transposes with AVX-512, 16 x 16 at a time: rows[r][k + kk] ->
 * d[(k + kk) * W + r] for r < W (W a multiple of 16) and every whole block of 16 k's from k0
 * below kc; returns where it stopped (the 4 x 4 transposes do the rest). A block is 16 loads,
 * 64 shuffles and 16 full-vector stores, where the 4 x 4 SSE transposes take 64 loads, 128
 * shuffles and 64 stores. Called, not inlined: the packers are baseline code. */
static __attribute__((target("avx512f"), noinline)) int64_t
transpose16_s(const float *const *rows, int64_t k0, int64_t kc, float *d, int W)
{
    for (; k0 + 16 <= kc; k0 += 16)
        for (int r0 = 0; r0 < W; r0 += 16) {
            __m512 v[16];
            for (int i = 0; i < 16; ++i)
                v[i] = _mm512_loadu_ps(rows[r0 + i] + k0);
            fc_transpose16_ps(v);
            for (int i = 0; i < 16; ++i)
                _mm512_storeu_ps(d + (k0 + i) * W + r0, v[i]);
        }
    return k0;
}
/* The same with AVX2, 8 x 8 at a time, for W a multiple of 8 or W == 6 (the AVX2 kernel's
 * A panels): there each transposed k-row of 8 lanes is stored whole over the next row's
 * first two slots, which that row's store then writes, and the block's last row stores 6. */
static __attribute__((target("avx2"), noinline)) int64_t
transpose8_s(const float *const *rows, int64_t k0, int64_t kc, float *d, int W)
{
    for (; k0 + 8 <= kc; k0 += 8)
        for (int r0 = 0; r0 < W; r0 += 8) {
            int n = W - r0 < 8 ? W - r0 : 8;
            __m256 v[8];
            for (int i = 0; i < 8; ++i)
                v[i] = i < n ? _mm256_loadu_ps(rows[r0 + i] + k0) : _mm256_setzero_ps();
            fc_transpose8_ps(v);
            for (int i = 0; i < 8; ++i) {
                float *o = d + (k0 + i) * W + r0;
                if (n == 8 || i < 7) {
                    _mm256_storeu_ps(o, v[i]);
                } else {
                    _mm_storeu_ps(o, _mm256_castps256_ps128(v[i]));
                    _mm_storel_pi((__m64 *)(o + 4), _mm256_extractf128_ps(v[i], 1));
                }
            }
        }
    return k0;
}
#define FC_TRANSPOSE16_S(rows, k0, kc, d, W)                                                 \
    ((W) % 16 == 0 && fc_target() == FC_AVX512 ? transpose16_s(rows, k0, kc, d, W)         \
     : ((W) % 8 == 0 || (W) == 6) && fc_target() == FC_AVX2                                 \
         ? transpose8_s(rows, k0, kc, d, W) : (k0))
#endif

#define FC_CAT_(a, b) a##_##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FN(name) FC_CAT(name, FC_SFX)

/* ---- float ---- */
#define FC_T float
#define FC_SFX s
#define FC_TB 4
#define FC_TRANSPOSE16 FC_TRANSPOSE16_S
#define FC_KC512 384
#define FC_MC512 1200
#define FC_NC512 320
#define FC_KC256 256
#define FC_MC256 1200
#define FC_NC256 512
#if FC_X86
#define FC_L512 16
#define FC_V512 __m512
#define FC_MASK512_T __mmask16
#define FC_ZERO512 _mm512_setzero_ps
#define FC_SET1_512 _mm512_set1_ps
#define FC_LD512 _mm512_loadu_ps
#define FC_ST512 _mm512_storeu_ps
#define FC_MLD512 _mm512_maskz_loadu_ps
#define FC_MST512 _mm512_mask_storeu_ps
#define FC_FMA512 _mm512_fmadd_ps
#define FC_MUL512 _mm512_mul_ps
#define FC_ADD512 _mm512_add_ps
#define FC_IDX512_T __m512i
#define FC_LDIDX512(p) _mm512_loadu_si512((const void *)(p))
#define FC_GATHER512(m, idx, base) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 4)
#define FC_L256 8
#define FC_V256 __m256
#define FC_ZERO256 _mm256_setzero_ps
#define FC_SET1_256 _mm256_set1_ps
#define FC_LD256 _mm256_loadu_ps
#define FC_ST256 _mm256_storeu_ps
#define FC_MLD256 _mm256_maskload_ps
#define FC_MST256 _mm256_maskstore_ps
#define FC_FMA256 _mm256_fmadd_ps
#define FC_MUL256 _mm256_mul_ps
#define FC_ADD256 _mm256_add_ps
static const int32_t fc_mask_s[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
#define FC_MASK256(n) _mm256_loadu_si256((const __m256i *)(fc_mask_s + 8 - (n)))
#endif
#include "gemm_impl.h"
#undef FC_T
#undef FC_SFX
#undef FC_TB
#undef FC_TRANSPOSE16
#undef FC_KC512
#undef FC_MC512
#undef FC_NC512
#undef FC_KC256
#undef FC_MC256
#undef FC_NC256
#if FC_X86
#undef FC_L512
#undef FC_V512
#undef FC_MASK512_T
#undef FC_ZERO512
#undef FC_SET1_512
#undef FC_LD512
#undef FC_ST512
#undef FC_MLD512
#undef FC_MST512
#undef FC_FMA512
#undef FC_MUL512
#undef FC_ADD512
#undef FC_IDX512_T
#undef FC_LDIDX512
#undef FC_GATHER512
#undef FC_L256
#undef FC_V256
#undef FC_ZERO256
#undef FC_SET1_256
#undef FC_LD256
#undef FC_ST256
#undef FC_MLD256
#undef FC_MST256
#undef FC_FMA256
#undef FC_MUL256
#undef FC_ADD256
#undef FC_MASK256
#undef FC_R12
#undef FC_R6
#endif

/* ---- double: same byte footprint per block as float, so half the k depth ---- */
#define FC_T double
#define FC_SFX d
#define FC_TB 2
#define FC_TRANSPOSE16(rows, k0, kc, d, W) (k0)
#define FC_KC512 256
#define FC_MC512 1200
#define FC_NC512 192
#define FC_KC256 256
#define FC_MC256 1200
#define FC_NC256 256
#if FC_X86
#define FC_L512 8
#define FC_V512 __m512d
#define FC_MASK512_T __mmask8
#define FC_ZERO512 _mm512_setzero_pd
#define FC_SET1_512 _mm512_set1_pd
#define FC_LD512 _mm512_loadu_pd
#define FC_ST512 _mm512_storeu_pd
#define FC_MLD512 _mm512_maskz_loadu_pd
#define FC_MST512 _mm512_mask_storeu_pd
#define FC_FMA512 _mm512_fmadd_pd
#define FC_MUL512 _mm512_mul_pd
#define FC_ADD512 _mm512_add_pd
#define FC_IDX512_T __m256i
#define FC_LDIDX512(p) _mm256_loadu_si256((const __m256i *)(p))
#define FC_GATHER512(m, idx, base) _mm512_mask_i32gather_pd(_mm512_setzero_pd(), m, idx, base, 8)
#define FC_L256 4
#define FC_V256 __m256d
#define FC_ZERO256 _mm256_setzero_pd
#define FC_SET1_256 _mm256_set1_pd
#define FC_LD256 _mm256_loadu_pd
#define FC_ST256 _mm256_storeu_pd
#define FC_MLD256 _mm256_maskload_pd
#define FC_MST256 _mm256_maskstore_pd
#define FC_FMA256 _mm256_fmadd_pd
#define FC_MUL256 _mm256_mul_pd
#define FC_ADD256 _mm256_add_pd
static const int64_t fc_mask_d[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
#define FC_MASK256(n) _mm256_loadu_si256((const __m256i *)(fc_mask_d + 4 - (n)))
#endif
#include "gemm_impl.h"

void fc_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc, int n_threads)
{
    gemm_s(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, n_threads);
}

void fc_dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
              const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
              double *C, int64_t ldc, int n_threads)
{
    gemm_d(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, n_threads);
}

int fc_sgemm_im2col(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *x, const fc_im2col_t *geo,
                    float beta, float *C, int64_t ldc, int n_threads)
{
    return gemm_s(trans_a, trans_b, M, N, K, alpha, A, lda, x, 0, geo, beta, C, ldc, n_threads);
}

int fc_dgemm_im2col(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                    const double *A, int64_t lda, const double *x, const fc_im2col_t *geo,
                    double beta, double *C, int64_t ldc, int n_threads)
{
    return gemm_d(trans_a, trans_b, M, N, K, alpha, A, lda, x, 0, geo, beta, C, ldc, n_threads);
}
