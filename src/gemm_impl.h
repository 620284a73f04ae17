/* One body for sgemm and dgemm: src/fc_gemm.c includes this file twice, once per element type.
 *
 * The including file defines the element type FC_T, the name suffix FC_SFX and, on x86, the
 * vector types and intrinsics for 512-bit (FC_*512) and 256-bit (FC_*256) registers. Names are
 * made unique with FN(name) -> name_<FC_SFX>.
 *
 * Layout of the packed operands (BLIS's): op(A) is cut into micro-panels of MR rows stored
 * k-major (a[k*MR + i]), op(B) into micro-panels of NR columns stored k-major (b[k*NR + j]).
 * Panels are zero-padded to full width, so every micro-kernel call runs the full k loop on a
 * full MR x NR register tile; edge tiles of C are written through a stack temporary with
 * masked loads and stores, using the very same multiply and add instructions as full tiles.
 *
 * Numerics, identical on every path: each accumulator starts at zero and takes one FMA (or
 * multiply-add in the portable kernel) per k in increasing k; a KC block then updates C as
 * round(alpha*acc) + round(beta*C) with beta the caller's for the first block and 1 after it
 * (beta == 0 stores round(alpha*acc) without reading C). Blocking depends on K only, never on
 * the thread count, so every element of C is reduced in the same order for any n_threads.
 */

typedef void (*FN(ukr_t))(int64_t kc, const FC_T *a, const FC_T *b, FC_T *c, int64_t ldc,
                          FC_T alpha, FC_T beta, int mr, int nr);

typedef struct {
    int mr, nr;             /* register tile */
    int64_t kc, mc, nc;     /* cache blocks: kc x nc of B stays in L2, mc x kc of A in L3 */
    FN(ukr_t) ukr;
} FN(cfg_t);

/* ------------------------------------------------------------------------------------------
 * Packing into micro-panels of W lanes (zero-padded), panel after panel in dst.
 * pack_n: lanes run along the source rows: panel p holds src[k*ld + p*W + j] at [k*W + j].
 *         k outer, so each source row is read once, front to back (with ld = 1024 floats a
 *         panel-outer loop touches a new page for every 128 bytes).
 * pack_t: lanes are source rows: panel p holds src[(p*W + r)*ld + k] at [k*W + r].
 * W is a compile-time constant after inlining; full-width copies are fixed-size memcpys,
 * which the compiler turns into a few vector moves.
 * ------------------------------------------------------------------------------------------ */
static inline __attribute__((always_inline)) void
FN(pack_n_w)(const FC_T *restrict src, int64_t ld, int64_t w, int64_t kc, FC_T *restrict dst,
             const int W)
{
    int64_t full = w / W, rest = w - full * W;
    for (int64_t k = 0; k < kc; ++k, src += ld) {
        FC_T *d = dst + k * W;
        int64_t p = 0;
        for (; p < full; ++p, d += kc * W)
            memcpy(d, src + p * W, sizeof(FC_T) * W);
        if (rest) {
            for (int j = 0; j < rest; ++j)
                d[j] = src[p * W + j];
            for (int j = (int)rest; j < W; ++j)
                d[j] = 0;
        }
    }
}

#if FC_X86
/* The zero row that missing rows of a ragged panel point at. */
static const FC_T FN(zero_row)[FC_KC_MAX] = {0};

/* A panel from row pointers: rows[r][k] -> d[k * W + r] for r < W, k < kc, in 16 x 16
 * AVX-512 or 8 x 8 AVX2 register transposes where they run, then TB x TB SSE ones (W %
 * FC_TB == 0), then single values. Element by element this is store-bound (one scalar
 * store per element); a register transpose moves a vector per store. W % FC_TB == 0 or
 * W == 6, W <= 32. */
static inline __attribute__((always_inline)) void
FN(transpose_rows)(const FC_T *const *rows, int64_t kc, FC_T *d, int W)
{
    int64_t k = FC_TRANSPOSE16(rows, 0, kc, d, W);
    if (W % FC_TB == 0)
        for (; k + FC_TB <= kc; k += FC_TB)
            for (int r = 0; r < W; r += FC_TB)
                FN(transpose_tb)(rows + r, k, d + k * W + r, W);
    for (; k < kc; ++k)
        for (int r = 0; r < W; ++r)
            d[k * W + r] = rows[r][k];
}
#endif

static inline __attribute__((always_inline)) void
FN(pack_t_w)(const FC_T *restrict src, int64_t ld, int64_t w, int64_t kc, FC_T *restrict dst,
             const int W)
{
#if FC_X86
    if ((W % FC_TB == 0 || W == 6) && W <= 32 && kc <= FC_KC_MAX) {
        const FC_T *rows[32];
        for (int64_t p0 = 0; p0 < w; p0 += W, src += W * ld, dst += kc * W) {
            int n = (int)(w - p0 < W ? w - p0 : W);
            for (int r = 0; r < W; ++r)
                rows[r] = r < n ? src + r * ld : FN(zero_row);
            FN(transpose_rows)(rows, kc, dst, W);
        }
        return;
    }
#endif
    for (int64_t p0 = 0; p0 < w; p0 += W, src += W * ld, dst += kc * W) {
        int n = (int)(w - p0 < W ? w - p0 : W);
        for (int64_t k = 0; k < kc; ++k) {
            for (int r = 0; r < n; ++r)
                dst[k * W + r] = src[r * ld + k];
            for (int r = n; r < W; ++r)
                dst[k * W + r] = 0;
        }
    }
}

#define FC_PACK_SWITCH(fn, W, ...)                                                           \
    switch (W) {                                                                             \
    case 4: fn(__VA_ARGS__, 4); break;                                                       \
    case 6: fn(__VA_ARGS__, 6); break;                                                       \
    case 8: fn(__VA_ARGS__, 8); break;                                                       \
    case 12: fn(__VA_ARGS__, 12); break;                                                     \
    case 16: fn(__VA_ARGS__, 16); break;                                                     \
    case 32: fn(__VA_ARGS__, 32); break;                                                     \
    default: fn(__VA_ARGS__, W); break;                                                      \
    }

static void FN(pack_n)(const FC_T *src, int64_t ld, int64_t w, int64_t kc, FC_T *dst, int W)
{
    FC_PACK_SWITCH(FN(pack_n_w), W, src, ld, w, kc, dst)
}

static void FN(pack_t)(const FC_T *src, int64_t ld, int64_t w, int64_t kc, FC_T *dst, int W)
{
    FC_PACK_SWITCH(FN(pack_t_w), W, src, ld, w, kc, dst)
}

/* Rows [i0, i0+mc) and k [p0, p0+kc) of op(A) into MR-row micro-panels. */
static void FN(pack_a)(const FN(cfg_t) *g, int trans_a, const FC_T *A, int64_t lda, int64_t i0,
                       int64_t mc, int64_t p0, int64_t kc, FC_T *dst)
{
    if (trans_a)
        FN(pack_n)(A + p0 * lda + i0, lda, mc, kc, dst, g->mr);
    else
        FN(pack_t)(A + i0 * lda + p0, lda, mc, kc, dst, g->mr);
}

/* ------------------------------------------------------------------------------------------
 * Portable micro-kernel, 4 x 8. Edge tiles need no temporary: the loops stop at mr, nr.
 * ------------------------------------------------------------------------------------------ */
enum { FN(GEN_MR) = 4, FN(GEN_NR) = 8 };

static void FN(ukr_generic)(int64_t kc, const FC_T *restrict a, const FC_T *restrict b,
                            FC_T *restrict c, int64_t ldc, FC_T alpha, FC_T beta, int mr,
                            int nr)
{
    enum { MR = FN(GEN_MR), NR = FN(GEN_NR) };
    FC_T acc[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NR; ++j)
                acc[i][j] += a[i] * b[j];
    for (int i = 0; i < mr; ++i) {
        FC_T *cr = c + i * ldc;
        for (int j = 0; j < nr; ++j) {
            FC_T t = alpha * acc[i][j];
            cr[j] = beta == 0 ? t : t + beta * cr[j];
        }
    }
}

#if FC_X86
/* ------------------------------------------------------------------------------------------
 * AVX-512F micro-kernel: 12 rows x 2 zmm (12 x 32 floats, 12 x 16 doubles), 24 accumulators.
 * `rows` (4, 8, 12) and `vecs` (1, 2) are constants after inlining: the last row panel of a
 * 64-row matrix runs 4 rows instead of 12 and a narrow last column panel runs one zmm, so
 * little work is wasted on padding; the per-element arithmetic is the same in every variant.
 * ------------------------------------------------------------------------------------------ */
#define FC_R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
enum { FN(AVX512_MR) = 12, FN(AVX512_NR) = 2 * FC_L512 };

static inline __attribute__((always_inline, target("avx512f"))) void
FN(body512)(const int rows, const int vecs, int64_t kc, const FC_T *restrict a,
            const FC_T *restrict b, FC_T *restrict c, int64_t ldc, FC_T alpha, FC_T beta,
            int mr, int nr)
{
    enum { MR = FN(AVX512_MR), NR = FN(AVX512_NR), L = FC_L512 };
    const FC_V512 z = FC_ZERO512();
#define FC_DECL(i) FC_V512 c##i##_0 = z, c##i##_1 = z;
    FC_R12(FC_DECL)
#undef FC_DECL
    for (int r = 0; r < rows; ++r)
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
#define FC_STEP(i)                                                                           \
    if (rows > i) {                                                                          \
        FC_V512 ai = FC_SET1_512(a[i]);                                                      \
        c##i##_0 = FC_FMA512(ai, b0, c##i##_0);                                              \
        if (vecs > 1)                                                                        \
            c##i##_1 = FC_FMA512(ai, b1, c##i##_1);                                          \
    }
#define FC_K_STEP                                                                            \
    {                                                                                        \
        FC_V512 b0 = FC_LD512(b);                                                            \
        FC_V512 b1 = vecs > 1 ? FC_LD512(b + L) : z;                                         \
        FC_R12(FC_STEP)                                                                      \
        a += MR;                                                                             \
        b += NR;                                                                             \
    }
    for (int64_t k = 0; k < kc; ++k)
        FC_K_STEP
#undef FC_K_STEP
#undef FC_STEP
    /* Make c and ldc opaque here: otherwise GCC keeps the 12 row pointers of the prefetch
     * above live through the k loop, parks them in zmm registers and spills a B vector to
     * the stack on every k (~20% of the kernel's speed). */
    __asm__("" : "+r"(c), "+r"(ldc));
    const FC_V512 va = FC_SET1_512(alpha), vb = FC_SET1_512(beta);
    if (mr == rows && nr == vecs * L) {
#define FC_STORE(i)                                                                          \
    if (rows > i) {                                                                          \
        FC_T *cr = c + i * ldc;                                                              \
        FC_V512 t0 = FC_MUL512(va, c##i##_0), t1 = FC_MUL512(va, c##i##_1);                  \
        if (beta == 0) {                                                                     \
            FC_ST512(cr, t0);                                                                \
            if (vecs > 1)                                                                    \
                FC_ST512(cr + L, t1);                                                        \
        } else {                                                                             \
            FC_ST512(cr, FC_ADD512(t0, FC_MUL512(vb, FC_LD512(cr))));                        \
            if (vecs > 1)                                                                    \
                FC_ST512(cr + L, FC_ADD512(t1, FC_MUL512(vb, FC_LD512(cr + L))));            \
        }                                                                                    \
    }
        FC_R12(FC_STORE)
#undef FC_STORE
        return;
    }
    /* Edge tile: spill the accumulators, then masked loads/stores touch only mr x nr. */
    FC_T tmp[MR * NR] __attribute__((aligned(64)));
#define FC_SPILL(i)                                                                          \
    if (rows > i) {                                                                          \
        FC_ST512(tmp + i * NR, c##i##_0);                                                    \
        FC_ST512(tmp + i * NR + L, c##i##_1);                                                \
    }
    FC_R12(FC_SPILL)
#undef FC_SPILL
    for (int i = 0; i < mr; ++i) {
        FC_T *cr = c + i * ldc;
        for (int v = 0; v < vecs; ++v) {
            int n = nr - v * L;
            if (n <= 0)
                break;
            FC_MASK512_T m = (FC_MASK512_T)(n >= L ? ~0u : (1u << n) - 1u);
            FC_V512 t = FC_MUL512(va, FC_LD512(tmp + i * NR + v * L));
            if (beta != 0)
                t = FC_ADD512(t, FC_MUL512(vb, FC_MLD512(m, cr + v * L)));
            FC_MST512(cr + v * L, m, t);
        }
    }
}

#define FC_UKR512(R, V)                                                                      \
    static __attribute__((target("avx512f"))) void FN(ukr512_##R##x##V)(                     \
        int64_t kc, const FC_T *a, const FC_T *b, FC_T *c, int64_t ldc, FC_T alpha,          \
        FC_T beta, int mr, int nr)                                                           \
    {                                                                                        \
        FN(body512)(R, V, kc, a, b, c, ldc, alpha, beta, mr, nr);                            \
    }
FC_UKR512(4, 1)
FC_UKR512(8, 1)
FC_UKR512(12, 1)
FC_UKR512(4, 2)
FC_UKR512(8, 2)
FC_UKR512(12, 2)
#undef FC_UKR512

static void FN(ukr512)(int64_t kc, const FC_T *a, const FC_T *b, FC_T *c, int64_t ldc,
                       FC_T alpha, FC_T beta, int mr, int nr)
{
    static const FN(ukr_t) variants[2][3] = {
        {FN(ukr512_4x1), FN(ukr512_8x1), FN(ukr512_12x1)},
        {FN(ukr512_4x2), FN(ukr512_8x2), FN(ukr512_12x2)},
    };
    variants[nr > FC_L512][mr <= 4 ? 0 : mr <= 8 ? 1 : 2](kc, a, b, c, ldc, alpha, beta, mr,
                                                            nr);
}

/* ------------------------------------------------------------------------------------------
 * AVX2+FMA micro-kernel: 6 rows x 2 ymm (6 x 16 floats, 6 x 8 doubles), 12 accumulators.
 * ------------------------------------------------------------------------------------------ */
#define FC_R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
enum { FN(AVX2_MR) = 6, FN(AVX2_NR) = 2 * FC_L256 };

static inline __attribute__((always_inline, target("avx2,fma"))) void
FN(body256)(const int rows, const int vecs, int64_t kc, const FC_T *restrict a,
            const FC_T *restrict b, FC_T *restrict c, int64_t ldc, FC_T alpha, FC_T beta,
            int mr, int nr)
{
    enum { MR = FN(AVX2_MR), NR = FN(AVX2_NR), L = FC_L256 };
    const FC_V256 z = FC_ZERO256();
#define FC_DECL(i) FC_V256 c##i##_0 = z, c##i##_1 = z;
    FC_R6(FC_DECL)
#undef FC_DECL
#define FC_STEP(i)                                                                           \
    if (rows > i) {                                                                          \
        FC_V256 ai = FC_SET1_256(a[i]);                                                      \
        c##i##_0 = FC_FMA256(ai, b0, c##i##_0);                                              \
        if (vecs > 1)                                                                        \
            c##i##_1 = FC_FMA256(ai, b1, c##i##_1);                                          \
    }
#define FC_K_STEP                                                                            \
    {                                                                                        \
        FC_V256 b0 = FC_LD256(b);                                                            \
        FC_V256 b1 = vecs > 1 ? FC_LD256(b + L) : z;                                         \
        FC_R6(FC_STEP)                                                                       \
        a += MR;                                                                             \
        b += NR;                                                                             \
    }
    for (int64_t k = 0; k < kc; ++k)
        FC_K_STEP
#undef FC_K_STEP
#undef FC_STEP
    const FC_V256 va = FC_SET1_256(alpha), vb = FC_SET1_256(beta);
    if (mr == rows && nr == vecs * L) {
#define FC_STORE(i)                                                                          \
    if (rows > i) {                                                                          \
        FC_T *cr = c + i * ldc;                                                              \
        FC_V256 t0 = FC_MUL256(va, c##i##_0), t1 = FC_MUL256(va, c##i##_1);                  \
        if (beta == 0) {                                                                     \
            FC_ST256(cr, t0);                                                                \
            if (vecs > 1)                                                                    \
                FC_ST256(cr + L, t1);                                                        \
        } else {                                                                             \
            FC_ST256(cr, FC_ADD256(t0, FC_MUL256(vb, FC_LD256(cr))));                        \
            if (vecs > 1)                                                                    \
                FC_ST256(cr + L, FC_ADD256(t1, FC_MUL256(vb, FC_LD256(cr + L))));            \
        }                                                                                    \
    }
        FC_R6(FC_STORE)
#undef FC_STORE
        return;
    }
    FC_T tmp[MR * NR] __attribute__((aligned(32)));
#define FC_SPILL(i)                                                                          \
    if (rows > i) {                                                                          \
        FC_ST256(tmp + i * NR, c##i##_0);                                                    \
        FC_ST256(tmp + i * NR + L, c##i##_1);                                                \
    }
    FC_R6(FC_SPILL)
#undef FC_SPILL
    for (int i = 0; i < mr; ++i) {
        FC_T *cr = c + i * ldc;
        for (int v = 0; v < vecs; ++v) {
            int n = nr - v * L;
            if (n <= 0)
                break;
            FC_V256 t = FC_MUL256(va, FC_LD256(tmp + i * NR + v * L));
            if (n >= L) {   /* plain: Zen runs AVX2 masked stores as microcode */
                if (beta != 0)
                    t = FC_ADD256(t, FC_MUL256(vb, FC_LD256(cr + v * L)));
                FC_ST256(cr + v * L, t);
                continue;
            }
            __m256i m = FC_MASK256(n);
            if (beta != 0)
                t = FC_ADD256(t, FC_MUL256(vb, FC_MLD256(cr + v * L, m)));
            FC_MST256(cr + v * L, m, t);
        }
    }
}

#define FC_UKR256(R, V)                                                                      \
    static __attribute__((target("avx2,fma"))) void FN(ukr256_##R##x##V)(                    \
        int64_t kc, const FC_T *a, const FC_T *b, FC_T *c, int64_t ldc, FC_T alpha,          \
        FC_T beta, int mr, int nr)                                                           \
    {                                                                                        \
        FN(body256)(R, V, kc, a, b, c, ldc, alpha, beta, mr, nr);                            \
    }
FC_UKR256(2, 1)
FC_UKR256(4, 1)
FC_UKR256(6, 1)
FC_UKR256(2, 2)
FC_UKR256(4, 2)
FC_UKR256(6, 2)
#undef FC_UKR256

static void FN(ukr256)(int64_t kc, const FC_T *a, const FC_T *b, FC_T *c, int64_t ldc,
                       FC_T alpha, FC_T beta, int mr, int nr)
{
    static const FN(ukr_t) variants[2][3] = {
        {FN(ukr256_2x1), FN(ukr256_4x1), FN(ukr256_6x1)},
        {FN(ukr256_2x2), FN(ukr256_4x2), FN(ukr256_6x2)},
    };
    variants[nr > FC_L256][mr <= 2 ? 0 : mr <= 4 ? 1 : 2](kc, a, b, c, ldc, alpha, beta, mr,
                                                            nr);
}
#endif /* FC_X86 */

#include "gemm_im2col.h"

/* k [p0, p0+kc) and columns [j0, j0+nc) of op(B) into NR-column micro-panels; with geo, B is
 * the implicit column matrix of the image B (tmp: NR x kc scratch for the transposed case). */
static void FN(pack_b)(const FN(cfg_t) *g, int trans_b, const FC_T *B, int64_t ldb,
                       const fc_im2col_t *geo, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                       FC_T *dst, FC_T *tmp)
{
    if (geo)
        FN(pack_b_im2col)(g, trans_b, B, geo, p0, kc, j0, nc, dst, tmp);
    else if (trans_b)
        FN(pack_t)(B + j0 * ldb + p0, ldb, nc, kc, dst, g->nr);
    else
        FN(pack_n)(B + p0 * ldb + j0, ldb, nc, kc, dst, g->nr);
}

static const FN(cfg_t) *FN(config)(void)
{
    /* kc x MR of A (one micro-panel) and kc x NR of B are streamed per micro-kernel call;
     * kc x nc of B (~0.5 MiB) stays in the 1-2 MiB L2 while mc rows of A go by. */
    static const FN(cfg_t) cfgs[FC_N_TARGETS] = {
#if FC_X86
        {FN(AVX512_MR), FN(AVX512_NR), FC_KC512, FC_MC512, FC_NC512, FN(ukr512)},
        {FN(AVX2_MR), FN(AVX2_NR), FC_KC256, FC_MC256, FC_NC256, FN(ukr256)},
#endif
        {FN(GEN_MR), FN(GEN_NR), 256, 512, 512, FN(ukr_generic)},
    };
    return &cfgs[fc_target()];
}

/* ------------------------------------------------------------------------------------------
 * The blocked product on the output rectangle rows [m0, m1) x columns [n0, n1), on the
 * calling thread with its own packing buffers. Returns 0, or -1 if a buffer could not be
 * allocated (nothing was written then).
 * ------------------------------------------------------------------------------------------ */
static int FN(gemm_rect)(const FN(cfg_t) *g, int trans_a, int trans_b, int64_t m0, int64_t m1,
                         int64_t n0, int64_t n1, int64_t K, FC_T alpha, const FC_T *A,
                         int64_t lda, const FC_T *B, int64_t ldb, const fc_im2col_t *geo,
                         FC_T beta, FC_T *C, int64_t ldc)
{
    const int MR = g->mr, NR = g->nr;
    int64_t M = m1 - m0, N = n1 - n0;
    int64_t mc_max = M < g->mc ? M : g->mc, nc_max = N < g->nc ? N : g->nc;
    int64_t kc_max = K < g->kc ? K : g->kc;
    FC_T *abuf = fc_buffer(0, sizeof(FC_T) * kc_max * ((mc_max + MR - 1) / MR) * MR);
    FC_T *bbuf = fc_buffer(1, sizeof(FC_T) * kc_max * ((nc_max + NR - 1) / NR) * NR);
    FC_T *tmp = geo && trans_b ? fc_buffer(2, sizeof(FC_T) * kc_max * NR) : NULL;
    if (!abuf || !bbuf || (geo && trans_b && !tmp))
        return -1;
    for (int64_t ic = m0; ic < m1; ic += g->mc) {
        int64_t mc = m1 - ic < g->mc ? m1 - ic : g->mc;
        for (int64_t pc = 0; pc < K; pc += g->kc) {
            int64_t kc = K - pc < g->kc ? K - pc : g->kc;
            FC_T beta_k = pc == 0 ? beta : (FC_T)1;
            FN(pack_a)(g, trans_a, A, lda, ic, mc, pc, kc, abuf);
            for (int64_t jc = n0; jc < n1; jc += g->nc) {
                int64_t nc = n1 - jc < g->nc ? n1 - jc : g->nc;
                FN(pack_b)(g, trans_b, B, ldb, geo, pc, kc, jc, nc, bbuf, tmp);
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    int mr = (int)(mc - ir < MR ? mc - ir : MR);
                    const FC_T *ap = abuf + ir * kc;
                    FC_T *cp = C + (ic + ir) * ldc + jc;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        int nr = (int)(nc - jr < NR ? nc - jr : NR);
                        g->ukr(kc, ap, bbuf + jr * kc, cp + jr, ldc, alpha, beta_k, mr, nr);
                    }
                }
            }
        }
    }
    return 0;
}

/* Last resort when a packing buffer cannot be allocated: an unblocked loop, same reduction
 * order over k, no SIMD. Never taken in normal operation. */
static void FN(gemm_naive)(int trans_a, int trans_b, int64_t m0, int64_t m1, int64_t n0,
                           int64_t n1, int64_t K, FC_T alpha, const FC_T *A, int64_t lda,
                           const FC_T *B, int64_t ldb, FC_T beta, FC_T *C, int64_t ldc)
{
    for (int64_t i = m0; i < m1; ++i)
        for (int64_t j = n0; j < n1; ++j) {
            FC_T acc = 0;
            for (int64_t k = 0; k < K; ++k) {
                FC_T a = trans_a ? A[k * lda + i] : A[i * lda + k];
                FC_T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
            }
            FC_T t = alpha * acc;
            C[i * ldc + j] = beta == 0 ? t : t + beta * C[i * ldc + j];
        }
}

/* Returns -1 only for an implicit B (geo) whose buffers cannot be allocated. */
static int FN(gemm_part)(const FN(cfg_t) *g, int trans_a, int trans_b, int64_t m0, int64_t m1,
                         int64_t n0, int64_t n1, int64_t K, FC_T alpha, const FC_T *A,
                         int64_t lda, const FC_T *B, int64_t ldb, const fc_im2col_t *geo,
                         FC_T beta, FC_T *C, int64_t ldc)
{
    if (m1 <= m0 || n1 <= n0)
        return 0;
    if (FN(gemm_rect)(g, trans_a, trans_b, m0, m1, n0, n1, K, alpha, A, lda, B, ldb, geo, beta,
                      C, ldc) == 0)
        return 0;
    if (geo)
        return -1;
    FN(gemm_naive)(trans_a, trans_b, m0, m1, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 0;
}

static int FN(gemm)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, FC_T alpha,
                    const FC_T *A, int64_t lda, const FC_T *B, int64_t ldb,
                    const fc_im2col_t *geo, FC_T beta, FC_T *C, int64_t ldc, int n_threads)
{
    if (M <= 0 || N <= 0)
        return 0;
    if (K <= 0) {
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
                C[i * ldc + j] = beta == 0 ? (FC_T)0 : beta * C[i * ldc + j];
        return 0;
    }
    const FN(cfg_t) *g = FN(config)();
    int nt = fc_useful_threads(n_threads, M, N, K, g->mr, g->nr);
    if (nt <= 1)
        return FN(gemm_part)(g, trans_a, trans_b, 0, M, 0, N, K, alpha, A, lda, B, ldb, geo,
                             beta, C, ldc);
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        /* The team may be smaller than asked (nested region, thread limit): split over the
         * threads that really run. */
        fc_rect_t r = fc_split(omp_get_thread_num(), omp_get_num_threads(), M, N, K, g->mr,
                               g->nr);
        failed |= FN(gemm_part)(g, trans_a, trans_b, r.m0, r.m1, r.n0, r.n1, K, alpha, A, lda,
                                B, ldb, geo, beta, C, ldc);
    }
#else
    failed = FN(gemm_part)(g, trans_a, trans_b, 0, M, 0, N, K, alpha, A, lda, B, ldb, geo, beta,
                           C, ldc);
#endif
    return failed ? -1 : 0;
}
