/* Winograd's minimal filtering F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray 2016),
 * the per-channel and per-block work of conv2d_winograd.pyx.
 *
 * A 2x2 output tile of one channel k is
 *     Y = A^T [ sum over c of (G g[k,c] G^T) * (B^T d[c] B) ] A
 * where d[c] is the 4x4 input patch under the tile, g the 3x3 kernel and * the elementwise
 * product: 16 multiplies per channel pair where the direct form needs 36, and the sum over c
 * is 16 independent GEMMs, one per position xi of the 4x4 transformed tile:
 *     M[xi] (K x tiles) = U[xi] (K x C) @ V[xi] (C x tiles).
 *
 * Layout. The input is zero-padded and split into its 4 phase planes (even/odd rows x
 * columns) of Hq x Wq (Hq = th + 1, Wq = tw + 1 for th x tw tiles), image by image, channel
 * by channel (xp + n*ln + (4*c + phase)*ld, ld = Hq*Wq), so that the tile at (ty, tx) of
 * image n reads patch element (r, q) of channel c at
 *     phase (r % 2, q % 2), n*ln + (ty + r / 2)*Wq + tx + q / 2:
 * the tiles of one tile row read consecutive floats, and 16 tiles transform in one vector.
 * Tiles are numbered t = (n*th + ty)*tw + tx; a vector of 16 is loaded as one masked load
 * per run of tiles in the same tile row (one run when tw is a multiple of 16, four for 8x8
 * images), so no work is spent on the planes' extra row and column. A block of FC_WN_TB
 * tiles is the unit of work: transform its inputs (V, in L2), run the 16 GEMMs a slice of
 * output channels at a time (M), transform back and store.
 *
 * Every output is the same sequence of operations whatever the block's neighbours, so results
 * do not depend on the thread count. The float32 AVX-512 path and the portable path (float64,
 * or a CPU without AVX-512) compute the same formulas; the rounding differs from the direct
 * form by a few ulps of the largest partial sums (the transforms add up to 9 terms).
 */
#ifndef FASTCONV_WINOGRAD_H
#define FASTCONV_WINOGRAD_H
#include <stdint.h>
#include <string.h>
#include "cpu_dispatch.h"

/* tiles per block (3 vectors of 16) and output channels per GEMM slice */
enum { FC_WN_TB = 48, FC_WN_KC = 64 };
/* input channels per step of the weight transform */
enum { FC_WN_CB = 16 };

typedef struct {
    int64_t N, C, K, H, W, OH, OW; /* x (N, C, H, W) -> y (N, K, OH, OW) */
    int64_t ph, pw;                /* y[oh, ow] = sum x[oh + i - ph, ow + j - pw] g[i, j] */
    int64_t th, tw;                /* output tiles per image */
    int64_t Hq, Wq;                /* phase planes: th + 1 rows, tw + 1 columns */
    int64_t ntiles;                /* N * th * tw */
    int64_t ld;                    /* floats from one phase plane to the next (Hq * Wq) */
    int64_t ln;                    /* floats from one image's planes to the next's */
} fc_wn_geo;

static inline void fc_wn_geometry(fc_wn_geo *g, int64_t N, int64_t C, int64_t K, int64_t H,
                                  int64_t W, int64_t OH, int64_t OW, int64_t ph, int64_t pw)
{
    g->N = N; g->C = C; g->K = K; g->H = H; g->W = W; g->OH = OH; g->OW = OW;
    g->ph = ph; g->pw = pw;
    g->th = (OH + 1) / 2; g->tw = (OW + 1) / 2;
    g->Hq = g->th + 1; g->Wq = g->tw + 1;
    g->ntiles = N * g->th * g->tw;
    g->ld = g->Hq * g->Wq;
    g->ln = 4 * C * g->ld;
}

static inline int fc_wn_simd(void) { return fc_cpu_target() == FC_CPU_AVX512; }
static inline int fc_wn_avx2(void) { return fc_cpu_target() == FC_CPU_AVX2; }

/* Per-type code: the phase-plane packing, the weight transform and the portable block. */
#define FC_WN_DEFINE(T, SUF)                                                                   \
/* Channel c of every image into its 4 phase planes (xp + n*ln + (4*c + phase)*ld), zeros    \
 * around. row must hold 2*Wq values. Returns 1 if x's channel holds a NaN or an infinity. */ \
static int fc_wn_pack_##SUF(const T *x, int64_t c, const fc_wn_geo *g, T *xp, T *row)        \
{                                                                                              \
    const int64_t Hq = g->Hq, Wq = g->Wq, HW = g->H * g->W, plane = Hq * Wq;                   \
    int64_t lo = g->pw < 0 ? -g->pw : 0, hi = g->W;                                            \
    if (hi > 2 * Wq - g->pw) hi = 2 * Wq - g->pw;                                              \
    T bad = 0;                                                                                 \
    for (int64_t n = 0; n < g->N; ++n) {                                                       \
        const T *src = x + (n * g->C + c) * HW;                                                \
        for (int64_t pr = 0; pr < 2 * Hq; ++pr) {                                              \
            T *e = xp + n * g->ln + (4 * c + (pr & 1) * 2) * plane + (pr >> 1) * Wq;           \
            T *o = e + g->ld;                                                                  \
            int64_t h = pr - g->ph;                                                            \
            if (h < 0 || h >= g->H || lo >= hi) {                                              \
                memset(e, 0, Wq * sizeof(T));                                                  \
                memset(o, 0, Wq * sizeof(T));                                                  \
                continue;                                                                      \
            }                                                                                  \
            memset(row, 0, 2 * Wq * sizeof(T));                                                \
            memcpy(row + lo + g->pw, src + h * g->W + lo, (hi - lo) * sizeof(T));              \
            for (int64_t w = lo; w < hi; ++w) /* 0 * x is NaN exactly when x is not finite */  \
                bad += 0 * src[h * g->W + w];                                                  \
            for (int64_t q = 0; q < Wq; ++q) {                                                 \
                e[q] = row[2 * q];                                                             \
                o[q] = row[2 * q + 1];                                                         \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    return bad != bad;                                                                         \
}                                                                                              \
                                                                                               \
/* U[xi][k][c] = (G g G^T)[xi] for output channel k and every input channel c. g = w[k, c]     \
 * (w of shape (K, C, 3, 3)); with flip, g = w[c, k] rotated by 180 degrees (w of shape        \
 * (C, K, 3, 3)): the kernel of the input gradient as a forward convolution. Returns 1 if      \
 * one of these kernels holds a NaN or an infinity. FC_WN_CB channels at a time, each step     \
 * a loop over them that the compiler vectorises. (One channel at a time, with 16 scattered    \
 * stores each, it was most of a batch-1 forward at K = C = 64: 0.37 ms against 0.15.) */      \
static int fc_wn_weights_##SUF(const T *w, int64_t k, int flip, const fc_wn_geo *g, T *U)      \
{                                                                                              \
    const int64_t K = g->K, C = g->C;                                                          \
    T bad = 0, z[FC_WN_CB];                                                                    \
    for (int cc = 0; cc < FC_WN_CB; ++cc)                                                      \
        z[cc] = 0;                                                                             \
    for (int64_t c0 = 0; c0 < C; c0 += FC_WN_CB) {                                             \
        const int n = C - c0 < FC_WN_CB ? (int)(C - c0) : FC_WN_CB;                            \
        T f[9][FC_WN_CB], t[4][3][FC_WN_CB];                                                   \
        for (int cc = 0; cc < n; ++cc) {                                                       \
            const T *s = w + (flip ? (c0 + cc) * K + k : k * C + c0 + cc) * 9;                 \
            for (int i = 0; i < 9; ++i)                                                        \
                f[i][cc] = flip ? s[8 - i] : s[i];                                             \
        }                                                                                      \
        /* 0 * v is NaN exactly when v is NaN or infinite: one sum per lane, vectorised */     \
        for (int i = 0; i < 9; ++i)                                                            \
            for (int cc = 0; cc < n; ++cc)                                                     \
                z[cc] += 0 * f[i][cc];                                                         \
        for (int j = 0; j < 3; ++j)                                                            \
            for (int cc = 0; cc < n; ++cc) {                                                   \
                t[0][j][cc] = f[j][cc];                                                        \
                t[1][j][cc] = (T)0.5 * (f[j][cc] + f[3 + j][cc] + f[6 + j][cc]);               \
                t[2][j][cc] = (T)0.5 * (f[j][cc] - f[3 + j][cc] + f[6 + j][cc]);               \
                t[3][j][cc] = f[6 + j][cc];                                                    \
            }                                                                                  \
        for (int i = 0; i < 4; ++i) {                                                          \
            T *u = U + (i * 4 * K + k) * C + c0;                                               \
            for (int cc = 0; cc < n; ++cc) {                                                   \
                u[cc] = t[i][0][cc];                                                           \
                u[K * C + cc] = (T)0.5 * (t[i][0][cc] + t[i][1][cc] + t[i][2][cc]);            \
                u[2 * K * C + cc] = (T)0.5 * (t[i][0][cc] - t[i][1][cc] + t[i][2][cc]);        \
                u[3 * K * C + cc] = t[i][2][cc];                                               \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    for (int cc = 0; cc < FC_WN_CB; ++cc)                                                      \
        bad += z[cc];                                                                          \
    return bad != bad;                                                                         \
}                                                                                              \
                                                                                               \
/* Where the block's tiles t0 .. t0 + TB - 1 read and store: xoff[t] = the tile's offset       \
 * in the packed planes, or -1 past the last tile; yoff[t] = the offset of its top-left        \
 * output in channel 0 of y; edge[t] bit 0: the tile has a second column, bit 1: a second      \
 * row. Computed once per block, not per channel. */                                           \
static inline void fc_wn_tiles_##SUF(const fc_wn_geo *g, int64_t t0, int64_t *xoff,           \
                                     int64_t *yoff, unsigned char *edge)                       \
{                                                                                              \
    const int64_t per = g->th * g->tw;                                                         \
    for (int64_t t = 0; t < FC_WN_TB; ++t) {                                                   \
        int64_t i = t0 + t, n = i / per, r = i - n * per, ty = r / g->tw, tx = r - ty * g->tw; \
        xoff[t] = yoff[t] = -1;                                                                \
        if (i >= g->ntiles)                                                                    \
            continue;                                                                          \
        xoff[t] = n * g->ln + ty * g->Wq + tx;                                                 \
        yoff[t] = n * g->K * g->OH * g->OW + 2 * ty * g->OW + 2 * tx;                          \
        edge[t] = (2 * tx + 1 < g->OW) | (2 * ty + 1 < g->OH) << 1;                            \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* Store output channel k of 16 tiles from the 4 transformed-back values o[0..3][lane]        \
 * (y[2ty + a, 2tx + b] = o[2a + b]), skipping lanes past the last tile and what lies past    \
 * the output's edge. */                                                                      \
static inline void fc_wn_store_##SUF(const fc_wn_geo *g, const int64_t *off,                  \
                                     const unsigned char *edge, int64_t k, const T o[4][16],   \
                                     T *y)                                                     \
{                                                                                              \
    const int64_t OW = g->OW;                                                                  \
    y += k * g->OH * OW;                                                                       \
    for (int l = 0; l < 16; ++l) {                                                             \
        if (off[l] < 0)                                                                        \
            continue;                                                                          \
        T *d = y + off[l];                                                                     \
        d[0] = o[0][l];                                                                        \
        if (edge[l] == 3) {                                                                    \
            d[1] = o[1][l];                                                                    \
            d[OW] = o[2][l];                                                                   \
            d[OW + 1] = o[3][l];                                                               \
        } else {                                                                               \
            if (edge[l] & 1) d[1] = o[1][l];                                                   \
            if (edge[l] & 2) d[OW] = o[2][l];                                                  \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* The block of tiles [t0, t0 + TB), portable code. V: 16*C*TB values, M: 16*KC*TB. */        \
static void fc_wn_block_generic_##SUF(const fc_wn_geo *g, const T *xp, const T *U,            \
                                      const T *bias, T *y, int64_t t0, T *V, T *M)             \
{                                                                                              \
    const int64_t C = g->C, K = g->K, Wq = g->Wq, TB = FC_WN_TB;                               \
    int64_t xoff[FC_WN_TB], off[FC_WN_TB];                                                     \
    unsigned char edge[FC_WN_TB];                                                              \
    fc_wn_tiles_##SUF(g, t0, xoff, off, edge);                                                 \
    for (int64_t c = 0; c < C; ++c)                                                            \
        for (int64_t t = 0; t < TB; ++t) {                                                     \
            T d[4][4], b[4][4];                                                                \
            for (int r = 0; r < 4; ++r)                                                        \
                for (int q = 0; q < 4; ++q)                                                    \
                    d[r][q] = xoff[t] < 0 ? 0 : xp[(4 * c + (r & 1) * 2 + (q & 1)) * g->ld     \
                                                   + xoff[t] + (r >> 1) * Wq + (q >> 1)];      \
            for (int q = 0; q < 4; ++q) {                                                      \
                b[0][q] = d[0][q] - d[2][q];                                                   \
                b[1][q] = d[1][q] + d[2][q];                                                   \
                b[2][q] = d[2][q] - d[1][q];                                                   \
                b[3][q] = d[1][q] - d[3][q];                                                   \
            }                                                                                  \
            for (int r = 0; r < 4; ++r) {                                                      \
                V[((4 * r + 0) * C + c) * TB + t] = b[r][0] - b[r][2];                         \
                V[((4 * r + 1) * C + c) * TB + t] = b[r][1] + b[r][2];                         \
                V[((4 * r + 2) * C + c) * TB + t] = b[r][2] - b[r][1];                         \
                V[((4 * r + 3) * C + c) * TB + t] = b[r][1] - b[r][3];                         \
            }                                                                                  \
        }                                                                                      \
    for (int64_t k0 = 0; k0 < K; k0 += FC_WN_KC) {                                             \
        int64_t nk = K - k0 < FC_WN_KC ? K - k0 : FC_WN_KC;                                    \
        for (int xi = 0; xi < 16; ++xi)                                                        \
            for (int64_t kk = 0; kk < nk; ++kk) {                                              \
                T *m = M + (xi * FC_WN_KC + kk) * TB;                                          \
                const T *u = U + (xi * K + k0 + kk) * C;                                       \
                for (int64_t t = 0; t < TB; ++t)                                               \
                    m[t] = 0;                                                                  \
                for (int64_t c = 0; c < C; ++c) {                                              \
                    const T *vv = V + (xi * C + c) * TB;                                       \
                    for (int64_t t = 0; t < TB; ++t)                                           \
                        m[t] += u[c] * vv[t];                                                  \
                }                                                                              \
            }                                                                                  \
        for (int64_t kk = 0; kk < nk; ++kk)                                                    \
            for (int v = 0; v < TB / 16; ++v) {                                                \
                T o[4][16];                                                                    \
                T bk = bias ? bias[k0 + kk] : 0;                                               \
                for (int l = 0; l < 16; ++l) {                                                 \
                    T mm[16], s[2][4];                                                         \
                    for (int xi = 0; xi < 16; ++xi)                                            \
                        mm[xi] = M[(xi * FC_WN_KC + kk) * TB + 16 * v + l];                    \
                    for (int q = 0; q < 4; ++q) {                                              \
                        s[0][q] = mm[q] + mm[4 + q] + mm[8 + q];                               \
                        s[1][q] = mm[4 + q] - mm[8 + q] - mm[12 + q];                          \
                    }                                                                          \
                    for (int a = 0; a < 2; ++a) {                                              \
                        o[2 * a][l] = s[a][0] + s[a][1] + s[a][2] + bk;                        \
                        o[2 * a + 1][l] = s[a][1] - s[a][2] - s[a][3] + bk;                    \
                    }                                                                          \
                }                                                                              \
                fc_wn_store_##SUF(g, off + 16 * v, edge + 16 * v, k0 + kk,                     \
                                  (const T(*)[16])o, y);                                       \
            }                                                                                  \
    }                                                                                          \
}

FC_WN_DEFINE(float, f32)
FC_WN_DEFINE(double, f64)

#if FC_CPU_X86
/* o[r][0 .. 16*nv) = (or += with accumulate) sum over k < K of a[r*lda + k] * b[k*ldb + 0 ..
 * 16*nv) for rows r < mr: an outer-product register tile of MR rows x nv vectors (MR*nv <=
 * 24 accumulators), rows past mr repeating the last one and not stored. Each sum runs over
 * k in order. The forward's M[xi] = U[xi] @ V[xi] (8 x 48) and the weight gradient's
 * dU[xi] += Yt[xi] @ Vt[xi] (6 x 64, winograd_wgrad.h). */
static inline __attribute__((always_inline, target("avx512f"))) void
fc_wn_outer(const float *a, int64_t lda, int mr, const float *b, int64_t ldb, int64_t K,
            float *o, int64_t ldo, const int MR, const int nv, const int accumulate)
{
    __m512 acc[8][4];
    const float *ar[8];
    for (int r = 0; r < MR; ++r) {
        ar[r] = a + (r < mr ? r : mr - 1) * lda;
        for (int j = 0; j < nv; ++j)
            acc[r][j] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < K; ++k) {
        __m512 bv[4];
        for (int j = 0; j < nv; ++j)
            bv[j] = _mm512_loadu_ps(b + k * ldb + 16 * j);
        for (int r = 0; r < MR; ++r) {
            __m512 x = _mm512_set1_ps(ar[r][k]);
            for (int j = 0; j < nv; ++j)
                acc[r][j] = _mm512_fmadd_ps(x, bv[j], acc[r][j]);
        }
    }
    for (int r = 0; r < MR; ++r) {
        if (r >= mr)
            break;
        for (int j = 0; j < nv; ++j) {
            float *d = o + r * ldo + 16 * j;
            _mm512_storeu_ps(d, accumulate ? _mm512_add_ps(_mm512_loadu_ps(d), acc[r][j])
                                           : acc[r][j]);
        }
    }
}

/* A run of lanes of one vector of 16 tiles whose tiles share a tile row: they load at
 * p + x + lane (p: a patch element's plane) and store their interleaved output rows (lane l
 * at 2l, 2l + 1) at y + base with these masks. */
typedef struct { int64_t x, base; __mmask16 lanes; __mmask32 row0, row1; } fc_wn_run;

/* The runs of the vector of tiles t0 .. t0 + 15; returns how many. */
static int fc_wn_runs(const fc_wn_geo *g, int64_t t0, fc_wn_run *run)
{
    const int64_t per = g->th * g->tw;
    int nr = 0;
    int64_t key = -1, n = t0 / per, ty = (t0 - n * per) / g->tw, tx = t0 - n * per - ty * g->tw;
    for (int l = 0; l < 16 && t0 + l < g->ntiles; ++l, ++tx) {
        if (tx == g->tw) {             /* the next tile row (or image) */
            tx = 0;
            if (++ty == g->th) {
                ty = 0;
                ++n;
            }
        }
        if (n * g->th + ty != key) {
            key = n * g->th + ty;
            run[nr].x = n * g->ln + ty * g->Wq + tx - l;
            run[nr].base = n * g->K * g->OH * g->OW + 2 * ty * g->OW + 2 * tx - 2 * l;
            run[nr].lanes = 0;
            run[nr].row0 = run[nr].row1 = 0;
            ++nr;
        }
        __mmask32 bits = (__mmask32)1 << (2 * l);
        if (2 * tx + 1 < g->OW)
            bits |= (__mmask32)2 << (2 * l);
        run[nr - 1].lanes |= (__mmask16)(1u << l);
        run[nr - 1].row0 |= bits;
        if (2 * ty + 1 < g->OH)
            run[nr - 1].row1 |= bits;
    }
    return nr;
}

/* 16 tiles' values of one patch element: a masked load per run (lanes of no run are 0). */
static inline __attribute__((always_inline, target("avx512f"))) __m512
fc_wn_load(const float *p, const fc_wn_run *run, int nr)
{
    __m512 v = _mm512_maskz_loadu_ps(run[0].lanes, p + run[0].x);
    for (int i = 1; i < nr; ++i)
        v = _mm512_mask_loadu_ps(v, run[i].lanes, p + run[i].x);
    return v;
}

/* Channels [0, C) of the chunk's images into their phase planes (fc_wn_pack_f32's layout),
 * by masked loads that fall outside the source row as zeros and an even/odd split. */
static __attribute__((target("avx512f"))) int
fc_wn_pack_all_f32(const float *x, const fc_wn_geo *g, float *xp)
{
    const int64_t Hq = g->Hq, Wq = g->Wq, HW = g->H * g->W, plane = Hq * Wq, W = g->W;
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    __m512 bad = _mm512_setzero_ps(), zero = _mm512_setzero_ps();
    for (int64_t n = 0; n < g->N; ++n) {       /* x and xp in order: both stream */
        for (int64_t c = 0; c < g->C; ++c) {
            const float *src = x + (n * g->C + c) * HW;
            float *xc = xp + n * g->ln + 4 * c * plane;
            /* 16 phase columns q .. q + 15 of every row, the masks worked out once for them
             * (per row they cost more than the copy on 32-wide images) */
            for (int64_t q = 0; q < Wq; q += 16) {
                /* padded columns 2q .. 2q + 31 = source columns 2q - pw .. */
                int64_t j0 = 2 * q - g->pw;
                __mmask16 m[2];
                for (int half = 0; half < 2; ++half) {
                    int64_t a = j0 + 16 * half, lo = a < 0 ? -a : 0, hi = W - a;
                    hi = hi > 16 ? 16 : hi;
                    m[half] = lo >= hi ? 0 : (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
                }
                const __mmask16 st = Wq - q >= 16 ? 0xFFFF : (__mmask16)((1u << (Wq - q)) - 1);
                for (int64_t pr = 0; pr < 2 * Hq; ++pr) {
                    float *e = xc + (pr & 1) * 2 * plane + (pr >> 1) * Wq + q;
                    int64_t h = pr - g->ph;
                    if (h < 0 || h >= g->H) {
                        _mm512_mask_storeu_ps(e, st, zero);
                        _mm512_mask_storeu_ps(e + g->ld, st, zero);
                        continue;
                    }
                    const float *row = src + h * W + j0;
                    __m512 v0 = _mm512_maskz_loadu_ps(m[0], row);
                    __m512 v1 = _mm512_maskz_loadu_ps(m[1], row + 16);
                    bad = _mm512_add_ps(bad, _mm512_mul_ps(zero, _mm512_add_ps(v0, v1)));
                    _mm512_mask_storeu_ps(e, st, _mm512_permutex2var_ps(v0, ev, v1));
                    _mm512_mask_storeu_ps(e + g->ld, st, _mm512_permutex2var_ps(v0, od, v1));
                }
            }
        }
    }
    return _mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q) != 0;
}

/* B^T d B of one channel's 16 tiles (the runs of a vector; p: the channel's first phase
 * plane): transformed position xi stored at o + xi*xs. */
static inline __attribute__((always_inline, target("avx512f"))) void
fc_wn_input(const float *p, int64_t ld, int64_t Wq, const fc_wn_run *ru, int nr, float *o,
            int64_t xs)
{
    __m512 b[4][4];
    for (int q = 0; q < 4; ++q) {     /* B^T d, one column of the patch at a time */
        const float *pq = p + (q & 1) * ld + (q >> 1);
        __m512 d0 = fc_wn_load(pq, ru, nr), d1 = fc_wn_load(pq + 2 * ld, ru, nr);
        __m512 d2 = fc_wn_load(pq + Wq, ru, nr), d3 = fc_wn_load(pq + 2 * ld + Wq, ru, nr);
        b[0][q] = _mm512_sub_ps(d0, d2);
        b[1][q] = _mm512_add_ps(d1, d2);
        b[2][q] = _mm512_sub_ps(d2, d1);
        b[3][q] = _mm512_sub_ps(d1, d3);
    }
    for (int r = 0; r < 4; ++r) {
        _mm512_storeu_ps(o + (4 * r + 0) * xs, _mm512_sub_ps(b[r][0], b[r][2]));
        _mm512_storeu_ps(o + (4 * r + 1) * xs, _mm512_add_ps(b[r][1], b[r][2]));
        _mm512_storeu_ps(o + (4 * r + 2) * xs, _mm512_sub_ps(b[r][2], b[r][1]));
        _mm512_storeu_ps(o + (4 * r + 3) * xs, _mm512_sub_ps(b[r][1], b[r][3]));
    }
}

/* The float32 block of nv*16 tiles from t0 with AVX-512: fc_wn_block_generic_f32's formulas
 * (its sums also run over c in order, but without fused multiply-adds). */
static __attribute__((target("avx512f"))) void
fc_wn_block_f32(const fc_wn_geo *g, const float *xp, const float *U, const float *bias,
                float *y, int64_t t0, int nv, float *V, float *M)
{
    const int64_t C = g->C, K = g->K, Wq = g->Wq, TB = FC_WN_TB, ld = g->ld;
    const int64_t P = g->OH * g->OW, OW = g->OW;
    fc_wn_run runs[3][16];
    int nruns[3];
    for (int v = 0; v < nv; ++v)
        nruns[v] = fc_wn_runs(g, t0 + 16 * v, runs[v]);
    for (int64_t c = 0; c < C; ++c) {
        const float *p = xp + 4 * c * ld;
        for (int v = 0; v < nv; ++v) {
            fc_wn_input(p, ld, Wq, runs[v], nruns[v], V + c * TB + 16 * v, C * TB);
        }
    }
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    for (int64_t k0 = 0; k0 < K; k0 += FC_WN_KC) {
        int64_t nk = K - k0 < FC_WN_KC ? K - k0 : FC_WN_KC;
        for (int xi = 0; xi < 16; ++xi)
            for (int64_t m0 = 0; m0 < nk; m0 += 8) {
                const float *u0 = U + (xi * K + k0 + m0) * C;
                float *m = M + (xi * FC_WN_KC + m0) * TB;
                int mr = nk - m0 < 8 ? (int)(nk - m0) : 8;
                const float *vx = V + xi * C * TB;
                if (nv == 3)
                    fc_wn_outer(u0, C, mr, vx, TB, C, m, TB, 8, 3, 0);
                else if (nv == 2)
                    fc_wn_outer(u0, C, mr, vx, TB, C, m, TB, 8, 2, 0);
                else
                    fc_wn_outer(u0, C, mr, vx, TB, C, m, TB, 8, 1, 0);
            }
        for (int64_t kk = 0; kk < nk; ++kk) {
            __m512 bk = _mm512_set1_ps(bias ? bias[k0 + kk] : 0.0f);
            float *yk = y + (k0 + kk) * P;
            for (int v = 0; v < nv; ++v) {
                __m512 mm[16], s[2][4], out[2][2];
                for (int xi = 0; xi < 16; ++xi)
                    mm[xi] = _mm512_loadu_ps(M + (xi * FC_WN_KC + kk) * TB + 16 * v);
                for (int q = 0; q < 4; ++q) {
                    s[0][q] = _mm512_add_ps(_mm512_add_ps(mm[q], mm[4 + q]), mm[8 + q]);
                    s[1][q] = _mm512_sub_ps(_mm512_sub_ps(mm[4 + q], mm[8 + q]), mm[12 + q]);
                }
                for (int a = 0; a < 2; ++a) {
                    __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]),
                                                           s[a][2]), bk);
                    __m512 f = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]),
                                                           s[a][3]), bk);
                    out[a][0] = _mm512_permutex2var_ps(e, lo, f);   /* lanes 0..7 as pairs */
                    out[a][1] = _mm512_permutex2var_ps(e, hi, f);   /* lanes 8..15 */
                }
                for (int r = 0; r < nruns[v]; ++r) {
                    const fc_wn_run *ru = &runs[v][r];
                    float *d = yk + ru->base;
                    _mm512_mask_storeu_ps(d, (__mmask16)ru->row0, out[0][0]);
                    _mm512_mask_storeu_ps(d + 16, (__mmask16)(ru->row0 >> 16), out[0][1]);
                    _mm512_mask_storeu_ps(d + OW, (__mmask16)ru->row1, out[1][0]);
                    _mm512_mask_storeu_ps(d + OW + 16, (__mmask16)(ru->row1 >> 16), out[1][1]);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * AVX2 + FMA: fc_wn_block_f32 with each vector of 16 tiles held as two halves of 8 lanes.
 * The same operations in the same order on every lane (the GEMM's sums over c by fused
 * multiply-adds from zero, the transforms' adds as written), so a CPU with AVX-512 and one
 * with AVX2 get the same bits (test_avx2_and_avx512_paths_give_the_same_bits compares them).
 * ------------------------------------------------------------------------------------------ */
#define FC_WN_AVX2 __attribute__((target("avx2,fma")))
#define FC_WN_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

/* A run (fc_wn_run) with its load mask as 8-lane vector masks, lanes[h] for tiles
 * 8h .. 8h + 7, and its store masks in bytes, row0[j] / row1[j] for output floats
 * 8j .. 8j + 7 of the 32 it stores (AMD's Zen cores take a masked store as microcode, some
 * 12 times a plain store's cost, so stores are plain where the byte is full, scalar where
 * it is partial). */
typedef struct { int64_t x, base; __m256i lanes[2]; unsigned char row0[4], row1[4]; } fc_wn_run8;

FC_WN_AVX2_INLINE __m256i fc_wn_mask8(unsigned bits)
{
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)(bits & 0xFF)), bit), bit);
}

static FC_WN_AVX2 int fc_wn_runs8(const fc_wn_geo *g, int64_t t0, fc_wn_run8 *r8)
{
    fc_wn_run run[16];
    int nr = fc_wn_runs(g, t0, run);
    for (int i = 0; i < nr; ++i) {
        r8[i].x = run[i].x;
        r8[i].base = run[i].base;
        for (int h = 0; h < 2; ++h)
            r8[i].lanes[h] = fc_wn_mask8((unsigned)run[i].lanes >> (8 * h));
        for (int j = 0; j < 4; ++j) {
            r8[i].row0[j] = (unsigned char)((unsigned)run[i].row0 >> (8 * j));
            r8[i].row1[j] = (unsigned char)((unsigned)run[i].row1 >> (8 * j));
        }
    }
    return nr;
}

/* Half h of fc_wn_load: a masked load per run (masked-off lanes read nothing and are 0). */
FC_WN_AVX2_INLINE __m256 fc_wn_load8(const float *p, const fc_wn_run8 *run, int nr, int h)
{
    __m256 v = _mm256_maskload_ps(p + run[0].x + 8 * h, run[0].lanes[h]);
    for (int i = 1; i < nr; ++i)
        v = _mm256_or_ps(v, _mm256_maskload_ps(p + run[i].x + 8 * h, run[i].lanes[h]));
    return v;
}

/* d[j] = v[j] for the lanes j set in bits */
FC_WN_AVX2_INLINE void fc_wn_store8(float *d, unsigned bits, __m256 v)
{
    if (bits == 0xFF) {
        _mm256_storeu_ps(d, v);
    } else if (bits) {
        float t[8];
        _mm256_storeu_ps(t, v);
        for (int j = 0; j < 8; ++j)
            if (bits >> j & 1)
                d[j] = t[j];
    }
}

/* fc_wn_input, half by half */
FC_WN_AVX2_INLINE void fc_wn_input8(const float *p, int64_t ld, int64_t Wq,
                                    const fc_wn_run8 *ru, int nr, float *o, int64_t xs)
{
    for (int h = 0; h < 2; ++h) {
        __m256 b[4][4];
        for (int q = 0; q < 4; ++q) {
            const float *pq = p + (q & 1) * ld + (q >> 1);
            __m256 d0 = fc_wn_load8(pq, ru, nr, h), d1 = fc_wn_load8(pq + 2 * ld, ru, nr, h);
            __m256 d2 = fc_wn_load8(pq + Wq, ru, nr, h);
            __m256 d3 = fc_wn_load8(pq + 2 * ld + Wq, ru, nr, h);
            b[0][q] = _mm256_sub_ps(d0, d2);
            b[1][q] = _mm256_add_ps(d1, d2);
            b[2][q] = _mm256_sub_ps(d2, d1);
            b[3][q] = _mm256_sub_ps(d1, d3);
        }
        for (int r = 0; r < 4; ++r) {
            float *or_ = o + 8 * h;
            _mm256_storeu_ps(or_ + (4 * r + 0) * xs, _mm256_sub_ps(b[r][0], b[r][2]));
            _mm256_storeu_ps(or_ + (4 * r + 1) * xs, _mm256_add_ps(b[r][1], b[r][2]));
            _mm256_storeu_ps(or_ + (4 * r + 2) * xs, _mm256_sub_ps(b[r][2], b[r][1]));
            _mm256_storeu_ps(or_ + (4 * r + 3) * xs, _mm256_sub_ps(b[r][1], b[r][3]));
        }
    }
}

/* fc_wn_outer for the forward with 8-lane vectors: o[r][0 .. 8*NV) = sum over k < K of
 * a[r*lda + k] * b[k*ldb + 0 .. 8*NV), rows r < mr of 4 (rows past mr repeat the last and
 * are not stored). 4 x NV accumulators in named registers (GCC keeps an array of them on
 * the stack here). */
#define FC_WN_OUTER8(NV)                                                                       \
FC_WN_AVX2_INLINE void fc_wn_outer8_##NV(const float *a, int64_t lda, int mr, const float *b, \
                                         int64_t ldb, int64_t K, float *o, int64_t ldo)       \
{                                                                                              \
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * lda, *a2 = a + (mr > 2 ? 2 : mr - 1) * lda; \
    const float *a3 = a + (mr > 3 ? 3 : mr - 1) * lda;                                         \
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;   \
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;                   \
    for (int64_t k = 0; k < K; ++k) {                                                          \
        const float *bk = b + k * ldb;                                                         \
        __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8), b2 = b1;                \
        if (NV == 3)                                                                           \
            b2 = _mm256_loadu_ps(bk + 16);                                                     \
        __m256 x = _mm256_broadcast_ss(a0 + k);                                                \
        c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);                  \
        if (NV == 3) c02 = _mm256_fmadd_ps(x, b2, c02);                                        \
        x = _mm256_broadcast_ss(a1 + k);                                                       \
        c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);                  \
        if (NV == 3) c12 = _mm256_fmadd_ps(x, b2, c12);                                        \
        x = _mm256_broadcast_ss(a2 + k);                                                       \
        c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);                  \
        if (NV == 3) c22 = _mm256_fmadd_ps(x, b2, c22);                                        \
        x = _mm256_broadcast_ss(a3 + k);                                                       \
        c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);                  \
        if (NV == 3) c32 = _mm256_fmadd_ps(x, b2, c32);                                        \
    }                                                                                          \
    _mm256_storeu_ps(o, c00); _mm256_storeu_ps(o + 8, c01);                                    \
    if (NV == 3) _mm256_storeu_ps(o + 16, c02);                                                \
    if (mr > 1) {                                                                              \
        _mm256_storeu_ps(o + ldo, c10); _mm256_storeu_ps(o + ldo + 8, c11);                    \
        if (NV == 3) _mm256_storeu_ps(o + ldo + 16, c12);                                      \
    }                                                                                          \
    if (mr > 2) {                                                                              \
        _mm256_storeu_ps(o + 2 * ldo, c20); _mm256_storeu_ps(o + 2 * ldo + 8, c21);            \
        if (NV == 3) _mm256_storeu_ps(o + 2 * ldo + 16, c22);                                  \
    }                                                                                          \
    if (mr > 3) {                                                                              \
        _mm256_storeu_ps(o + 3 * ldo, c30); _mm256_storeu_ps(o + 3 * ldo + 8, c31);            \
        if (NV == 3) _mm256_storeu_ps(o + 3 * ldo + 16, c32);                                  \
    }                                                                                          \
}
FC_WN_OUTER8(2)
FC_WN_OUTER8(3)

/* fc_wn_pack_all_f32 with AVX2: 8 phase columns q .. q + 7 (16 source columns) at a time,
 * by masked loads (source columns outside the row read nothing and are 0) and an even/odd
 * split; the last block of a row is stored lane by lane (see fc_wn_run8 on masked stores). */
static FC_WN_AVX2 int fc_wn_pack_all_f32_avx2(const float *x, const fc_wn_geo *g, float *xp)
{
    const int64_t Hq = g->Hq, Wq = g->Wq, HW = g->H * g->W, plane = Hq * Wq, W = g->W;
    __m256 bad = _mm256_setzero_ps(), zero = _mm256_setzero_ps();
    for (int64_t n = 0; n < g->N; ++n) {
        for (int64_t c = 0; c < g->C; ++c) {
            const float *src = x + (n * g->C + c) * HW;
            float *xc = xp + n * g->ln + 4 * c * plane;
            for (int64_t q = 0; q < Wq; q += 8) {
                /* padded columns 2q .. 2q + 15 = source columns 2q - pw .. */
                int64_t j0 = 2 * q - g->pw;
                __m256i m[2];
                int any[2];
                for (int half = 0; half < 2; ++half) {
                    int64_t a = j0 + 8 * half, lo = a < 0 ? -a : 0, hi = W - a;
                    hi = hi > 8 ? 8 : hi;
                    unsigned bits = lo >= hi ? 0 : ((1u << hi) - 1) & ~((1u << lo) - 1);
                    m[half] = fc_wn_mask8(bits);
                    any[half] = bits != 0;
                }
                const unsigned st = Wq - q >= 8 ? 0xFF : (1u << (Wq - q)) - 1;
                for (int64_t pr = 0; pr < 2 * Hq; ++pr) {
                    float *e = xc + (pr & 1) * 2 * plane + (pr >> 1) * Wq + q;
                    int64_t h = pr - g->ph;
                    if (h < 0 || h >= g->H) {
                        fc_wn_store8(e, st, zero);
                        fc_wn_store8(e + g->ld, st, zero);
                        continue;
                    }
                    const float *row = src + h * W + j0;
                    __m256 v0 = any[0] ? _mm256_maskload_ps(row, m[0]) : zero;
                    __m256 v1 = any[1] ? _mm256_maskload_ps(row + 8, m[1]) : zero;
                    bad = _mm256_add_ps(bad, _mm256_mul_ps(zero, _mm256_add_ps(v0, v1)));
                    __m256 ev = _mm256_shuffle_ps(v0, v1, _MM_SHUFFLE(2, 0, 2, 0));
                    __m256 od = _mm256_shuffle_ps(v0, v1, _MM_SHUFFLE(3, 1, 3, 1));
                    ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev),
                                                                _MM_SHUFFLE(3, 1, 2, 0)));
                    od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od),
                                                                _MM_SHUFFLE(3, 1, 2, 0)));
                    fc_wn_store8(e, st, ev);
                    fc_wn_store8(e + g->ld, st, od);
                }
            }
        }
    }
    return _mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q)) != 0;
}

/* The float32 block of nv*16 tiles from t0 with AVX2 (fc_wn_block_f32's arguments). */
static FC_WN_AVX2 void
fc_wn_block_f32_avx2(const fc_wn_geo *g, const float *xp, const float *U, const float *bias,
                     float *y, int64_t t0, int nv, float *V, float *M)
{
    const int64_t C = g->C, K = g->K, Wq = g->Wq, TB = FC_WN_TB, ld = g->ld;
    const int64_t P = g->OH * g->OW, OW = g->OW;
    fc_wn_run8 runs[3][16];
    int nruns[3];
    for (int v = 0; v < nv; ++v)
        nruns[v] = fc_wn_runs8(g, t0 + 16 * v, runs[v]);
    for (int64_t c = 0; c < C; ++c) {
        const float *p = xp + 4 * c * ld;
        for (int v = 0; v < nv; ++v)
            fc_wn_input8(p, ld, Wq, runs[v], nruns[v], V + c * TB + 16 * v, C * TB);
    }
    for (int64_t k0 = 0; k0 < K; k0 += FC_WN_KC) {
        int64_t nk = K - k0 < FC_WN_KC ? K - k0 : FC_WN_KC;
        for (int xi = 0; xi < 16; ++xi)
            for (int64_t m0 = 0; m0 < nk; m0 += 4) {
                const float *u0 = U + (xi * K + k0 + m0) * C;
                float *m = M + (xi * FC_WN_KC + m0) * TB;
                int mr = nk - m0 < 4 ? (int)(nk - m0) : 4;
                const float *vx = V + xi * C * TB;
                /* 2*nv vectors of 8 tiles, in groups of at most 3 */
                if (nv == 3) {
                    fc_wn_outer8_3(u0, C, mr, vx, TB, C, m, TB);
                    fc_wn_outer8_3(u0, C, mr, vx + 24, TB, C, m + 24, TB);
                } else if (nv == 2) {
                    fc_wn_outer8_2(u0, C, mr, vx, TB, C, m, TB);
                    fc_wn_outer8_2(u0, C, mr, vx + 16, TB, C, m + 16, TB);
                } else {
                    fc_wn_outer8_2(u0, C, mr, vx, TB, C, m, TB);
                }
            }
        for (int64_t kk = 0; kk < nk; ++kk) {
            __m256 bk = _mm256_set1_ps(bias ? bias[k0 + kk] : 0.0f);
            float *yk = y + (k0 + kk) * P;
            for (int v = 0; v < nv; ++v)
                for (int h = 0; h < 2; ++h) {
                    __m256 mm[16], s[2][4], out[2][2];
                    for (int xi = 0; xi < 16; ++xi)
                        mm[xi] = _mm256_loadu_ps(M + (xi * FC_WN_KC + kk) * TB + 16 * v + 8 * h);
                    for (int q = 0; q < 4; ++q) {
                        s[0][q] = _mm256_add_ps(_mm256_add_ps(mm[q], mm[4 + q]), mm[8 + q]);
                        s[1][q] = _mm256_sub_ps(_mm256_sub_ps(mm[4 + q], mm[8 + q]), mm[12 + q]);
                    }
                    for (int a = 0; a < 2; ++a) {
                        __m256 e = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[a][0], s[a][1]),
                                                               s[a][2]), bk);
                        __m256 f = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[a][1], s[a][2]),
                                                               s[a][3]), bk);
                        __m256 lo = _mm256_unpacklo_ps(e, f), hi = _mm256_unpackhi_ps(e, f);
                        out[a][0] = _mm256_permute2f128_ps(lo, hi, 0x20);   /* tiles 0..3 */
                        out[a][1] = _mm256_permute2f128_ps(lo, hi, 0x31);   /* tiles 4..7 */
                    }
                    for (int r = 0; r < nruns[v]; ++r) {
                        const fc_wn_run8 *ru = &runs[v][r];
                        float *d = yk + ru->base + 16 * h;
                        fc_wn_store8(d, ru->row0[2 * h], out[0][0]);
                        fc_wn_store8(d + 8, ru->row0[2 * h + 1], out[0][1]);
                        fc_wn_store8(d + OW, ru->row1[2 * h], out[1][0]);
                        fc_wn_store8(d + OW + 8, ru->row1[2 * h + 1], out[1][1]);
                    }
                }
        }
    }
}
#else
static void fc_wn_block_f32(const fc_wn_geo *g, const float *xp, const float *U,
                            const float *bias, float *y, int64_t t0, int nv, float *V, float *M)
{
    fc_wn_block_generic_f32(g, xp, U, bias, y, t0, V, M);
}
static void fc_wn_block_f32_avx2(const fc_wn_geo *g, const float *xp, const float *U,
                                 const float *bias, float *y, int64_t t0, int nv, float *V,
                                 float *M)
{
    fc_wn_block_generic_f32(g, xp, U, bias, y, t0, V, M);
}
static int fc_wn_pack_all_f32(const float *x, const fc_wn_geo *g, float *xp) { return 0; }
static int fc_wn_pack_all_f32_avx2(const float *x, const fc_wn_geo *g, float *xp) { return 0; }
#endif

#endif
