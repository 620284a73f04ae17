/* Run-time choice of a SIMD code path, shared by the C kernels that carry several
 * (the package is compiled for the baseline ISA, no -march: SIMD functions carry
 * __attribute__((target(...))) and are only called after __builtin_cpu_supports said yes).
 *
 * fc_cpu_target() returns FC_CPU_AVX512 (AVX-512F), FC_CPU_AVX2 (AVX2 + FMA) or
 * FC_CPU_GENERIC (portable C, the only path off x86 or without GCC-style builtins). The
 * answer is computed once per extension module. FASTCONV_SIMD_TARGET (or, failing that,
 * FASTCONV_GEMM_TARGET) = avx2 | generic in the environment forces a lower path, so tests can
 * run every path on one machine; asking for a path the CPU lacks is ignored.
 */
#ifndef FASTCONV_CPU_DISPATCH_H
#define FASTCONV_CPU_DISPATCH_H
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define FC_CPU_X86 1
#include <immintrin.h>
#else
#define FC_CPU_X86 0
#endif

enum { FC_CPU_AVX512 = 0, FC_CPU_AVX2 = 1, FC_CPU_GENERIC = 2 };
static const char *const fc_cpu_target_names[3] = {"avx512f", "avx2", "generic"};

static int fc_cpu_detect(void)
{
    int best = FC_CPU_GENERIC;
#if FC_CPU_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        best = FC_CPU_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = FC_CPU_AVX2;
#endif
    const char *want = getenv("FASTCONV_SIMD_TARGET");
    if (want == NULL)
        want = getenv("FASTCONV_GEMM_TARGET");
    if (want)
        for (int t = best; t <= FC_CPU_GENERIC; ++t)
            if (strcmp(want, fc_cpu_target_names[t]) == 0)
                return t;
    return best;
}

static int fc_cpu_target_cache = -1;

/* Racing first callers compute the same answer, so relaxed atomics are enough. */
static inline int fc_cpu_target(void)
{
#if defined(__GNUC__)
    int t = __atomic_load_n(&fc_cpu_target_cache, __ATOMIC_RELAXED);
    if (t < 0) {
        t = fc_cpu_detect();
        __atomic_store_n(&fc_cpu_target_cache, t, __ATOMIC_RELAXED);
    }
#else
    int t = fc_cpu_target_cache;
    if (t < 0)
        fc_cpu_target_cache = t = fc_cpu_detect();
#endif
    return t;
}

static inline const char *fc_cpu_target_name(void) { return fc_cpu_target_names[fc_cpu_target()]; }

#endif
