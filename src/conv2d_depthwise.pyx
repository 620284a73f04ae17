"""Depthwise 2-D convolution: groups == C_in, channel multiplier m = C_out // C_in >= 1.

Output channel ``co`` reads only input channel ``co // m`` through its own kH x kW filter, so
each output plane is a small stencil over one input plane: no im2col, no GEMM (a GEMM with
one row per group would spend its time packing).

Every pass first copies the plane it reads into a small zero-padded per-thread buffer
(``dw_pack``), laid out so that each filter tap is a contiguous run for every stride, padding
and dilation: strided columns are split into phases (columns q, q + s, q + 2s, ...). The
inner loops (src/dw_kernels.h) are then one shape for all geometries, with the weights and
accumulators in vector registers and masked loads and stores at the row ends; they are
compiled for AVX-512F, AVX2+FMA and portable C, chosen once at run time
(src/cpu_dispatch.h; FASTCONV_SIMD_TARGET=avx2|generic forces a lower path). The input
gradient is computed per stride phase of the input (pixels with the same ih % sh, iw % sw
are reached by the same taps), each phase a plain stencil over padded grad_out, and the
phases are interleaved back.

Level of parallelism: one OpenMP ``prange`` per pass over input channels or planes, whose
writes are disjoint (forward and backward_input: (n, c_in) planes, each writing its own m
output planes or its own grad_in plane; backward_weight and backward: blocks of input
channels, each owning their m filters and, in backward, their grad_in planes).
Nothing inside a thread is parallel, and every element is summed in an order fixed by the
geometry and the code path, never by the thread count, so results are bit-identical for any
``n_threads``.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange

from _conv_index cimport _ceil_div, _floor_div
from scratch cimport fc_scratch


cdef extern from "dw_kernels.h" nogil:
    ctypedef Py_ssize_t dw_idx "ptrdiff_t"
    enum: DW_ACC_LANES
    enum: DW_NEXT
    ctypedef struct dw_next:
        const void *p[DW_NEXT]
        dw_idx row_bytes[DW_NEXT]
    const char *fc_cpu_target_name() noexcept
    void dw_pack_f(float *buf, dw_idx Hb, dw_idx nq, dw_idx Jw, const float *src, dw_idx H,
                   dw_idx W, dw_idx r0, dw_idx c0, dw_idx s, const dw_next *nx) noexcept
    void dw_pack_d(double *buf, dw_idx Hb, dw_idx nq, dw_idx Jw, const double *src, dw_idx H,
                   dw_idx W, dw_idx r0, dw_idx c0, dw_idx s, const dw_next *nx) noexcept
    void dw_unphase_f(float *gx, dw_idx H, dw_idx W, const float *P, dw_idx A, dw_idx B,
                      dw_idx sh, dw_idx sw) noexcept
    void dw_unphase_d(double *gx, dw_idx H, dw_idx W, const double *P, dw_idx A, dw_idx B,
                      dw_idx sh, dw_idx sw) noexcept
    void dw_taps_f(float *out, dw_idx ldo, dw_idx R, dw_idx C, const float *src, dw_idx lds,
                   dw_idx nt, const float *w, const dw_idx *widx, const dw_idx *off, float b,
                   int accumulate) noexcept
    void dw_taps_d(double *out, dw_idx ldo, dw_idx R, dw_idx C, const double *src, dw_idx lds,
                   dw_idx nt, const double *w, const dw_idx *widx, const dw_idx *off,
                   double b, int accumulate) noexcept
    void dw_taps2_f(float *out, dw_idx ldo, dw_idx R, dw_idx C, const float *src, dw_idx lds,
                    const float *w, dw_idx nt0, const dw_idx *widx0, const dw_idx *off0,
                    dw_idx nt1, const dw_idx *widx1, const dw_idx *off1, float b) noexcept
    void dw_taps2_d(double *out, dw_idx ldo, dw_idx R, dw_idx C, const double *src,
                    dw_idx lds, const double *w, dw_idx nt0, const dw_idx *widx0,
                    const dw_idx *off0, dw_idx nt1, const dw_idx *widx1, const dw_idx *off1,
                    double b) noexcept
    void dw_dots_f(double *acc, const float *gy, dw_idx R, dw_idx C, const float *src,
                   dw_idx lds, dw_idx nt, const dw_idx *off) noexcept
    void dw_dots_d(double *acc, const double *gy, dw_idx R, dw_idx C, const double *src,
                   dw_idx lds, dw_idx nt, const dw_idx *off) noexcept


def simd_target():
    """The code path the depthwise kernels run on this CPU: "avx512f", "avx2" or "generic"."""
    return fc_cpu_target_name().decode()


ctypedef struct Geom:
    Py_ssize_t N, C_in, H, W, C_out, OH, OW, kH, kW
    Py_ssize_t sh, sw, ph, pw, dh, dw
    Py_ssize_t m                 # channel multiplier: output channels per input channel
    # packed input (forward, backward_weight): Hp rows of sw phases of Jw columns each
    Py_ssize_t Hp, Jw, RS


# Typed wrappers: one call site per kernel in the fused bodies below.

cdef inline void _pack(floating *buf, Py_ssize_t Hb, Py_ssize_t nq, Py_ssize_t Jw,
                       const floating *src, Py_ssize_t H, Py_ssize_t W, Py_ssize_t r0,
                       Py_ssize_t c0, Py_ssize_t s, const dw_next *nx) noexcept nogil:
    if floating is float:
        dw_pack_f(buf, Hb, nq, Jw, src, H, W, r0, c0, s, nx)
    else:
        dw_pack_d(buf, Hb, nq, Jw, src, H, W, r0, c0, s, nx)


# Planes below this many bytes are not prefetched (dw_next): the hardware prefetcher keeps up
# with them, and the prefetches cost more than they save (Zen 3, 16x16 float32 planes:
# 1.01-1.26x the time without; 28x28 and larger: 0.62-0.92x).
DEF PREFETCH_MIN_BYTES = 2048


cdef inline void _next(dw_next *nx, const void *a, Py_ssize_t na, const void *b,
                       Py_ssize_t nb) noexcept nogil:
    """What the caller reads after this plane, for dw_pack to prefetch a slice of per row of
    the plane it packs (src/dw_kernels.h, dw_next): bytes per packed row, 0: none (the
    pointer is then not used)."""
    nx.p[0], nx.row_bytes[0] = a, na
    nx.p[1], nx.row_bytes[1] = b, nb


cdef inline void _taps(floating *out, Py_ssize_t ldo, Py_ssize_t R, Py_ssize_t C,
                       const floating *src, Py_ssize_t lds, Py_ssize_t nt, const floating *w,
                       const Py_ssize_t *widx, const Py_ssize_t *off, floating b,
                       bint accumulate) noexcept nogil:
    if floating is float:
        dw_taps_f(out, ldo, R, C, src, lds, nt, w, widx, off, b, accumulate)
    else:
        dw_taps_d(out, ldo, R, C, src, lds, nt, w, widx, off, b, accumulate)


cdef inline void _taps2(floating *out, Py_ssize_t ldo, Py_ssize_t R, Py_ssize_t C,
                        const floating *src, Py_ssize_t lds, const floating *w,
                        const Py_ssize_t *nt, const Py_ssize_t *widx, const Py_ssize_t *off,
                        Py_ssize_t T) noexcept nogil:
    """Two column phases (tables nt[0..1], rows 0 and 1 of widx and off, T apart)."""
    if floating is float:
        dw_taps2_f(out, ldo, R, C, src, lds, w, nt[0], widx, off, nt[1], widx + T, off + T, 0)
    else:
        dw_taps2_d(out, ldo, R, C, src, lds, w, nt[0], widx, off, nt[1], widx + T, off + T, 0)


cdef inline void _dots(double *acc, const floating *gy, Py_ssize_t R, Py_ssize_t C,
                       const floating *src, Py_ssize_t lds, Py_ssize_t nt,
                       const Py_ssize_t *off) noexcept nogil:
    if floating is float:
        dw_dots_f(acc, gy, R, C, src, lds, nt, off)
    else:
        dw_dots_d(acc, gy, R, C, src, lds, nt, off)


cdef inline void _unphase(floating *gx, Py_ssize_t H, Py_ssize_t W, const floating *P,
                          Py_ssize_t A, Py_ssize_t B, Py_ssize_t sh,
                          Py_ssize_t sw) noexcept nogil:
    if floating is float:
        dw_unphase_f(gx, H, W, P, A, B, sh, sw)
    else:
        dw_unphase_d(gx, H, W, P, A, B, sh, sw)


# --------------------------------------------------------------------------- geometry

cdef void _geom(Geom* g, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t H, Py_ssize_t W,
                Py_ssize_t C_out, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t kH,
                Py_ssize_t kW, int sh, int sw, int ph, int pw, int dh, int dw) noexcept nogil:
    g.N = N
    g.C_in = C_in
    g.H = H
    g.W = W
    g.C_out = C_out
    g.OH = OH
    g.OW = OW
    g.kH = kH
    g.kW = kW
    g.sh = sh
    g.sw = sw
    g.ph = ph
    g.pw = pw
    g.dh = dh
    g.dw = dw
    g.m = C_out // C_in if C_in > 0 else 0
    # packed input: padded row r = ih + ph; phase q, column j holds iw = j * sw + q - pw
    g.Hp = (OH - 1) * sh + (kH - 1) * dh + 1 if OH > 0 else 0
    # rounded up to 16 values (64 bytes of float32): every packed row and phase then starts
    # on a cache line, so the tap with no column offset never splits a load across two
    g.Jw = (OW + (kW - 1) * dw // sw + 15) // 16 * 16
    g.RS = sw * g.Jw


cdef object _input_tap_offsets(const Geom* g):
    """Offset of tap (kh, kw) in the packed input, from the start of output row oh's rows."""
    off = np.empty(max(g.kH * g.kW, 1), np.intp)
    for kh in range(g.kH):
        for kw in range(g.kW):
            off[kh * g.kW + kw] = (kh * g.dh * g.RS + (kw * g.dw) % g.sw * g.Jw
                                   + (kw * g.dw) // g.sw)
    return off


# ----------------------------------------------------------------------------- forward

cdef int _forward_planes(const Geom* g, const floating* xp, const floating* wp,
                         const floating* bias, const Py_ssize_t* widx,
                         const Py_ssize_t* off, Py_ssize_t ci, floating* op,
                         const floating* x_next) noexcept nogil:
    """The m output planes of input plane xp (input channel ci; bias NULL: none), while the
    input plane x_next is prefetched (NULL: none). 1 if out of memory."""
    cdef Py_ssize_t j, co, KK = g.kH * g.kW
    cdef floating* buf = <floating*>fc_scratch(0, g.Hp * g.RS * sizeof(floating))
    cdef dw_next nx   # on this call's stack: one per thread
    if buf == NULL:
        return 1
    _next(&nx, x_next, g.W * sizeof(floating), NULL, 0)
    _pack(buf, g.Hp, g.sw, g.Jw, xp, g.H, g.W, g.ph, g.pw, g.sw,
          &nx if x_next != NULL else NULL)
    for j in range(g.m):
        co = ci * g.m + j
        _taps(op + j * g.OH * g.OW, g.OW, g.OH, g.OW, buf, g.sh * g.RS, KK, wp + co * KK,
              widx, off, bias[co] if bias != NULL else 0, False)
    return 0


def forward(const floating[:, :, :, ::1] x,          # IN  (N, C_in, H, W)
            const floating[:, :, :, ::1] weight,     # IN  (C_out, 1, kH, kW)
            const floating[::1] bias,                # IN  (C_out,) or length 0: no bias
            floating[:, :, :, ::1] out,              # OUT (N, C_out, OH, OW)
            int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
            int groups, int n_threads):
    """out[n, co] = bias[co] + (x[n, co // m] cross-correlated with weight[co, 0]).

    ``groups`` must equal C_in (it is implied by the shapes and not otherwise used).
    ``out`` is fully overwritten. Parallel over the flattened (n, c_in) input planes: each
    iteration writes only the m output planes of its input plane, so writes are disjoint.
    """
    cdef Geom g
    cdef Py_ssize_t p, n, ci, i, P
    cdef const floating* xp
    cdef const floating* wp
    cdef floating* op
    cdef floating b
    cdef bint pf
    cdef int nfail = 0
    cdef bint has_bias = bias.shape[0] > 0
    cdef const floating* bp = &bias[0] if has_bias else NULL
    _geom(&g, out.shape[0], x.shape[1], x.shape[2], x.shape[3], out.shape[1],
          out.shape[2], out.shape[3], weight.shape[2], weight.shape[3],
          stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    cdef Py_ssize_t[::1] off = _input_tap_offsets(&g)
    cdef Py_ssize_t[::1] widx = np.arange(off.shape[0], dtype=np.intp)
    with nogil:
        P = g.N * g.C_in
        if P == 0 or g.OH * g.OW == 0:
            pass
        elif g.kH * g.kW == 0 or g.H * g.W == 0:
            # nothing to sum: every output is its bias
            op = &out[0, 0, 0, 0]
            for p in range(g.N * g.C_out):
                b = bias[p % g.C_out] if has_bias else 0
                for i in range(g.OH * g.OW):
                    op[p * g.OH * g.OW + i] = b
        else:
            op = &out[0, 0, 0, 0]
            xp = &x[0, 0, 0, 0]
            wp = &weight[0, 0, 0, 0]
            pf = g.H * g.W * sizeof(floating) >= PREFETCH_MIN_BYTES
            for p in prange(P, num_threads=n_threads, schedule="static"):
                n = p // g.C_in
                ci = p % g.C_in
                nfail += _forward_planes(&g, xp + p * g.H * g.W, wp, bp, &widx[0], &off[0],
                                         ci, op + (n * g.C_out + ci * g.m) * g.OH * g.OW,
                                         xp + (p + 1) * g.H * g.W if p + 1 < P and pf else NULL)
    if nfail:
        raise MemoryError("conv2d_depthwise.forward: out of memory for the packed input")


# ----------------------------------------------------------------------- backward_input
#
# Input pixel (ih, iw) = (a * sh + qh, b * sw + qw) is reached by the taps (kh, kw) with
# qh + ph - kh * dh divisible by sh (likewise for columns), from grad_out row
# a + (qh + ph - kh * dh) / sh. So for each phase (qh, qw) the input gradient is a stencil
# over grad_out with that phase's taps, read from a copy of grad_out padded by (Lh, Lw) rows
# and columns of zeros in front (and enough behind) so that every read is inside the copy.

cdef struct BwdIn:
    Py_ssize_t Lh, Lw, Gh, Gw        # padded grad_out copy: Gh x Gw, data from (Lh, Lw)
    Py_ssize_t A, B                  # largest phase plane: ceil(H / sh) x ceil(W / sw)
    Py_ssize_t T                     # taps per phase, all m channels (row stride of tables)


cdef object _phase_tables(const Geom* g, BwdIn* t):
    """Per phase: tap count, weight index (within one input channel's m filters) and
    offset in the padded grad_out copies (m of them, Gh * Gw apart)."""
    cdef Py_ssize_t nph = g.sh * g.sw, qh, qw, j, kh, kw, u, v, k
    t.Lh = max(0, _ceil_div((g.kH - 1) * g.dh - g.ph, g.sh))
    t.Lw = max(0, _ceil_div((g.kW - 1) * g.dw - g.pw, g.sw))
    t.A = _ceil_div(g.H, g.sh)
    t.B = _ceil_div(g.W, g.sw)
    t.Gh = t.Lh + t.A + (g.sh - 1 + g.ph) // g.sh
    # rounded up to 16 values as the forward's Jw: whole-vector stores when packing
    t.Gw = (t.Lw + t.B + (g.sw - 1 + g.pw) // g.sw + 15) // 16 * 16
    t.T = max(g.m * g.kH * g.kW, 1)
    nt = np.zeros(nph, np.intp)
    widx = np.zeros((nph, t.T), np.intp)
    off = np.zeros((nph, t.T), np.intp)
    for qh in range(g.sh):
        for qw in range(g.sw):
            k = 0
            for j in range(g.m):
                for kh in range(g.kH):
                    u = qh + g.ph - kh * g.dh
                    if u % g.sh:
                        continue
                    for kw in range(g.kW):
                        v = qw + g.pw - kw * g.dw
                        if v % g.sw:
                            continue
                        widx[qh * g.sw + qw, k] = (j * g.kH + kh) * g.kW + kw
                        off[qh * g.sw + qw, k] = (j * t.Gh * t.Gw
                                                  + (_floor_div(u, g.sh) + t.Lh) * t.Gw
                                                  + _floor_div(v, g.sw) + t.Lw)
                        k += 1
            nt[qh * g.sw + qw] = k
    return nt, widx, off


cdef int _backward_input_plane(const Geom* g, const BwdIn* t, const floating* gyp,
                               const floating* wp, const Py_ssize_t* nt,
                               const Py_ssize_t* widx, const Py_ssize_t* off,
                               floating* gxp, const floating* gy_next) noexcept nogil:
    """gx plane of one input channel from its m grad_out planes gyp and filters wp; the
    first grad_out plane's packing prefetches the m grad_out planes at gy_next (NULL: none),
    a slice per row."""
    cdef Py_ssize_t j, qh, qw, ph, G = t.Gh * t.Gw, AB = t.A * t.B
    cdef floating* buf = <floating*>fc_scratch(0, g.m * G * sizeof(floating))
    cdef floating* phases
    cdef dw_next nx   # on this call's stack: one per thread
    if buf == NULL:
        return 1
    _next(&nx, gy_next, g.m * g.OW * sizeof(floating), NULL, 0)
    for j in range(g.m):
        _pack(buf + j * G, t.Gh, 1, t.Gw, gyp + j * g.OH * g.OW, g.OH, g.OW, t.Lh, t.Lw, 1,
              &nx if j == 0 and gy_next != NULL else NULL)
    if g.sw <= 2:
        # rows of phase qh are rows qh, qh + sh, ... of gx: write them in place
        for qh in range(g.sh):
            ph = qh * g.sw
            if g.sw == 1:
                _taps(gxp + qh * g.W, g.sh * g.W, _ceil_div(g.H - qh, g.sh), g.W, buf, t.Gw,
                      nt[ph], wp, widx + ph * t.T, off + ph * t.T, 0, False)
            else:
                _taps2(gxp + qh * g.W, g.sh * g.W, _ceil_div(g.H - qh, g.sh), g.W, buf, t.Gw,
                       wp, nt + ph, widx + ph * t.T, off + ph * t.T, t.T)
        return 0
    phases = <floating*>fc_scratch(1, g.sh * g.sw * AB * sizeof(floating))
    if phases == NULL:
        return 1
    for qh in range(g.sh):
        for qw in range(g.sw):
            ph = qh * g.sw + qw
            _taps(phases + ph * AB, t.B, _ceil_div(g.H - qh, g.sh), _ceil_div(g.W - qw, g.sw),
                  buf, t.Gw, nt[ph], wp, widx + ph * t.T, off + ph * t.T, 0, False)
    _unphase(gxp, g.H, g.W, phases, t.A, t.B, g.sh, g.sw)
    return 0


def backward_input(const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
                   const floating[:, :, :, ::1] weight,    # IN  (C_out, 1, kH, kW)
                   floating[:, :, :, ::1] grad_in,         # OUT (N, C_in, H, W)
                   int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                   int groups, int n_threads):
    """grad_in[n, ci] = sum over its m output channels co = ci*m .. ci*m + m - 1 of
    grad_out[n, co] transposed-convolved with weight[co, 0].

    ``grad_in`` is fully overwritten; positions no window reads are 0. Parallel over the
    flattened (n, c_in) input planes: each iteration gathers from its own m grad_out planes
    and writes only its own grad_in plane, so writes are disjoint.
    """
    cdef Geom g
    cdef BwdIn t
    cdef Py_ssize_t p, n, ci, i, P, ny
    cdef const floating* gyp
    cdef const floating* wp
    cdef floating* gxp
    cdef bint pf
    cdef int nfail = 0
    _geom(&g, grad_in.shape[0], grad_in.shape[1], grad_in.shape[2], grad_in.shape[3],
          grad_out.shape[1], grad_out.shape[2], grad_out.shape[3], weight.shape[2],
          weight.shape[3], stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    tables = _phase_tables(&g, &t)
    cdef Py_ssize_t[::1] nt = tables[0]
    cdef Py_ssize_t[:, ::1] widx = tables[1]
    cdef Py_ssize_t[:, ::1] off = tables[2]
    with nogil:
        P = g.N * g.C_in
        if P == 0 or g.H * g.W == 0:
            pass
        elif g.m * g.OH * g.OW * g.kH * g.kW == 0:
            gxp = &grad_in[0, 0, 0, 0]
            for i in range(P * g.H * g.W):
                gxp[i] = 0
        else:
            gxp = &grad_in[0, 0, 0, 0]
            gyp = &grad_out[0, 0, 0, 0]
            wp = &weight[0, 0, 0, 0]
            ny = g.m * g.OH * g.OW   # grad_out values per input plane
            pf = ny * sizeof(floating) >= PREFETCH_MIN_BYTES
            for p in prange(P, num_threads=n_threads, schedule="static"):
                n = p // g.C_in
                ci = p % g.C_in
                # plane p + 1's grad_out planes follow plane p's
                nfail += _backward_input_plane(
                    &g, &t, gyp + p * ny, wp + ci * g.m * g.kH * g.kW, &nt[0], &widx[0, 0],
                    &off[0, 0], gxp + p * g.H * g.W,
                    gyp + (p + 1) * ny if p + 1 < P and pf else NULL)
    if nfail:
        raise MemoryError("conv2d_depthwise.backward_input: out of memory for the packed "
                          "grad_out")


# ---------------------------------------------------------------------- backward_weight

# Largest accumulator block of one thread (channels of one block x m filters x taps x lanes,
# doubles): 64 KiB, in L2 with the planes it reads.
DEF ACC_BLOCK_BYTES = 65536


cdef Py_ssize_t _weight_block_channels(const Geom* g, int n_threads) noexcept nogil:
    """Input channels per block of backward_weight: the smallest multiple of n_threads blocks
    (so that every thread gets the same number) whose accumulators fit ACC_BLOCK_BYTES."""
    cdef Py_ssize_t T = max(n_threads, 1)
    cdef Py_ssize_t per_channel = g.m * g.kH * g.kW * DW_ACC_LANES * sizeof(double)
    cdef Py_ssize_t cap = max(1, ACC_BLOCK_BYTES // per_channel)
    cdef Py_ssize_t nb = T * _ceil_div(g.C_in, T * cap)
    return max(1, _ceil_div(g.C_in, nb))


cdef struct InputGrad:
    # backward's input-gradient half for _backward_weight_block (floating arrays as void*)
    const BwdIn* t
    const Py_ssize_t* nt
    const Py_ssize_t* widx
    const Py_ssize_t* off
    const void* weight
    void* grad_in


cdef int _backward_weight_block(const Geom* g, const floating* xp, const floating* gyp,
                                const Py_ssize_t* off, Py_ssize_t c0, Py_ssize_t c1,
                                floating* gwp, const InputGrad* ig) noexcept nogil:
    """The filters of input channels c0 <= ci < c1 (gw[ci*m .. ci*m + m - 1] each; xp = x,
    gyp = grad_out, gwp = grad_weight, all at their start): per image n in order, per channel,
    pack x[n, ci], then one dot per tap with each of its grad_out planes, whose vector lanes
    are added into that channel's double accumulators (one per lane), and those in lane order
    at the end. A block's planes of one image are contiguous, so the reads stream (a loop over
    the images of one channel jumps a whole image between planes, which the hardware
    prefetcher does not follow). Each channel's sums are over the images in order whatever the
    blocks: the same bits for any block size and thread count.

    ig not NULL (backward): also grad_in[n, ci] from the grad_out planes just read, while
    they are in cache. Packing a plane prefetches the next channel's x and grad_out planes.
    1 if out of memory."""
    cdef Py_ssize_t KK = g.kH * g.kW, n, ci, j, k, l
    cdef Py_ssize_t A = g.m * KK * DW_ACC_LANES         # accumulators per channel
    cdef Py_ssize_t xstep = g.C_in * g.H * g.W, gystep = g.C_out * g.OH * g.OW
    cdef const floating* gy
    cdef double s
    cdef Py_ssize_t nn, cn, nxp = g.H * g.W, nyp = g.m * g.OH * g.OW
    cdef bint pf_small = nxp * sizeof(floating) < PREFETCH_MIN_BYTES
    cdef dw_next nx
    cdef double* acc = <double*>fc_scratch(2, (c1 - c0) * A * sizeof(double))
    # slot 3: _backward_input_plane uses slots 0 and 1
    cdef floating* buf = <floating*>fc_scratch(3, g.Hp * g.RS * sizeof(floating))
    if acc == NULL or buf == NULL:
        return 1
    for k in range((c1 - c0) * A):
        acc[k] = 0
    for n in range(g.N):
        for ci in range(c0, c1):
            gy = gyp + n * gystep + ci * g.m * g.OH * g.OW
            # the next (image, channel) of this block: its x and grad_out planes
            nn, cn = (n, ci + 1) if ci + 1 < c1 else (n + 1, c0)
            if nn < g.N:
                _next(&nx, xp + nn * xstep + cn * nxp, g.W * sizeof(floating),
                      gyp + nn * gystep + cn * nyp, _ceil_div(nyp * sizeof(floating), g.H))
            _pack(buf, g.Hp, g.sw, g.Jw, xp + n * xstep + ci * g.H * g.W, g.H, g.W, g.ph,
                  g.pw, g.sw, NULL if nn == g.N or pf_small else &nx)
            for j in range(g.m):
                _dots(acc + (ci - c0) * A + j * KK * DW_ACC_LANES, gy + j * g.OH * g.OW,
                      g.OH, g.OW, buf, g.sh * g.RS, KK, off)
            if ig != NULL and _backward_input_plane(
                    g, ig.t, gy, <const floating*>ig.weight + ci * g.m * KK, ig.nt, ig.widx,
                    ig.off, <floating*>ig.grad_in + n * xstep + ci * g.H * g.W, NULL):
                return 1
    for k in range((c1 - c0) * g.m * KK):
        s = 0
        for l in range(DW_ACC_LANES):
            s += acc[k * DW_ACC_LANES + l]
        gwp[c0 * g.m * KK + k] = <floating>s
    return 0


def backward_weight(const floating[:, :, :, ::1] x,         # IN  (N, C_in, H, W)
                    const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
                    floating[:, :, :, ::1] grad_weight,     # OUT (C_out, 1, kH, kW)
                    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                    int groups, int n_threads):
    """grad_weight[co, 0, kh, kw] = sum over n, oh, ow of grad_out[n, co, oh, ow] times the
    value of x[n, co // m] that tap read.

    ``grad_weight`` is fully overwritten. Parallel over blocks of input channels: each
    iteration owns the m filters of each of its channels, so writes are disjoint, and sums
    over the batch in order, so the sums do not depend on the thread count.
    """
    cdef Geom g
    cdef Py_ssize_t b, nb, cb, i, KK
    cdef const floating* xp
    cdef const floating* gyp
    cdef floating* gwp
    cdef int nfail = 0
    _geom(&g, x.shape[0], x.shape[1], x.shape[2], x.shape[3], grad_out.shape[1],
          grad_out.shape[2], grad_out.shape[3], grad_weight.shape[2],
          grad_weight.shape[3], stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    cdef Py_ssize_t[::1] off = _input_tap_offsets(&g)
    with nogil:
        KK = g.kH * g.kW
        cb = _weight_block_channels(&g, n_threads)
        if g.C_out * KK == 0:
            pass
        elif g.N * g.OH * g.OW * g.H * g.W == 0:
            gwp = &grad_weight[0, 0, 0, 0]
            for i in range(g.C_out * KK):
                gwp[i] = 0
        else:
            gwp = &grad_weight[0, 0, 0, 0]
            xp = &x[0, 0, 0, 0]
            gyp = &grad_out[0, 0, 0, 0]
            nb = _ceil_div(g.C_in, cb)
            for b in prange(nb, num_threads=n_threads, schedule="static"):
                nfail += _backward_weight_block(&g, xp, gyp, &off[0], b * cb,
                                                min(b * cb + cb, g.C_in), gwp, NULL)
    if nfail:
        raise MemoryError("conv2d_depthwise.backward_weight: out of memory for the packed "
                          "input")


# ----------------------------------------------------------------------------- backward

def backward(const floating[:, :, :, ::1] x,         # IN  (N, C_in, H, W)
             const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
             const floating[:, :, :, ::1] weight,    # IN  (C_out, 1, kH, kW)
             floating[:, :, :, ::1] grad_in,         # OUT (N, C_in, H, W)
             floating[:, :, :, ::1] grad_weight,     # OUT (C_out, 1, kH, kW)
             int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
             int groups, int n_threads):
    """``backward_input`` and ``backward_weight`` in one pass over grad_out: each grad_out
    plane, read for the weight gradient's dots, gives its input-gradient plane while it is
    still in cache, so grad_out comes from memory once instead of twice (on mobilenet's
    depthwise layers a quarter of the bytes). The same bits as the two separate calls.

    Parallel over blocks of input channels, as ``backward_weight`` (each block owns its
    channels' filters and grad_in planes). When the channels do not split evenly over the
    threads (fewer than 8 per thread and not a multiple of ``n_threads``) the two separate
    calls run instead, because ``backward_input``'s planes balance better then.
    """
    cdef Geom g
    cdef BwdIn t
    cdef InputGrad ig
    cdef Py_ssize_t b, nb, cb
    cdef const floating* xp
    cdef const floating* gyp
    cdef floating* gwp
    cdef int nfail = 0
    _geom(&g, x.shape[0], x.shape[1], x.shape[2], x.shape[3], grad_out.shape[1],
          grad_out.shape[2], grad_out.shape[3], weight.shape[2], weight.shape[3],
          stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    if (any(grad_in.shape[i] != x.shape[i] for i in range(4))
            or any(grad_weight.shape[i] != weight.shape[i] for i in range(4))):
        raise ValueError("conv2d_depthwise.backward: grad_in must have x's shape and "
                         "grad_weight weight's")
    balanced = g.C_in % max(n_threads, 1) == 0 or g.C_in >= 8 * n_threads
    if not balanced or g.N * g.C_in * g.H * g.W * g.m * g.OH * g.OW * g.kH * g.kW == 0:
        backward_input(grad_out, weight, grad_in, stride_h, stride_w, pad_h, pad_w, dil_h,
                       dil_w, groups, n_threads)
        backward_weight(x, grad_out, grad_weight, stride_h, stride_w, pad_h, pad_w, dil_h,
                        dil_w, groups, n_threads)
        return
    cdef Py_ssize_t[::1] off = _input_tap_offsets(&g)
    tables = _phase_tables(&g, &t)
    cdef Py_ssize_t[::1] in_nt = tables[0]
    cdef Py_ssize_t[:, ::1] in_widx = tables[1]
    cdef Py_ssize_t[:, ::1] in_off = tables[2]
    ig.t = &t
    ig.nt = &in_nt[0]
    ig.widx = &in_widx[0, 0]
    ig.off = &in_off[0, 0]
    ig.weight = &weight[0, 0, 0, 0]
    ig.grad_in = &grad_in[0, 0, 0, 0]
    with nogil:
        cb = _weight_block_channels(&g, n_threads)
        nb = _ceil_div(g.C_in, cb)
        gwp = &grad_weight[0, 0, 0, 0]
        xp = &x[0, 0, 0, 0]
        gyp = &grad_out[0, 0, 0, 0]
        for b in prange(nb, num_threads=n_threads, schedule="static"):
            nfail += _backward_weight_block(&g, xp, gyp, &off[0], b * cb,
                                            min(b * cb + cb, g.C_in), gwp, &ig)
    if nfail:
        raise MemoryError("conv2d_depthwise.backward: out of memory for the packed planes")
