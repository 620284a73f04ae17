/* One body per element type and code path for the depthwise kernels; src/dw_kernels.h
 * includes it once per (type, path). The includer defines DW_T (element type), DWN(name)
 * (name mangling) and DW_VL: 0 for the portable path, else the vector width, with the vector
 * type DW_V, mask type DW_M, the function attribute DW_ATTR, the operations used below and
 * DWG(name), the portable version's name.
 *
 * Every kernel works on operands packed so that each tap is a contiguous run (src/dw_kernels.h
 * explains the packing): tap t of output row r starts at src + r * lds + off[t]. Row edges are
 * done by masked loads and stores on the same instructions, so every output lane is computed
 * the same way. Summation order (fixed by the arguments, never by threads):
 *   taps: out = base, then out = out + w[t] * x_t for t in order (one FMA each on SIMD paths);
 *   dots: per tap, one partial sum per vector lane over all rows, then added (in double) to
 *         that lane's accumulator acc[t * DW_ACC_LANES + lane]; the caller adds the lanes.
 */

#if DW_VL == 0
/* ------------------------------------------------------------------------ portable C */

/* buf[r][q][j] = src[r - r0][j * s + q - c0], 0 outside src (H x W); r < Hb, q < nq, j < Jw.
 * nx (may be NULL): prefetched (dw_next); here all at once, the SIMD paths a slice per row. */
static void DWN(pack)(DW_T *buf, ptrdiff_t Hb, ptrdiff_t nq, ptrdiff_t Jw, const DW_T *src,
                      ptrdiff_t H, ptrdiff_t W, ptrdiff_t r0, ptrdiff_t c0, ptrdiff_t s,
                      const dw_next *nx)
{
    for (ptrdiff_t ih = 0; ih < H; ++ih)
        dw_prefetch_row(nx, ih);
    for (ptrdiff_t q = 0; q < nq; ++q) {
        /* columns j with 0 <= j * s + q - c0 < W (divisions once per phase, not per row) */
        ptrdiff_t a = c0 - q, b = W + c0 - q;
        ptrdiff_t lo = a <= 0 ? 0 : (a + s - 1) / s;
        ptrdiff_t hi = b <= 0 ? 0 : (b + s - 1) / s;
        if (lo > Jw) lo = Jw;
        if (hi > Jw) hi = Jw;
        if (hi < lo) hi = lo;
        for (ptrdiff_t r = 0; r < Hb; ++r) {
            ptrdiff_t ih = r - r0;
            DW_T *d = buf + (r * nq + q) * Jw;
            if (ih < 0 || ih >= H) {
                memset(d, 0, sizeof(DW_T) * Jw);
                continue;
            }
            const DW_T *x = src + ih * W + q - c0;
            for (ptrdiff_t j = 0; j < lo; ++j)
                d[j] = 0;
            if (s == 1)
                memcpy(d + lo, x + lo, sizeof(DW_T) * (hi - lo));
            else if (s == 2)
                for (ptrdiff_t j = lo; j < hi; ++j)
                    d[j] = x[2 * j];
            else
                for (ptrdiff_t j = lo; j < hi; ++j)
                    d[j] = x[j * s];
            for (ptrdiff_t j = hi; j < Jw; ++j)
                d[j] = 0;
        }
    }
}

/* gx[ih][iw] = P[ph][a][b] with ph = (ih % sh) * sw + iw % sw, a = ih / sh, b = iw / sw;
 * each phase plane is A x B. */
static void DWN(unphase)(DW_T *gx, ptrdiff_t H, ptrdiff_t W, const DW_T *P, ptrdiff_t A,
                         ptrdiff_t B, ptrdiff_t sh, ptrdiff_t sw)
{
    const ptrdiff_t AB = A * B;
    ptrdiff_t ih = 0;
    for (ptrdiff_t a = 0; ih < H; ++a) {
        for (ptrdiff_t qh = 0; qh < sh && ih < H; ++qh, ++ih) {
            const DW_T *p = P + qh * sw * AB + a * B;
            DW_T *g = gx + ih * W;
            if (sw == 2) {
                const DW_T *p1 = p + AB;
                ptrdiff_t half = W / 2;
                for (ptrdiff_t b = 0; b < half; ++b) {
                    g[2 * b] = p[b];
                    g[2 * b + 1] = p1[b];
                }
                if (W & 1)
                    g[W - 1] = p[half];
            } else {
                for (ptrdiff_t qw = 0; qw < sw; ++qw)
                    for (ptrdiff_t b = 0; b * sw + qw < W; ++b)
                        g[b * sw + qw] = p[qw * AB + b];
            }
        }
    }
}

static void DWN(taps)(DW_T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C, const DW_T *src,
                      ptrdiff_t lds, ptrdiff_t nt, const DW_T *w, const ptrdiff_t *widx,
                      const ptrdiff_t *off, DW_T b, int accumulate)
{
    for (ptrdiff_t r = 0; r < R; ++r) {
        DW_T *o = out + r * ldo;
        const DW_T *x = src + r * lds;
        if (!accumulate)
            for (ptrdiff_t i = 0; i < C; ++i)
                o[i] = b;
        for (ptrdiff_t t = 0; t < nt; ++t) {
            const DW_T wt = w[widx[t]], *xt = x + off[t];
            for (ptrdiff_t i = 0; i < C; ++i)
                o[i] += wt * xt[i];
        }
    }
}

/* Column stride 2: out[r][2j + q] = b + sum_t w[widx_q[t]] * src[r * lds + off_q[t] + j]
 * for the two column phases q (j < ceil(C / 2) for q = 0, j < C / 2 for q = 1). */
static void DWN(taps2)(DW_T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C, const DW_T *src,
                       ptrdiff_t lds, const DW_T *w, ptrdiff_t nt0, const ptrdiff_t *widx0,
                       const ptrdiff_t *off0, ptrdiff_t nt1, const ptrdiff_t *widx1,
                       const ptrdiff_t *off1, DW_T b)
{
    const ptrdiff_t B0 = (C + 1) / 2, B1 = C / 2;
    for (ptrdiff_t r = 0; r < R; ++r) {
        DW_T *o = out + r * ldo;
        const DW_T *x = src + r * lds;
        for (ptrdiff_t i = 0; i < C; ++i)
            o[i] = b;
        for (ptrdiff_t t = 0; t < nt0; ++t) {
            const DW_T wt = w[widx0[t]], *xt = x + off0[t];
            for (ptrdiff_t j = 0; j < B0; ++j)
                o[2 * j] += wt * xt[j];
        }
        for (ptrdiff_t t = 0; t < nt1; ++t) {
            const DW_T wt = w[widx1[t]], *xt = x + off1[t];
            for (ptrdiff_t j = 0; j < B1; ++j)
                o[2 * j + 1] += wt * xt[j];
        }
    }
}

#define DW_LANES 8
static void DWN(dots)(double *acc, const DW_T *gy, ptrdiff_t R, ptrdiff_t C, const DW_T *src,
                      ptrdiff_t lds, ptrdiff_t nt, const ptrdiff_t *off)
{
    ptrdiff_t nv = C - C % DW_LANES;
    for (ptrdiff_t t = 0; t < nt; ++t) {
        DW_T lane[DW_LANES] = {0};
        for (ptrdiff_t r = 0; r < R; ++r) {
            const DW_T *g = gy + r * C, *x = src + r * lds + off[t];
            for (ptrdiff_t i = 0; i < nv; i += DW_LANES)
                for (int l = 0; l < DW_LANES; ++l)
                    lane[l] += g[i + l] * x[i + l];
            for (ptrdiff_t i = nv; i < C; ++i)
                lane[i - nv] += g[i] * x[i];
        }
        for (int l = 0; l < DW_LANES; ++l)
            acc[t * DW_ACC_LANES + l] += lane[l];
    }
}
#undef DW_LANES

#else
/* ------------------------------------------------------------------------ SIMD */

/* Lanes l with lo <= l < hi (lo, hi clamped to [0, DW_VL]). */
static inline __attribute__((always_inline)) DW_ATTR DW_M DWN(lanes)(ptrdiff_t lo, ptrdiff_t hi)
{
    lo = lo < 0 ? 0 : lo > DW_VL ? DW_VL : lo;
    hi = hi < lo ? lo : hi > DW_VL ? DW_VL : hi;
    return DW_MRANGE((int)lo, (int)hi);
}

/* Columns [0, Jn) of dw_pack's rows (Jn <= DW_PACK_MAXV vectors; rows Jw apart, phase q at
 * q * Jw): the masks depend only on the column, so they are worked out once, not per row. */
static inline __attribute__((always_inline)) DW_ATTR void
DWN(pack_cols)(DW_T *buf, ptrdiff_t Hb, ptrdiff_t nq, ptrdiff_t Jw, ptrdiff_t Jn,
               const DW_T *src, ptrdiff_t H, ptrdiff_t W, ptrdiff_t r0, ptrdiff_t c0,
               ptrdiff_t s, DW_V z, const dw_next *nx)
{
    DW_M keep[DW_PACK_MAXV], la[DW_PACK_MAXV], lb[DW_PACK_MAXV];
    const ptrdiff_t nv = (Jn + DW_VL - 1) / DW_VL;
    for (ptrdiff_t v = 0; v < nv; ++v) {
        ptrdiff_t j = v * DW_VL, c = s * j - c0;   /* stride 2: phase 0 at c, phase 1 at c + 1 */
        keep[v] = DWN(lanes)(0, Jn - j);
        la[v] = DWN(lanes)(-c, W - c);
        lb[v] = DWN(lanes)(-c - DW_VL, W - c - DW_VL);
    }
    /* Only the last vector's store is masked (when Jn is not a multiple of DW_VL): AMD's Zen
     * cores run an AVX2 masked store as microcode, many times a plain store's cost. */
#define DW_PACK_STORE(p, v, val)                                                           \
    do {                                                                                   \
        if ((v) < nfull)                                                                   \
            DW_STORE((p), (val));                                                          \
        else                                                                               \
            DW_MSTORE((p), keep[v], (val));                                                \
    } while (0)
    const ptrdiff_t nfull = Jn / DW_VL;
    for (ptrdiff_t r = 0; r < Hb; ++r) {
        ptrdiff_t ih = r - r0;
        DW_T *d = buf + r * nq * Jw;
        if (ih < 0 || ih >= H) {
            for (ptrdiff_t q = 0; q < nq; ++q)
                for (ptrdiff_t v = 0; v < nv; ++v)
                    DW_PACK_STORE(d + q * Jw + v * DW_VL, v, z);
            continue;
        }
        dw_prefetch_row(nx, ih);
        const DW_T *x = src + ih * W - c0;
        if (s == 1) {
            for (ptrdiff_t v = 0; v < nv; ++v)
                DW_PACK_STORE(d + v * DW_VL, v, DW_MLOAD(x + v * DW_VL, la[v]));
        } else {
            for (ptrdiff_t v = 0; v < nv; ++v) {
                DW_V a = DW_MLOAD(x + 2 * v * DW_VL, la[v]);
                DW_V b = DW_MLOAD(x + 2 * v * DW_VL + DW_VL, lb[v]);
                DW_PACK_STORE(d + v * DW_VL, v, DW_EVENS(a, b));
                DW_PACK_STORE(d + Jw + v * DW_VL, v, DW_ODDS(a, b));
            }
        }
    }
#undef DW_PACK_STORE
}

/* dw_pack (see the portable version) for s = 1 and 2: masked loads give the zero padding, and
 * stride 2 splits each pair of vectors into its even and odd columns in registers. Masked-off
 * lanes are never read (no fault), so the loads may start before a row or end after it. */
static DW_ATTR void DWN(pack)(DW_T *buf, ptrdiff_t Hb, ptrdiff_t nq, ptrdiff_t Jw,
                              const DW_T *src, ptrdiff_t H, ptrdiff_t W, ptrdiff_t r0,
                              ptrdiff_t c0, ptrdiff_t s, const dw_next *nx)
{
    if (s > 2 || nq != s) {
        DWG(pack)(buf, Hb, nq, Jw, src, H, W, r0, c0, s, nx);
        return;
    }
    const DW_V z = DW_ZERO();
    const ptrdiff_t nv = (Jw + DW_VL - 1) / DW_VL;
    if (nv > DW_PACK_MAXV) {   /* wider than the mask tables: rows in pieces */
        ptrdiff_t Jp = DW_PACK_MAXV * DW_VL;
        for (ptrdiff_t j0 = 0; j0 < Jw; j0 += Jp)
            DWN(pack_cols)(buf + j0, Hb, nq, Jw, Jw - j0 < Jp ? Jw - j0 : Jp, src, H, W, r0,
                           c0 - s * j0, s, z, j0 == 0 ? nx : NULL);
        return;
    }
    DWN(pack_cols)(buf, Hb, nq, Jw, Jw, src, H, W, r0, c0, s, z, nx);
}

/* NV vectors of one output row side by side, each with its own accumulator: the 9 FMAs of a
 * 3x3 tap chain are serial (4 cycles each), so one vector at a time left the FMA units idle
 * most of the time. TAIL, for the last vector: 0 a whole vector at (NV - 1) * DW_VL; 1 the
 * same through mask m (loads and store); 2 a whole vector at column `last`, overlapping the
 * one before it (its overlapped outputs are computed again, the same way, and stored again:
 * the same bits; never with `accumulate`, which would add them twice); 3 loaded through mask
 * m, stored whole (the lanes past the row land in rows the caller writes after this one). */
static inline __attribute__((always_inline)) DW_ATTR void
DWN(taps_row)(DW_T *o, const DW_T *x, const ptrdiff_t *off, const DW_V *wv, DW_V bv, DW_M m,
              ptrdiff_t last, int accumulate, const int NT, const int NV, const int TAIL)
{
#define DW_AT(v) (TAIL == 2 && (v) == NV - 1 ? last : (v) * DW_VL)
#define DW_MASKED(v) ((TAIL == 1 || TAIL == 3) && (v) == NV - 1)
    DW_V a[DW_NB];
    for (int v = 0; v < NV; ++v)
        a[v] = !accumulate ? bv : DW_MASKED(v) ? DW_MLOAD(o + DW_AT(v), m)
                                               : DW_LOAD(o + DW_AT(v));
    for (int t = 0; t < NT; ++t)
        for (int v = 0; v < NV; ++v)
            a[v] = DW_FMA(wv[t], DW_MASKED(v) ? DW_MLOAD(x + off[t] + DW_AT(v), m)
                                              : DW_LOAD(x + off[t] + DW_AT(v)), a[v]);
    for (int v = 0; v < NV; ++v) {
        if (DW_MASKED(v) && TAIL == 1)
            DW_MSTORE(o + DW_AT(v), m, a[v]);
        else
            DW_STORE(o + DW_AT(v), a[v]);
    }
#undef DW_AT
#undef DW_MASKED
}

/* Up to DW_CHUNK taps with their weights held in registers; NT is a literal for the common
 * tap counts (3x3 forward: 9; stride-2 backward_input phases: 4, 2, 1), so the tap loop
 * unrolls. A row goes in blocks of DW_NB vectors, then its last 1 to DW_NB vectors together
 * (the final one partial unless C is a multiple of DW_VL: see dw_taps_row's TAIL). Each
 * output is base + taps in order either way. */
static inline __attribute__((always_inline)) DW_ATTR void
DWN(taps_chunk)(DW_T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C, const DW_T *src,
                ptrdiff_t lds, const DW_T *w, const ptrdiff_t *widx, const ptrdiff_t *off,
                DW_T b, int accumulate, const int NT)
{
    DW_V wv[DW_CHUNK];
    for (int t = 0; t < NT; ++t)
        wv[t] = DW_SET1(w[widx[t]]);
    const DW_V bv = DW_SET1(b);
    const ptrdiff_t nb = C <= DW_NB * DW_VL ? 0 : (C - 1) / (DW_NB * DW_VL) * (DW_NB * DW_VL);
    const int nrem = (int)((C - nb + DW_VL - 1) / DW_VL);   /* 1..DW_NB when C > 0 */
    const DW_M m = DWN(lanes)(0, C - nb - (nrem - 1) * DW_VL);   /* the last vector's */
    const int full = (C - nb) % DW_VL == 0;
    const int tail = full ? -nrem : !accumulate && C >= DW_VL ? 8 + nrem : nrem;
    const ptrdiff_t last = C - nb - DW_VL;   /* TAIL 2: the last vector's column, from o + nb */
    /* a row narrower than a vector, rows adjacent: a whole store whenever its spill stays in
     * the rows below, which this call writes after it (TAIL 3) */
    const int spill = tail == 1 && !accumulate && ldo == C;
    for (ptrdiff_t r = 0; r < R; ++r) {
        DW_T *o = out + r * ldo;
        const DW_T *x = src + r * lds;
        for (ptrdiff_t i = 0; i < nb; i += DW_NB * DW_VL)
            DWN(taps_row)(o + i, x + i, off, wv, bv, m, 0, accumulate, NT, DW_NB, 0);
        o += nb;
        x += nb;
        /* A full last vector goes unmasked (Zen runs AVX2 masked stores as microcode, many
         * times a plain store's cost); so does a partial one when the row has a whole vector
         * to overlap (TAIL 2), unless accumulating. */
#define DW_TAIL(n)                                                                          \
        case n: DWN(taps_row)(o, x, off, wv, bv, m, 0, accumulate, NT, n, 1); break;        \
        case -n: DWN(taps_row)(o, x, off, wv, bv, m, 0, accumulate, NT, n, 0); break;       \
        case 8 + n: DWN(taps_row)(o, x, off, wv, bv, m, last, accumulate, NT, n, 2); break;
        switch (spill && (R - r) * C >= DW_VL ? 16 : tail) {
        DW_TAIL(1) DW_TAIL(2) DW_TAIL(3) DW_TAIL(4)
        case 16: DWN(taps_row)(o, x, off, wv, bv, m, 0, accumulate, NT, 1, 3); break;
        }
#undef DW_TAIL
    }
}

static DW_ATTR void DWN(taps)(DW_T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C,
                              const DW_T *src, ptrdiff_t lds, ptrdiff_t nt, const DW_T *w,
                              const ptrdiff_t *widx, const ptrdiff_t *off, DW_T b,
                              int accumulate)
{
    if (nt == 9) {
        DWN(taps_chunk)(out, ldo, R, C, src, lds, w, widx, off, b, accumulate, 9);
        return;
    }
    if (nt == 4) {
        DWN(taps_chunk)(out, ldo, R, C, src, lds, w, widx, off, b, accumulate, 4);
        return;
    }
    if (nt == 2) {
        DWN(taps_chunk)(out, ldo, R, C, src, lds, w, widx, off, b, accumulate, 2);
        return;
    }
    if (nt == 1) {
        DWN(taps_chunk)(out, ldo, R, C, src, lds, w, widx, off, b, accumulate, 1);
        return;
    }
    /* any other count: chunks in tap order, each after the first adds to out */
    ptrdiff_t t0 = 0;
    do {
        ptrdiff_t k = nt - t0 < DW_CHUNK ? nt - t0 : DW_CHUNK;
        DWN(taps_chunk)(out, ldo, R, C, src, lds, w, widx + t0, off + t0, b,
                        accumulate || t0 > 0, (int)k);
        t0 += k;
    } while (t0 < nt);
}

/* dw_taps2_body's output columns [2j, 2j + 2 * DW_VL) of one row: both column phases, then
 * interleaved in registers. */
static inline __attribute__((always_inline)) DW_ATTR void
DWN(taps2_block)(DW_T *o, const DW_T *x, ptrdiff_t j, const DW_V *w0, const ptrdiff_t *off0,
                 const DW_V *w1, const ptrdiff_t *off1, DW_V bv, const int NT0, const int NT1)
{
    DW_V a0 = bv, a1 = bv;
    for (int t = 0; t < NT0; ++t)
        a0 = DW_FMA(w0[t], DW_LOAD(x + off0[t] + j), a0);
    for (int t = 0; t < NT1; ++t)
        a1 = DW_FMA(w1[t], DW_LOAD(x + off1[t] + j), a1);
    DW_STORE(o + 2 * j, DW_ZIPLO(a0, a1));
    DW_STORE(o + 2 * j + DW_VL, DW_ZIPHI(a0, a1));
}

static inline __attribute__((always_inline)) DW_ATTR void
DWN(taps2_body)(DW_T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C, const DW_T *src,
                ptrdiff_t lds, const DW_T *w, const ptrdiff_t *widx0, const ptrdiff_t *off0,
                const ptrdiff_t *widx1, const ptrdiff_t *off1, DW_T b, const int NT0,
                const int NT1)
{
    DW_V w0[DW_CHUNK], w1[DW_CHUNK];
    for (int t = 0; t < NT0; ++t)
        w0[t] = DW_SET1(w[widx0[t]]);
    for (int t = 0; t < NT1; ++t)
        w1[t] = DW_SET1(w[widx1[t]]);
    const DW_V bv = DW_SET1(b);
    const ptrdiff_t B0 = (C + 1) / 2, B1 = C / 2;
    for (ptrdiff_t r = 0; r < R; ++r) {
        DW_T *o = out + r * ldo;
        const DW_T *x = src + r * lds;
        ptrdiff_t j = 0;
        for (; j + DW_VL <= B1; j += DW_VL)      /* 2 * DW_VL whole output columns */
            DWN(taps2_block)(o, x, j, w0, off0, w1, off1, bv, NT0, NT1);
        if (j < B0 && B0 == B1 && B1 >= DW_VL) {
            /* even C: the last 2 * DW_VL columns as a whole block, overlapping the one before
             * it (its overlapped outputs computed again the same way: the same bits), rather
             * than masked stores (microcode on Zen) */
            DWN(taps2_block)(o, x, B1 - DW_VL, w0, off0, w1, off1, bv, NT0, NT1);
        } else if (j < B0) {
            const DW_M m0 = DWN(lanes)(0, B0 - j), m1 = DWN(lanes)(0, B1 - j);
            DW_V a0 = bv, a1 = bv;
            for (int t = 0; t < NT0; ++t)
                a0 = DW_FMA(w0[t], DW_MLOAD(x + off0[t] + j, m0), a0);
            for (int t = 0; t < NT1; ++t)
                a1 = DW_FMA(w1[t], DW_MLOAD(x + off1[t] + j, m1), a1);
            DW_MSTORE(o + 2 * j, DWN(lanes)(0, C - 2 * j), DW_ZIPLO(a0, a1));
            if (C - 2 * j > DW_VL)
                DW_MSTORE(o + 2 * j + DW_VL, DWN(lanes)(0, C - 2 * j - DW_VL),
                          DW_ZIPHI(a0, a1));
        }
    }
}

/* Stride-2 input gradient rows: the two column phases computed side by side and interleaved
 * in registers (no phase buffers). Tap counts of 3x3 stride 2 are literals. */
static DW_ATTR void DWN(taps2)(DW_T *out, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t C,
                               const DW_T *src, ptrdiff_t lds, const DW_T *w, ptrdiff_t nt0,
                               const ptrdiff_t *widx0, const ptrdiff_t *off0, ptrdiff_t nt1,
                               const ptrdiff_t *widx1, const ptrdiff_t *off1, DW_T b)
{
#define DW_T2(A, B)                                                                         \
    if (nt0 == A && nt1 == B) {                                                             \
        DWN(taps2_body)(out, ldo, R, C, src, lds, w, widx0, off0, widx1, off1, b, A, B);    \
        return;                                                                             \
    }
    DW_T2(4, 2) DW_T2(2, 4) DW_T2(2, 1) DW_T2(1, 2)
#undef DW_T2
    if (nt0 <= DW_CHUNK && nt1 <= DW_CHUNK)
        DWN(taps2_body)(out, ldo, R, C, src, lds, w, widx0, off0, widx1, off1, b, (int)nt0,
                        (int)nt1);
    else
        DWG(taps2)(out, ldo, R, C, src, lds, w, nt0, widx0, off0, nt1, widx1, off1, b);
}

static inline __attribute__((always_inline)) DW_ATTR void
DWN(dots_chunk)(double *acc, const DW_T *gy, ptrdiff_t R, ptrdiff_t C, const DW_T *src,
                ptrdiff_t lds, const ptrdiff_t *off, const int NT)
{
    DW_V a[DW_CHUNK];
    for (int t = 0; t < NT; ++t)
        a[t] = DW_ZERO();
    const ptrdiff_t nf = C - C % DW_VL;
    const DW_M m = DW_MASK(C - nf);
    for (ptrdiff_t r = 0; r < R; ++r) {
        const DW_T *g = gy + r * C, *x = src + r * lds;
        ptrdiff_t i = 0;
        for (; i < nf; i += DW_VL) {
            DW_V gv = DW_LOAD(g + i);
            for (int t = 0; t < NT; ++t)
                a[t] = DW_FMA(gv, DW_LOAD(x + off[t] + i), a[t]);
        }
        if (i < C) {
            DW_V gv = DW_MLOAD(g + i, m);
            for (int t = 0; t < NT; ++t)
                a[t] = DW_FMA(gv, DW_MLOAD(x + off[t] + i, m), a[t]);
        }
    }
    for (int t = 0; t < NT; ++t) {
        DW_T lane[DW_VL];
        DW_STORE(lane, a[t]);
        for (int l = 0; l < DW_VL; ++l)
            acc[t * DW_ACC_LANES + l] += lane[l];
    }
}

static DW_ATTR void DWN(dots)(double *acc, const DW_T *gy, ptrdiff_t R, ptrdiff_t C,
                              const DW_T *src, ptrdiff_t lds, ptrdiff_t nt,
                              const ptrdiff_t *off)
{
    if (nt == 9) {
        DWN(dots_chunk)(acc, gy, R, C, src, lds, off, 9);
        return;
    }
    for (ptrdiff_t t0 = 0; t0 < nt; t0 += DW_CHUNK) {
        ptrdiff_t k = nt - t0 < DW_CHUNK ? nt - t0 : DW_CHUNK;
        DWN(dots_chunk)(acc + t0 * DW_ACC_LANES, gy, R, C, src, lds, off + t0, (int)k);
    }
}
#endif
