"""Direct 2-D convolution: plain loops over the kernel taps, no im2col buffer.

Aimed at layers with few input channels per group (first layers: C_in 1..3), where im2col
would build a tall, thin matrix for very little arithmetic; correct for every geometry
(stride, padding, dilation, groups, bias).

Level of parallelism: one OpenMP ``prange`` per pass over an axis whose writes are disjoint
(forward: output planes; backward_input: input planes; backward_weight: (c_out, c_in/groups)
pairs). Nothing inside a thread is parallel. Every output element is summed in an order that
does not depend on the thread count, so results are bit-identical for any ``n_threads``.

Inner loops run over the contiguous ``ow`` axis on the range of ``ow`` whose input column is
inside the image (padding by index bounds); stride 1 is a separate, contiguous loop so the
compiler vectorises it.
"""
from cython cimport floating
from cython.parallel cimport prange

from _conv_index cimport _col_range, _src_index


ctypedef struct Geom:
    Py_ssize_t N, C_in, H, W, C_out, OH, OW, kH, kW
    Py_ssize_t sh, sw, ph, pw, dh, dw
    Py_ssize_t cig, cog          # channels per group: input, output


cdef enum:
    # taps of backward_weight accumulated at once per (c_out, c_in) pair (one double each)
    MAX_TAPS = 256
    # partial sums kept per dot product: a fixed count keeps the summation order fixed
    LANES = 8   # the step of the loops in _dot


cdef inline void _geom(Geom* g, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t H, Py_ssize_t W,
                       Py_ssize_t C_out, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t kH,
                       Py_ssize_t kW, int sh, int sw, int ph, int pw, int dh, int dw,
                       int groups) noexcept nogil:
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
    g.cig = C_in // groups
    g.cog = C_out // groups


cdef inline void _axpy(floating* y, const floating* x, floating a, Py_ssize_t n,
                       Py_ssize_t sx) noexcept nogil:
    """y[i] += a * x[i * sx] for i < n."""
    cdef Py_ssize_t i
    if sx == 1:
        for i in range(n):
            y[i] += a * x[i]
    elif sx == 2:
        for i in range(n):
            y[i] += a * x[2 * i]
    else:
        for i in range(n):
            y[i] += a * x[i * sx]


cdef inline void _axpy_scatter(floating* y, const floating* x, floating a, Py_ssize_t n,
                               Py_ssize_t sy) noexcept nogil:
    """y[i * sy] += a * x[i] for i < n."""
    cdef Py_ssize_t i
    if sy == 1:
        for i in range(n):
            y[i] += a * x[i]
    else:
        for i in range(n):
            y[i * sy] += a * x[i]


cdef inline void _axpy4(floating* y, const floating** x, const floating* a, Py_ssize_t n,
                        Py_ssize_t sx) noexcept nogil:
    """y[i] += sum over t < 4 of a[t] * x[t][i * sx]: four taps per pass over y."""
    cdef const floating* x0 = x[0]
    cdef const floating* x1 = x[1]
    cdef const floating* x2 = x[2]
    cdef const floating* x3 = x[3]
    cdef floating a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3]
    cdef Py_ssize_t i
    if sx == 1:
        for i in range(n):
            y[i] += (a0 * x0[i] + a1 * x1[i]) + (a2 * x2[i] + a3 * x3[i])
    elif sx == 2:
        for i in range(n):
            y[i] += (a0 * x0[2 * i] + a1 * x1[2 * i]) + (a2 * x2[2 * i] + a3 * x3[2 * i])
    else:
        for i in range(n):
            y[i] += ((a0 * x0[i * sx] + a1 * x1[i * sx])
                     + (a2 * x2[i * sx] + a3 * x3[i * sx]))


cdef inline void _axpy4_scatter(floating* y, const floating** x, const floating* a,
                                Py_ssize_t n, Py_ssize_t sy) noexcept nogil:
    """y[i * sy] += sum over t < 4 of a[t] * x[t][i]: four taps per pass over y."""
    cdef const floating* x0 = x[0]
    cdef const floating* x1 = x[1]
    cdef const floating* x2 = x[2]
    cdef const floating* x3 = x[3]
    cdef floating a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3]
    cdef Py_ssize_t i
    if sy == 1:
        for i in range(n):
            y[i] += (a0 * x0[i] + a1 * x1[i]) + (a2 * x2[i] + a3 * x3[i])
    else:
        for i in range(n):
            y[i * sy] += (a0 * x0[i] + a1 * x1[i]) + (a2 * x2[i] + a3 * x3[i])


cdef inline double _dot(const floating* a, const floating* b, Py_ssize_t n,
                        Py_ssize_t sb) noexcept nogil:
    """sum a[i] * b[i * sb] over i < n, in LANES fixed partial sums (vectorisable)."""
    cdef floating lane[LANES]
    cdef Py_ssize_t i, l, nv = n - n % LANES
    cdef double s = 0
    for l in range(LANES):
        lane[l] = 0
    if sb == 1:
        for i in range(0, nv, 8):
            for l in range(LANES):
                lane[l] += a[i + l] * b[i + l]
    else:
        for i in range(0, nv, 8):
            for l in range(LANES):
                lane[l] += a[i + l] * b[(i + l) * sb]
    for i in range(nv, n):
        lane[i - nv] += a[i] * b[i * sb]
    for l in range(LANES):
        s += lane[l]
    return s


cdef inline void _dot4(double* acc, const floating* gy, const floating** x, Py_ssize_t n,
                       Py_ssize_t sx) noexcept nogil:
    """acc[t] += sum over i < n of gy[i] * x[t][i * sx] for t < 4, in LANES fixed partial
    sums per t: one load of gy serves four taps."""
    cdef floating a[4 * LANES]
    cdef const floating* x0 = x[0]
    cdef const floating* x1 = x[1]
    cdef const floating* x2 = x[2]
    cdef const floating* x3 = x[3]
    cdef Py_ssize_t i, l, c, nv = n - n % LANES
    for l in range(4 * LANES):
        a[l] = 0
    for i in range(0, nv, 8):
        for l in range(LANES):
            c = (i + l) * sx
            a[l] += gy[i + l] * x0[c]
            a[LANES + l] += gy[i + l] * x1[c]
            a[2 * LANES + l] += gy[i + l] * x2[c]
            a[3 * LANES + l] += gy[i + l] * x3[c]
    for i in range(nv, n):
        c = i * sx
        a[i - nv] += gy[i] * x0[c]
        a[LANES + i - nv] += gy[i] * x1[c]
        a[2 * LANES + i - nv] += gy[i] * x2[c]
        a[3 * LANES + i - nv] += gy[i] * x3[c]
    for l in range(4 * LANES):
        acc[l // LANES] += a[l]


cdef void _forward_plane(const Geom* g, const floating* xp, const floating* wp, floating b,
                         floating* op) noexcept nogil:
    """One output plane: op = b + sum over (ci, kh, kw) of w * shifted x plane.

    xp: the group's first input plane of this image; wp: weight[co]; op: out[n, co].
    For one kw every (ci, kh) tap covers the same ow range, so taps go four at a time
    through one pass over the output row (a quarter of the loads and stores of y).
    """
    cdef Py_ssize_t oh, ow, ci, kh, kw, ih, lo, hi, off, t, nt
    cdef floating* orow
    cdef const floating* xs[4]
    cdef floating ws[4]
    for oh in range(g.OH):
        orow = op + oh * g.OW
        for ow in range(g.OW):
            orow[ow] = b
        for kw in range(g.kW):
            off = kw * g.dw - g.pw
            _col_range(off, g.sw, g.W, g.OW, &lo, &hi)
            if lo >= hi:
                continue
            nt = 0
            for ci in range(g.cig):
                for kh in range(g.kH):
                    ih = oh * g.sh - g.ph + kh * g.dh
                    if ih < 0 or ih >= g.H:
                        continue
                    xs[nt] = xp + (ci * g.H + ih) * g.W + lo * g.sw + off
                    ws[nt] = wp[(ci * g.kH + kh) * g.kW + kw]
                    nt = nt + 1
                    if nt == 4:
                        _axpy4(orow + lo, xs, ws, hi - lo, g.sw)
                        nt = 0
            for t in range(nt):
                _axpy(orow + lo, xs[t], ws[t], hi - lo, g.sw)


cdef void _backward_input_plane(const Geom* g, const floating* gyp, const floating* wp,
                                floating* gxp) noexcept nogil:
    """One input-gradient plane gx[n, ci], row by row, gathering from its group's gy planes.

    gyp: gy[n, first c_out of the group]; wp: weight[first c_out of the group, ci_local];
    gxp: gx[n, ci]. Rows and columns no window touches stay 0. For one kw every (co, kh)
    tap covers the same columns, so taps go four at a time through one pass over the row.
    """
    cdef Py_ssize_t ih, iw, kh, kw, oh, j, lo, hi, off, t, nt
    cdef Py_ssize_t wstride = g.cig * g.kH * g.kW
    cdef floating* gxrow
    cdef const floating* gs[4]
    cdef floating ws[4]
    for ih in range(g.H):
        gxrow = gxp + ih * g.W
        for iw in range(g.W):
            gxrow[iw] = 0
        for kw in range(g.kW):
            off = kw * g.dw - g.pw
            _col_range(off, g.sw, g.W, g.OW, &lo, &hi)
            if lo >= hi:
                continue
            nt = 0
            for j in range(g.cog):
                for kh in range(g.kH):
                    if not _src_index(ih + g.ph - kh * g.dh, g.sh, g.OH, &oh):
                        continue
                    gs[nt] = gyp + (j * g.OH + oh) * g.OW + lo
                    ws[nt] = wp[j * wstride + kh * g.kW + kw]
                    nt = nt + 1
                    if nt == 4:
                        _axpy4_scatter(gxrow + lo * g.sw + off, gs, ws, hi - lo, g.sw)
                        nt = 0
            for t in range(nt):
                _axpy_scatter(gxrow + lo * g.sw + off, gs[t], ws[t], hi - lo, g.sw)


cdef void _backward_weight_pair(const Geom* g, const floating* xp, const floating* gyp,
                                floating* gwp) noexcept nogil:
    """gw[co, ci_local] (kH*kW taps) = sum over n, oh, ow of gy * x, batch in order.

    xp: x[0, ci]; gyp: gy[0, co]; gwp: grad_weight[co, ci_local]. Taps are processed in
    blocks of at most MAX_TAPS double accumulators (whole filter rows when they fit), so each
    (n, oh) row of gy is read once per block; for one kw the taps of all filter rows cover
    the same ow range and go four at a time through _dot4.
    """
    cdef double acc[MAX_TAPS]
    cdef double part[4]
    cdef Py_ssize_t kh0, kh1, kw0, kw1, nkw, kh, kw, k, t, nt
    cdef Py_ssize_t n, oh, ih, lo, hi, off
    cdef Py_ssize_t xplane = g.H * g.W, gyplane = g.OH * g.OW
    cdef const floating* xs[4]
    cdef Py_ssize_t ks[4]
    cdef const floating* gyrow
    kh0 = 0
    kw0 = 0
    while kh0 < g.kH:
        if g.kW <= MAX_TAPS:
            kw0 = 0
            kw1 = g.kW
            kh1 = kh0 + MAX_TAPS // g.kW
            if kh1 > g.kH:
                kh1 = g.kH
        else:
            kw1 = kw0 + MAX_TAPS if kw0 + MAX_TAPS < g.kW else g.kW
            kh1 = kh0 + 1
        nkw = kw1 - kw0
        for k in range((kh1 - kh0) * nkw):
            acc[k] = 0
        for n in range(g.N):
            for oh in range(g.OH):
                gyrow = gyp + n * g.C_out * gyplane + oh * g.OW
                for kw in range(kw0, kw1):
                    off = kw * g.dw - g.pw
                    _col_range(off, g.sw, g.W, g.OW, &lo, &hi)
                    if lo >= hi:
                        continue
                    nt = 0
                    for kh in range(kh0, kh1):
                        ih = oh * g.sh - g.ph + kh * g.dh
                        if ih < 0 or ih >= g.H:
                            continue
                        xs[nt] = xp + n * g.C_in * xplane + ih * g.W + lo * g.sw + off
                        ks[nt] = (kh - kh0) * nkw + kw - kw0
                        nt = nt + 1
                        if nt == 4:
                            part[0] = part[1] = part[2] = part[3] = 0
                            _dot4(part, gyrow + lo, xs, hi - lo, g.sw)
                            for t in range(4):
                                acc[ks[t]] += part[t]
                            nt = 0
                    for t in range(nt):
                        acc[ks[t]] += _dot(gyrow + lo, xs[t], hi - lo, g.sw)
        for kh in range(kh0, kh1):
            for kw in range(kw0, kw1):
                gwp[kh * g.kW + kw] = <floating>acc[(kh - kh0) * nkw + kw - kw0]
        if g.kW > MAX_TAPS and kw1 < g.kW:
            kw0 = kw1
        else:
            kw0 = 0
            kh0 = kh1


def forward(const floating[:, :, :, ::1] x,          # IN  (N, C_in, H, W)
            const floating[:, :, :, ::1] weight,     # IN  (C_out, C_in // groups, kH, kW)
            const floating[::1] bias,                # IN  (C_out,) or length 0: no bias
            floating[:, :, :, ::1] out,              # OUT (N, C_out, OH, OW)
            int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
            int groups, int n_threads):
    """out[n, co] = bias[co] + sum over the group's ci and (kh, kw) of weight * x window.

    ``out`` is fully overwritten (the caller need not zero it). Parallel over the flattened
    (n, c_out) output planes: each iteration writes only its own plane, so writes are
    disjoint, and each plane is summed in a fixed order.
    """
    cdef Geom g
    cdef Py_ssize_t p, n, co, i, P
    cdef const floating* xp
    cdef const floating* wp
    cdef floating* op
    cdef floating b
    cdef bint has_bias = bias.shape[0] > 0
    with nogil:
        _geom(&g, out.shape[0], x.shape[1], x.shape[2], x.shape[3], out.shape[1],
              out.shape[2], out.shape[3], weight.shape[2], weight.shape[3],
              stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
        P = g.N * g.C_out
        if P == 0 or g.OH * g.OW == 0:
            pass
        elif g.cig * g.kH * g.kW == 0 or g.H * g.W == 0:
            # nothing to sum: every output is its bias
            op = &out[0, 0, 0, 0]
            for p in range(P):
                b = bias[p % g.C_out] if has_bias else 0
                for i in range(g.OH * g.OW):
                    op[p * g.OH * g.OW + i] = b
        else:
            op = &out[0, 0, 0, 0]
            xp = &x[0, 0, 0, 0]
            wp = &weight[0, 0, 0, 0]
            for p in prange(P, num_threads=n_threads, schedule="static"):
                n = p // g.C_out
                co = p % g.C_out
                _forward_plane(&g, xp + (n * g.C_in + (co // g.cog) * g.cig) * g.H * g.W,
                               wp + co * g.cig * g.kH * g.kW,
                               bias[co] if has_bias else 0,
                               op + p * g.OH * g.OW)


def backward_input(const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
                   const floating[:, :, :, ::1] weight,    # IN  (C_out, C_in // groups, kH, kW)
                   floating[:, :, :, ::1] grad_in,         # OUT (N, C_in, H, W)
                   int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                   int groups, int n_threads):
    """grad_in[n, ci] = sum over the group's co and (kh, kw) of weight * grad_out, placed back
    at the input positions each window read (the transposed convolution).

    ``grad_in`` is fully overwritten; positions no window reads are 0. Parallel over the
    flattened (n, c_in) input planes: each iteration gathers from the grad_out planes of its
    group and writes only its own grad_in plane, so writes are disjoint.
    """
    cdef Geom g
    cdef Py_ssize_t p, n, ci, gr, i, P
    cdef const floating* gyp
    cdef const floating* wp
    cdef floating* gxp
    with nogil:
        _geom(&g, grad_in.shape[0], grad_in.shape[1], grad_in.shape[2], grad_in.shape[3],
              grad_out.shape[1], grad_out.shape[2], grad_out.shape[3], weight.shape[2],
              weight.shape[3], stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
        P = g.N * g.C_in
        if P == 0 or g.H * g.W == 0:
            pass
        elif g.cog * g.OH * g.OW * g.kH * g.kW == 0:
            gxp = &grad_in[0, 0, 0, 0]
            for i in range(P * g.H * g.W):
                gxp[i] = 0
        else:
            gxp = &grad_in[0, 0, 0, 0]
            gyp = &grad_out[0, 0, 0, 0]
            wp = &weight[0, 0, 0, 0]
            for p in prange(P, num_threads=n_threads, schedule="static"):
                n = p // g.C_in
                ci = p % g.C_in
                gr = ci // g.cig
                _backward_input_plane(&g, gyp + (n * g.C_out + gr * g.cog) * g.OH * g.OW,
                                      wp + (gr * g.cog * g.cig + ci % g.cig) * g.kH * g.kW,
                                      gxp + p * g.H * g.W)


def backward_weight(const floating[:, :, :, ::1] x,         # IN  (N, C_in, H, W)
                    const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
                    floating[:, :, :, ::1] grad_weight,     # OUT (C_out, C_in // groups, kH, kW)
                    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                    int groups, int n_threads):
    """grad_weight[co, cil, kh, kw] = sum over n, oh, ow of grad_out[n, co, oh, ow] times the
    input value that tap read.

    ``grad_weight`` is fully overwritten. Parallel over the flattened (c_out, c_in/groups)
    pairs: each iteration owns the kH*kW taps of one pair, so writes are disjoint, and it
    loops over the batch in order, so the sum does not depend on the thread count.
    """
    cdef Geom g
    cdef Py_ssize_t q, co, cil, i, Q
    cdef const floating* xp
    cdef const floating* gyp
    cdef floating* gwp
    with nogil:
        _geom(&g, x.shape[0], x.shape[1], x.shape[2], x.shape[3], grad_out.shape[1],
              grad_out.shape[2], grad_out.shape[3], grad_weight.shape[2],
              grad_weight.shape[3], stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
        Q = g.C_out * g.cig
        if Q * g.kH * g.kW == 0:
            pass
        elif g.N * g.OH * g.OW * g.H * g.W == 0:
            gwp = &grad_weight[0, 0, 0, 0]
            for i in range(Q * g.kH * g.kW):
                gwp[i] = 0
        else:
            gwp = &grad_weight[0, 0, 0, 0]
            xp = &x[0, 0, 0, 0]
            gyp = &grad_out[0, 0, 0, 0]
            for q in prange(Q, num_threads=n_threads, schedule="static"):
                co = q // g.cig
                cil = q % g.cig
                _backward_weight_pair(&g, xp + ((co // g.cog) * g.cig + cil) * g.H * g.W,
                                      gyp + co * g.OH * g.OW, gwp + q * g.kH * g.kW)
