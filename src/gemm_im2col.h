/* Implicit im2col for the GEMM's B operand, included by gemm_impl.h once per element type.
 *
 * With a geometry (fc_im2col_t, gemm.h), B is the column matrix of one image, rows r =
 * (c*kh + i)*kw + j (taps), columns q = pixels from output row oh0 on:
 *     B[r, q] = x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]   (0 outside the image),
 *     oh = oh0 + q / OW, ow = q % OW.
 * The packers read those entries straight from the image into the micro-panels, so the
 * column matrix (2.4 MB per 64-channel 32x32 image, more than L2) is never written to memory
 * and read back: the convolution's B traffic becomes that of a pack_n on the image itself.
 * The packed panels hold exactly the values pack_b would have produced from an explicit
 * column matrix, so results are identical to im2col + gemm.
 */

/* One tap's geometry: the image row offset of kernel row i and the valid ow range of kernel
 * column j (outside it the window reads padding). */
typedef struct {
    const FC_T *plane; /* x[c] */
    int64_t ioff, joff, lo, hi;
} FN(tap_t);

static inline FN(tap_t) FN(tap)(const FC_T *x, const fc_im2col_t *g, int64_t r)
{
    FN(tap_t) t;
    int64_t j = r % g->kw, i = (r / g->kw) % g->kh, c = r / ((int64_t)g->kw * g->kh);
    t.plane = x + c * g->H * g->W;
    t.ioff = i * g->dh - g->ph;
    t.joff = j * g->dw - g->pw;
    /* ow in [lo, hi) <=> 0 <= ow*sw + joff < W */
    t.lo = t.joff >= 0 ? 0 : (-t.joff + g->sw - 1) / g->sw;
    t.hi = g->W - t.joff <= 0 ? 0 : (g->W - t.joff + g->sw - 1) / g->sw;
    if (t.hi > g->OW)
        t.hi = g->OW;
    if (t.lo > t.hi)
        t.lo = t.hi;
    return t;
}

/* One run d[ow, end) of an image row: src[q*sw] for q in [a, b), zeros elsewhere. */
#define FC_RUN_SCALAR(d, src, sw, ow, a, b, end)                                             \
    do {                                                                                     \
        for (int64_t q = ow; q < a; ++q)                                                     \
            d[q] = 0;                                                                        \
        if (sw == 1)                                                                         \
            for (int64_t q = a; q < b; ++q)                                                  \
                d[q] = src[q];                                                               \
        else                                                                                 \
            for (int64_t q = a; q < b; ++q)                                                  \
                d[q] = src[q * sw];                                                          \
        for (int64_t q = b; q < end; ++q)                                                    \
            d[q] = 0;                                                                        \
    } while (0)

#if FC_X86
/* Stride 1 with masked loads (lanes outside [a, b) read nothing, so no out-of-image access)
 * and masked stores: two instructions per vector instead of library calls per short run. */
static inline __attribute__((always_inline, target("avx512f"))) void
FN(run512)(FC_T *restrict d, const FC_T *restrict src, int64_t ow, int64_t a, int64_t b,
           int64_t end)
{
    const int L = FC_L512;
    for (int64_t q = ow; q < end; q += L) {
        int64_t lo = a - q, hi = b - q, n = end - q;
        lo = lo < 0 ? 0 : lo > L ? L : lo;
        hi = hi < lo ? lo : hi > L ? L : hi;
        n = n > L ? L : n;
        unsigned mv = (unsigned)(((1ull << hi) - 1) & ~((1ull << lo) - 1));
        unsigned ms = (unsigned)((1ull << n) - 1);
        FC_MST512(d + q, (FC_MASK512_T)ms, FC_MLD512((FC_MASK512_T)mv, src + q));
    }
}
#define FC_RUN_512(d, src, sw, ow, a, b, end)                                                \
    do {                                                                                     \
        if (sw == 1)                                                                         \
            FN(run512)(d, src, ow, a, b, end);                                               \
        else                                                                                 \
            FC_RUN_SCALAR(d, src, sw, ow, a, b, end);                                        \
    } while (0)
#endif

/* B[r, q0 .. q0+n) of the tap t into dst, W entries per panel, panels pstride apart (W == n:
 * one contiguous run). One division per call; each run between row and panel boundaries is
 * zeros, a copy, zeros. */
#define FC_TAP_RUN(NAME, ATTR, RUN)                                                          \
    static inline __attribute__((always_inline ATTR)) void NAME(                             \
        const fc_im2col_t *g, const FN(tap_t) *t, int64_t q0, int64_t n, FC_T *restrict dst, \
        int64_t W, int64_t pstride)                                                          \
    {                                                                                        \
        int64_t oh = g->oh0 + q0 / g->OW, ow = q0 % g->OW, w = 0;                            \
        while (n > 0) {                                                                      \
            int64_t len = g->OW - ow < n ? g->OW - ow : n;                                   \
            if (len > W - w)                                                                 \
                len = W - w;                                                                 \
            int64_t end = ow + len, ih = oh * g->sh + t->ioff;                               \
            FC_T *restrict d = dst + w - ow; /* d[ow'] is the entry of output column ow' */  \
            if (ih < 0 || ih >= g->H) {                                                      \
                for (int64_t q = ow; q < end; ++q)                                           \
                    d[q] = 0;                                                                \
            } else {                                                                         \
                const FC_T *restrict src = t->plane + ih * g->W + t->joff;                   \
                int64_t a = ow > t->lo ? ow : t->lo, b = end < t->hi ? end : t->hi;          \
                if (b < a) /* no valid pixel in this run: all padding */                     \
                    b = a = ow;                                                              \
                RUN(d, src, g->sw, ow, a, b, end);                                           \
            }                                                                                \
            n -= len;                                                                        \
            w += len;                                                                        \
            ow = end;                                                                        \
            if (ow == g->OW) {                                                               \
                ow = 0;                                                                      \
                ++oh;                                                                        \
            }                                                                                \
            if (w == W) {                                                                    \
                w = 0;                                                                       \
                dst += pstride;                                                              \
            }                                                                                \
        }                                                                                    \
    }

/* pack_b with trans_b == 0: taps [p0, p0+kc) are k, pixels [j0, j0+nc) are the columns.
 * pack_b with trans_b == 1: pixels [p0, p0+kc) are k, taps [j0, j0+nc) are the columns;
 * each panel's W taps are first gathered as rows of tmp (W x kc, L1/L2-resident), then
 * transposed into the panel by the ordinary transposing packer. */
#define FC_PACK_IM2COL(SFX, ATTR, TAP_RUN)                                                   \
    static ATTR void FN(pack_b_im2col_n##SFX)(const FC_T *x, const fc_im2col_t *g,           \
                                               int64_t p0, int64_t kc, int64_t j0,           \
                                               int64_t nc, FC_T *dst, int W)                 \
    {                                                                                        \
        int64_t full = nc / W, rest = nc - full * W;                                         \
        for (int64_t k = 0; k < kc; ++k) {                                                   \
            FN(tap_t) t = FN(tap)(x, g, p0 + k);                                             \
            TAP_RUN(g, &t, j0, nc, dst + k * W, W, kc * W);                                  \
            for (int64_t j = rest ? rest : W; j < W; ++j)                                    \
                dst[full * kc * W + k * W + j] = 0;                                          \
        }                                                                                    \
    }                                                                                        \
    static ATTR void FN(pack_b_im2col_t##SFX)(const FC_T *x, const fc_im2col_t *g,           \
                                               int64_t p0, int64_t kc, int64_t j0,           \
                                               int64_t nc, FC_T *tmp)                        \
    {                                                                                        \
        for (int64_t r = 0; r < nc; ++r) {                                                   \
            FN(tap_t) t = FN(tap)(x, g, j0 + r);                                             \
            TAP_RUN(g, &t, p0, kc, tmp + r * kc, kc, 0);                                     \
        }                                                                                    \
    }

#define FC_COMMA ,
FC_TAP_RUN(FN(tap_run), , FC_RUN_SCALAR)
FC_PACK_IM2COL(, , FN(tap_run))
#if FC_X86
FC_TAP_RUN(FN(tap_run512), FC_COMMA target("avx512f"), FC_RUN_512)
FC_PACK_IM2COL(_512, __attribute__((target("avx512f"))), FN(tap_run512))
#endif

/* ------------------------------------------------------------------------------------------
 * Row-offset form (geo->rowoff != NULL): B[r, t] = x[rowoff[r] + (t / seg) * segstride +
 * t % seg]. A stride-1 convolution over a zero-padded copy of the image, computed on a grid
 * of padded width (junk columns included and dropped by the caller), has exactly this B:
 * every row is a contiguous run of the padded image per segment (segments: images). Packing
 * is then plain copies, with no bounds, zeros or divisions per element.
 * ------------------------------------------------------------------------------------------ */

/* d[0 .. n) = B[row with offset off, columns t0 .. t0+n) */
static inline void FN(rows_copy)(const FC_T *x, const fc_im2col_t *g, int64_t off, int64_t t0,
                                 int64_t n, FC_T *restrict d)
{
    int64_t s = t0 / g->seg, q = t0 - s * g->seg;
    while (n > 0) {
        int64_t len = g->seg - q < n ? g->seg - q : n;
        memcpy(d, x + off + s * g->segstride + q, sizeof(FC_T) * len);
        d += len;
        n -= len;
        ++s;
        q = 0;
    }
}

/* pack_b, trans_b == 0: rows [p0, p0+kc) are k, columns [j0, j0+nc) the panels' lanes.
 * A panel inside one segment is a fixed-size copy (a few vector moves). */
static inline __attribute__((always_inline)) void
FN(pack_rows_n_w)(const FC_T *x, const fc_im2col_t *g, int64_t p0, int64_t kc, int64_t j0,
                  int64_t nc, FC_T *restrict dst, const int W)
{
    int64_t full = nc / W, rest = nc - full * W;
    for (int64_t k = 0; k < kc; ++k) {
        const FC_T *src = x + g->rowoff[p0 + k];
        FC_T *d = dst + k * W;
        int64_t p = 0, t = j0, s = t / g->seg, q = t - s * g->seg;
        for (; p < full; ++p, d += kc * W, t += W) {
            if (q + W <= g->seg) {
                memcpy(d, src + s * g->segstride + q, sizeof(FC_T) * W);
                q += W;
                if (q == g->seg) {
                    q = 0;
                    ++s;
                }
            } else {
                FN(rows_copy)(x, g, g->rowoff[p0 + k], t, W, d);
                s = (t + W) / g->seg;
                q = t + W - s * g->seg;
            }
        }
        if (rest) {
            FN(rows_copy)(x, g, g->rowoff[p0 + k], t, rest, d);
            for (int j = (int)rest; j < W; ++j)
                d[j] = 0;
        }
    }
}

#if FC_X86
/* pack_b_rows with trans_b, transposing straight from the image: within one segment every
 * row of B^T is a contiguous run, so a panel's W rows are pointers into x and each piece of
 * [p0, p0 + kc) inside a segment goes through transpose_rows, without first copying the
 * rows out (the copies took a tenth of a stride-2 weight gradient). The same values land in
 * the same places as by the tmp route. W % FC_TB == 0, W <= 32, kc <= FC_KC_MAX. */
static void FN(pack_rows_t_direct)(const FC_T *x, const fc_im2col_t *geo, int64_t p0,
                                   int64_t kc, int64_t j0, int64_t nc, FC_T *dst, int W)
{
    const FC_T *rows[32];
    for (int64_t q = 0; q < nc; q += W, dst += kc * W) {
        int n = (int)(nc - q < W ? nc - q : W);
        int64_t t = p0, s = t / geo->seg, q0 = t - s * geo->seg;
        while (t < p0 + kc) {
            int64_t len = geo->seg - q0 < p0 + kc - t ? geo->seg - q0 : p0 + kc - t;
            for (int r = 0; r < W; ++r)
                rows[r] = r < n ? x + geo->rowoff[j0 + q + r] + s * geo->segstride + q0
                                : FN(zero_row);
            FN(transpose_rows)(rows, len, dst + (t - p0) * W, W);
            t += len;
            ++s;
            q0 = 0;
        }
    }
}
#endif

static void FN(pack_b_rows)(const FN(cfg_t) *g, int trans_b, const FC_T *x,
                            const fc_im2col_t *geo, int64_t p0, int64_t kc, int64_t j0,
                            int64_t nc, FC_T *dst, FC_T *tmp)
{
    if (!trans_b) {
        FC_PACK_SWITCH(FN(pack_rows_n_w), g->nr, x, geo, p0, kc, j0, nc, dst)
        return;
    }
    /* trans_b: k = columns t [p0, p0+kc), lanes = rows [j0, j0+nc). */
#if FC_X86
    if (g->nr % FC_TB == 0 && g->nr <= 32 && kc <= FC_KC_MAX) {
        FN(pack_rows_t_direct)(x, geo, p0, kc, j0, nc, dst, g->nr);
        return;
    }
#endif
    /* Elsewhere each panel's rows are gathered as contiguous runs into tmp (nr x kc), then
     * transposed into the panel. */
    for (int64_t q = 0; q < nc; q += g->nr, dst += kc * g->nr) {
        int64_t n = nc - q < g->nr ? nc - q : g->nr;
        for (int64_t r = 0; r < n; ++r)
            FN(rows_copy)(x, geo, geo->rowoff[j0 + q + r], p0, kc, tmp + r * kc);
        FN(pack_t)(tmp, kc, n, kc, dst, g->nr);
    }
}

static void FN(pack_b_im2col)(const FN(cfg_t) *g, int trans_b, const FC_T *x,
                              const fc_im2col_t *geo, int64_t p0, int64_t kc, int64_t j0,
                              int64_t nc, FC_T *dst, FC_T *tmp)
{
#if FC_X86
    int simd = g->ukr == FN(ukr512);
#else
    int simd = 0;
#endif
    if (geo->rowoff) {
        FN(pack_b_rows)(g, trans_b, x, geo, p0, kc, j0, nc, dst, tmp);
        return;
    }
    if (!trans_b) {
#if FC_X86
        if (simd) {
            FN(pack_b_im2col_n_512)(x, geo, p0, kc, j0, nc, dst, g->nr);
            return;
        }
#endif
        FN(pack_b_im2col_n)(x, geo, p0, kc, j0, nc, dst, g->nr);
        return;
    }
    for (int64_t q = 0; q < nc; q += g->nr, dst += kc * g->nr) {
        int64_t n = nc - q < g->nr ? nc - q : g->nr;
#if FC_X86
        if (simd)
            FN(pack_b_im2col_t_512)(x, geo, p0, kc, j0 + q, n, tmp);
        else
#endif
            FN(pack_b_im2col_t)(x, geo, p0, kc, j0 + q, n, tmp);
        FN(pack_t)(tmp, kc, n, kc, dst, g->nr);
    }
}
#undef FC_COMMA
#undef FC_RUN_SCALAR
#undef FC_RUN_512
#undef FC_TAP_RUN
#undef FC_PACK_IM2COL
