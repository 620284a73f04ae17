"""Depthwise 2-D convolution: groups == C_in, channel multiplier m = C_out // C_in >= 1.

Output channel ``co`` reads only input channel ``co // m`` through its own kH x kW filter, so
each output plane is a small stencil over one input plane: no im2col, no GEMM (a GEMM with
one row per group would spend its time packing). Every stride, padding, dilation and bias is
supported by the generic row loops; 3x3 filters get specialised paths with the 9 weights in
registers and one vectorisable loop over ``ow`` (forward and backward_input at stride 1 and at
stride 2 with odd horizontal padding), with the few border columns done element by element.

Level of parallelism: one OpenMP ``prange`` per pass over an axis whose writes are disjoint
(forward: (n, c_out) planes; backward_input: (n, c_in) planes; backward_weight: c_out).
Nothing inside a thread is parallel, and every element is summed in an order that does not
depend on the thread count, so results are bit-identical for any ``n_threads``.
"""
from cython cimport floating
from cython.parallel cimport prange


ctypedef struct Geom:
    Py_ssize_t N, C_in, H, W, C_out, OH, OW, kH, kW
    Py_ssize_t sh, sw, ph, pw, dh, dw
    Py_ssize_t m                 # channel multiplier: output channels per input channel


cdef enum:
    LANES = 8   # partial sums per dot product (fixed: the summation order is fixed)
    MAX_TAPS = 256  # taps of one filter accumulated at once in backward_weight


# Index helpers: strides 1 and 2 avoid the integer division (tens of cycles, and these run
# per row and per border element).

cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """ceil(a / b) for b > 0 and any sign of a (C division truncates toward zero)."""
    if b == 1:
        return a
    if b == 2:
        return (a + 1) >> 1      # arithmetic shift: floor, also for negative a
    if a >= 0:
        return (a + b - 1) // b
    return -((-a) // b)


cdef inline bint _src_index(Py_ssize_t t, Py_ssize_t s, Py_ssize_t n,
                            Py_ssize_t* q) noexcept nogil:
    """q = t / s if t >= 0, s divides t and t / s < n; otherwise False (no such index)."""
    if t < 0:
        return False
    if s == 1:
        q[0] = t
    elif s == 2:
        if t & 1:
            return False
        q[0] = t >> 1
    else:
        if t % s != 0:
            return False
        q[0] = t // s
    return q[0] < n


cdef inline void _col_range(Py_ssize_t off, Py_ssize_t s, Py_ssize_t W, Py_ssize_t OW,
                            Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the ow with 0 <= ow * s + off < W, clipped to [0, OW)."""
    cdef Py_ssize_t a = _ceil_div(-off, s), b = _ceil_div(W - off, s)
    lo[0] = a if a > 0 else 0
    hi[0] = b if b < OW else OW


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


# ----------------------------------------------------------------------------- forward

cdef inline floating _forward_elem(const Geom* g, const floating* xp, const floating* wp,
                                   floating b, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """One output element with full bounds checks (border columns of the fast paths)."""
    cdef Py_ssize_t kh, kw, ih, iw
    cdef floating s = b
    for kh in range(g.kH):
        ih = oh * g.sh - g.ph + kh * g.dh
        if ih < 0 or ih >= g.H:
            continue
        for kw in range(g.kW):
            iw = ow * g.sw - g.pw + kw * g.dw
            if 0 <= iw < g.W:
                s = s + wp[kh * g.kW + kw] * xp[ih * g.W + iw]
    return s


cdef void _forward_row_generic(const Geom* g, const floating* xp, const floating* wp,
                               floating b, Py_ssize_t oh, floating* orow) noexcept nogil:
    cdef Py_ssize_t ow, kh, kw, ih, lo, hi, off
    for ow in range(g.OW):
        orow[ow] = b
    for kh in range(g.kH):
        ih = oh * g.sh - g.ph + kh * g.dh
        if ih < 0 or ih >= g.H:
            continue
        for kw in range(g.kW):
            off = kw * g.dw - g.pw
            _col_range(off, g.sw, g.W, g.OW, &lo, &hi)
            if lo < hi:
                _axpy(orow + lo, xp + ih * g.W + lo * g.sw + off, wp[kh * g.kW + kw],
                      hi - lo, g.sw)


cdef void _forward_row_3x3(floating* orow, const floating* r0, const floating* r1,
                           const floating* r2, const floating* wp, floating b,
                           Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t s, Py_ssize_t d,
                           Py_ssize_t off) noexcept nogil:
    """orow[ow] = b + 3x3 stencil over rows r0..r2 for ow in [lo, hi) (all taps inside).

    Input column of tap kw: ow * s + off + kw * d. Stride 1 and 2 get their own loop.
    """
    cdef floating w00 = wp[0], w01 = wp[1], w02 = wp[2]
    cdef floating w10 = wp[3], w11 = wp[4], w12 = wp[5]
    cdef floating w20 = wp[6], w21 = wp[7], w22 = wp[8]
    cdef Py_ssize_t ow, c
    if s == 1 and d == 1:
        for ow in range(lo, hi):
            c = ow + off
            orow[ow] = (b + (w00 * r0[c] + w01 * r0[c + 1] + w02 * r0[c + 2])
                        + (w10 * r1[c] + w11 * r1[c + 1] + w12 * r1[c + 2])
                        + (w20 * r2[c] + w21 * r2[c + 1] + w22 * r2[c + 2]))
    elif s == 2 and d == 1:
        for ow in range(lo, hi):
            c = 2 * ow + off
            orow[ow] = (b + (w00 * r0[c] + w01 * r0[c + 1] + w02 * r0[c + 2])
                        + (w10 * r1[c] + w11 * r1[c + 1] + w12 * r1[c + 2])
                        + (w20 * r2[c] + w21 * r2[c + 1] + w22 * r2[c + 2]))
    else:
        for ow in range(lo, hi):
            c = s * ow + off
            orow[ow] = (b + (w00 * r0[c] + w01 * r0[c + d] + w02 * r0[c + 2 * d])
                        + (w10 * r1[c] + w11 * r1[c + d] + w12 * r1[c + 2 * d])
                        + (w20 * r2[c] + w21 * r2[c + d] + w22 * r2[c + 2 * d]))


cdef void _forward_plane(const Geom* g, const floating* xp, const floating* wp, floating b,
                         floating* op) noexcept nogil:
    """out plane op = b + stencil of input plane xp with the filter wp (kH*kW)."""
    cdef Py_ssize_t oh, ow, ih, lo = 0, hi = 0, lo2, hi2
    cdef bint fast = g.kH == 3 and g.kW == 3
    cdef floating* orow
    if fast:
        # interior columns: all three taps inside the row
        _col_range(-g.pw, g.sw, g.W, g.OW, &lo, &hi)
        _col_range(2 * g.dw - g.pw, g.sw, g.W, g.OW, &lo2, &hi2)
        lo = lo2 if lo2 > lo else lo
        hi = hi2 if hi2 < hi else hi
        fast = lo < hi
    for oh in range(g.OH):
        orow = op + oh * g.OW
        ih = oh * g.sh - g.ph
        if fast and ih >= 0 and ih + 2 * g.dh < g.H:
            _forward_row_3x3(orow, xp + ih * g.W, xp + (ih + g.dh) * g.W,
                             xp + (ih + 2 * g.dh) * g.W, wp, b, lo, hi, g.sw, g.dw, -g.pw)
            for ow in range(lo):
                orow[ow] = _forward_elem(g, xp, wp, b, oh, ow)
            for ow in range(hi, g.OW):
                orow[ow] = _forward_elem(g, xp, wp, b, oh, ow)
        else:
            _forward_row_generic(g, xp, wp, b, oh, orow)


# ----------------------------------------------------------------------- backward_input

cdef inline floating _backward_input_elem(const Geom* g, const floating* gyp,
                                          const floating* wp, Py_ssize_t ih,
                                          Py_ssize_t iw) noexcept nogil:
    """gx[ih, iw] summed over the m output channels, with full bounds checks."""
    cdef Py_ssize_t j, kh, kw, oh, ow
    cdef floating s = 0
    for j in range(g.m):
        for kh in range(g.kH):
            if not _src_index(ih + g.ph - kh * g.dh, g.sh, g.OH, &oh):
                continue
            for kw in range(g.kW):
                if not _src_index(iw + g.pw - kw * g.dw, g.sw, g.OW, &ow):
                    continue
                s = s + wp[(j * g.kH + kh) * g.kW + kw] * gyp[(j * g.OH + oh) * g.OW + ow]
    return s


cdef void _backward_input_row_generic(const Geom* g, const floating* gyp, const floating* wp,
                                      Py_ssize_t ih, floating* gxrow) noexcept nogil:
    cdef Py_ssize_t iw, j, kh, kw, oh, lo, hi, off
    for iw in range(g.W):
        gxrow[iw] = 0
    for j in range(g.m):
        for kh in range(g.kH):
            if not _src_index(ih + g.ph - kh * g.dh, g.sh, g.OH, &oh):
                continue
            for kw in range(g.kW):
                off = kw * g.dw - g.pw
                _col_range(off, g.sw, g.W, g.OW, &lo, &hi)
                if lo < hi:
                    _axpy_scatter(gxrow + lo * g.sw + off, gyp + (j * g.OH + oh) * g.OW + lo,
                                  wp[(j * g.kH + kh) * g.kW + kw], hi - lo, g.sw)


cdef void _backward_input_row_3x3_s1(floating* gxrow, const floating* g0, const floating* g1,
                                     const floating* g2, const floating* wp, Py_ssize_t lo,
                                     Py_ssize_t hi, Py_ssize_t d, bint first) noexcept nogil:
    """Stride 1 gather for iw in [lo, hi): gx[iw] (+)= sum w[kh, kw] * g_kh[iw - kw * d].

    g_kh is the grad_out row read by filter row kh, already shifted by the padding.
    """
    cdef floating w00 = wp[0], w01 = wp[1], w02 = wp[2]
    cdef floating w10 = wp[3], w11 = wp[4], w12 = wp[5]
    cdef floating w20 = wp[6], w21 = wp[7], w22 = wp[8]
    cdef Py_ssize_t iw
    if first:
        for iw in range(lo, hi):
            gxrow[iw] = 0
    # one branch-free loop per case so each vectorises
    if d == 1:
        for iw in range(lo, hi):
            gxrow[iw] += (w00 * g0[iw] + w01 * g0[iw - 1] + w02 * g0[iw - 2]
                          + w10 * g1[iw] + w11 * g1[iw - 1] + w12 * g1[iw - 2]
                          + w20 * g2[iw] + w21 * g2[iw - 1] + w22 * g2[iw - 2])
    else:
        for iw in range(lo, hi):
            gxrow[iw] += (w00 * g0[iw] + w01 * g0[iw - d] + w02 * g0[iw - 2 * d]
                          + w10 * g1[iw] + w11 * g1[iw - d] + w12 * g1[iw - 2 * d]
                          + w20 * g2[iw] + w21 * g2[iw - d] + w22 * g2[iw - 2 * d])


cdef void _backward_input_row_3x3_s2(floating* gxrow, const floating* gy, const floating* w,
                                     Py_ssize_t jlo, Py_ssize_t jhi, Py_ssize_t e,
                                     bint first) noexcept nogil:
    """Stride 2, dilation 1, odd padding pw = 2e + 1: one filter row w[0..2] and its grad_out
    row gy. For j in [jlo, jhi), columns 2j (tap 1 reads gy[j + e]) and 2j + 1 (taps 0 and 2
    read gy[j + e + 1] and gy[j + e]) are written together, so the loop is a clean
    interleaved store the compiler can vectorise.
    """
    cdef floating w0 = w[0], w1 = w[1], w2 = w[2]
    cdef Py_ssize_t j
    gy = gy + e
    if first:
        for j in range(jlo, jhi):
            gxrow[2 * j] = w1 * gy[j]
            gxrow[2 * j + 1] = w0 * gy[j + 1] + w2 * gy[j]
    else:
        for j in range(jlo, jhi):
            gxrow[2 * j] += w1 * gy[j]
            gxrow[2 * j + 1] += w0 * gy[j + 1] + w2 * gy[j]


cdef void _backward_input_plane(const Geom* g, const floating* gyp, const floating* wp,
                                floating* gxp) noexcept nogil:
    """gx plane of one input channel from its m grad_out planes gyp and filters wp."""
    cdef Py_ssize_t ih, iw, j, kh, oh, oh0, lo = 0, hi = 0, e = 0
    cdef bint s1 = (g.kH == 3 and g.kW == 3 and g.sh == 1 and g.sw == 1)
    cdef bint s2 = (g.kH == 3 and g.kW == 3 and g.sw == 2 and g.dw == 1 and g.pw % 2 == 1)
    cdef bint first
    cdef floating* gxrow
    if s1:
        # columns whose three taps all land inside the grad_out row: 0 <= iw + pw - kw*dw < OW
        lo = 2 * g.dw - g.pw if 2 * g.dw - g.pw > 0 else 0
        hi = g.OW - g.pw if g.OW - g.pw < g.W else g.W
        s1 = lo < hi
    elif s2:
        # pairs (2j, 2j + 1) reading gy[j + e] and gy[j + e + 1], all inside
        e = (g.pw - 1) // 2
        lo = -e if -e > 0 else 0
        hi = g.OW - 1 - e
        if hi > g.W // 2:
            hi = g.W // 2
        s2 = lo < hi
    for ih in range(g.H):
        gxrow = gxp + ih * g.W
        if s1:
            oh0 = ih + g.ph - 2 * g.dh        # grad_out row read by filter row 2
            if oh0 >= 0 and ih + g.ph < g.OH:
                for j in range(g.m):
                    _backward_input_row_3x3_s1(
                        gxrow, gyp + (j * g.OH + ih + g.ph) * g.OW + g.pw,
                        gyp + (j * g.OH + ih + g.ph - g.dh) * g.OW + g.pw,
                        gyp + (j * g.OH + oh0) * g.OW + g.pw,
                        wp + j * 9, lo, hi, g.dw, j == 0)
                for iw in range(lo):
                    gxrow[iw] = _backward_input_elem(g, gyp, wp, ih, iw)
                for iw in range(hi, g.W):
                    gxrow[iw] = _backward_input_elem(g, gyp, wp, ih, iw)
                continue
        elif s2:
            first = True
            for j in range(g.m):
                for kh in range(3):
                    if not _src_index(ih + g.ph - kh * g.dh, g.sh, g.OH, &oh):
                        continue
                    _backward_input_row_3x3_s2(gxrow, gyp + (j * g.OH + oh) * g.OW,
                                               wp + j * 9 + kh * 3, lo, hi, e, first)
                    first = False
            if first:
                for iw in range(2 * lo, 2 * hi):
                    gxrow[iw] = 0
            for iw in range(2 * lo):
                gxrow[iw] = _backward_input_elem(g, gyp, wp, ih, iw)
            for iw in range(2 * hi, g.W):
                gxrow[iw] = _backward_input_elem(g, gyp, wp, ih, iw)
            continue
        _backward_input_row_generic(g, gyp, wp, ih, gxrow)


# ---------------------------------------------------------------------- backward_weight

cdef inline void _dot3(floating* lanes, const floating* gy, const floating* xrow,
                       Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t s, Py_ssize_t d,
                       Py_ssize_t off) noexcept nogil:
    """lanes[kw*LANES + l] += gy[ow] * xrow[ow*s + off + kw*d] for the three taps kw of one
    filter row, ow in [lo, hi) split into LANES fixed partial sums. The sums live in a local
    array (kept in registers) while the loop runs: one load of gy serves three taps.
    """
    cdef floating a[3 * LANES]
    cdef Py_ssize_t i, l, c, nv = lo + (hi - lo) - (hi - lo) % LANES
    for l in range(3 * LANES):
        a[l] = lanes[l]
    if s == 1 and d == 1:
        for i in range(lo, nv, 8):
            for l in range(LANES):
                c = i + l + off
                a[l] += gy[i + l] * xrow[c]
                a[LANES + l] += gy[i + l] * xrow[c + 1]
                a[2 * LANES + l] += gy[i + l] * xrow[c + 2]
    else:
        for i in range(lo, nv, 8):
            for l in range(LANES):
                c = (i + l) * s + off
                a[l] += gy[i + l] * xrow[c]
                a[LANES + l] += gy[i + l] * xrow[c + d]
                a[2 * LANES + l] += gy[i + l] * xrow[c + 2 * d]
    for i in range(nv, hi):
        c = i * s + off
        a[i - nv] += gy[i] * xrow[c]
        a[LANES + i - nv] += gy[i] * xrow[c + d]
        a[2 * LANES + i - nv] += gy[i] * xrow[c + 2 * d]
    for l in range(3 * LANES):
        lanes[l] = a[l]


cdef inline void _border_taps3(double* acc, const floating* gy, const floating* xrow,
                               Py_ssize_t ow0, Py_ssize_t ow1, const Geom* g) noexcept nogil:
    """acc[kw] += gy[ow] * xrow[iw] for the taps of one filter row that land inside the row."""
    cdef Py_ssize_t ow, kw, iw
    for ow in range(ow0, ow1):
        for kw in range(3):
            iw = ow * g.sw - g.pw + kw * g.dw
            if 0 <= iw < g.W:
                acc[kw] += gy[ow] * xrow[iw]


cdef void _backward_weight_channel_3x3(const Geom* g, const floating* xp, const floating* gyp,
                                       floating* gwp) noexcept nogil:
    """3x3 filter: the nine taps accumulate together, one pass over each (n, oh) row of gy.

    Interior columns (all three taps of a filter row inside the input row) go through _dot3
    into per-image partial sums; the few border columns are added tap by tap. Partial sums
    are folded into double accumulators once per image, in a fixed order.
    """
    cdef double acc[9]
    cdef floating lanes[9 * LANES]
    cdef Py_ssize_t n, oh, ih, kh, k, lo, hi, lo2, hi2
    cdef Py_ssize_t xstep = g.C_in * g.H * g.W, gystep = g.C_out * g.OH * g.OW
    cdef const floating* xrow
    cdef const floating* gyrow
    cdef const floating* xn
    _col_range(-g.pw, g.sw, g.W, g.OW, &lo, &hi)
    _col_range(2 * g.dw - g.pw, g.sw, g.W, g.OW, &lo2, &hi2)
    lo = lo2 if lo2 > lo else lo
    hi = hi2 if hi2 < hi else hi
    if hi < lo:
        hi = lo
    for k in range(9):
        acc[k] = 0
    for n in range(g.N):
        for k in range(9 * LANES):
            lanes[k] = 0
        xn = xp + n * xstep
        for oh in range(g.OH):
            gyrow = gyp + n * gystep + oh * g.OW
            for kh in range(3):
                ih = oh * g.sh - g.ph + kh * g.dh
                if ih < 0 or ih >= g.H:
                    continue
                xrow = xn + ih * g.W
                if lo < hi:
                    _dot3(lanes + kh * 3 * LANES, gyrow, xrow, lo, hi, g.sw, g.dw, -g.pw)
                _border_taps3(acc + kh * 3, gyrow, xrow, 0, lo, g)
                _border_taps3(acc + kh * 3, gyrow, xrow, hi, g.OW, g)
        for k in range(9 * LANES):
            acc[k // LANES] += lanes[k]
    for k in range(9):
        gwp[k] = <floating>acc[k]


cdef void _backward_weight_channel(const Geom* g, const floating* xp, const floating* gyp,
                                   floating* gwp) noexcept nogil:
    """gw[co] (kH*kW taps) = sum over n (in order), oh, ow of gy[n, co] times the input value.

    xp: x[0, co // m]; gyp: gy[0, co]. Taps go in chunks of MAX_TAPS double accumulators so
    each (n, oh) row of gy is read once per chunk; each row dot product uses LANES partial
    sums in a fixed order.
    """
    cdef double acc[MAX_TAPS]
    cdef Py_ssize_t KK = g.kH * g.kW, k0, k1, k, kh, kw, kw0, kw1
    cdef Py_ssize_t n, oh, ih, lo, hi, off
    cdef Py_ssize_t xstep = g.C_in * g.H * g.W, gystep = g.C_out * g.OH * g.OW
    cdef const floating* xrow
    cdef const floating* gyrow
    k0 = 0
    while k0 < KK:
        k1 = k0 + MAX_TAPS if k0 + MAX_TAPS < KK else KK
        for k in range(k1 - k0):
            acc[k] = 0
        for n in range(g.N):
            for oh in range(g.OH):
                gyrow = gyp + n * gystep + oh * g.OW
                for kh in range(k0 // g.kW, (k1 - 1) // g.kW + 1):
                    ih = oh * g.sh - g.ph + kh * g.dh
                    if ih < 0 or ih >= g.H:
                        continue
                    xrow = xp + n * xstep + ih * g.W
                    kw0 = k0 - kh * g.kW if k0 > kh * g.kW else 0
                    kw1 = k1 - kh * g.kW if k1 - kh * g.kW < g.kW else g.kW
                    for kw in range(kw0, kw1):
                        off = kw * g.dw - g.pw
                        _col_range(off, g.sw, g.W, g.OW, &lo, &hi)
                        if lo < hi:
                            acc[kh * g.kW + kw - k0] += _dot(gyrow + lo, xrow + lo * g.sw + off,
                                                             hi - lo, g.sw)
        for k in range(k0, k1):
            gwp[k] = <floating>acc[k - k0]
        k0 = k1


# ------------------------------------------------------------------------- entry points

cdef inline void _geom(Geom* g, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t H, Py_ssize_t W,
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


def forward(const floating[:, :, :, ::1] x,          # IN  (N, C_in, H, W)
            const floating[:, :, :, ::1] weight,     # IN  (C_out, 1, kH, kW)
            const floating[::1] bias,                # IN  (C_out,) or length 0: no bias
            floating[:, :, :, ::1] out,              # OUT (N, C_out, OH, OW)
            int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
            int groups, int n_threads):
    """out[n, co] = bias[co] + (x[n, co // m] cross-correlated with weight[co, 0]).

    ``groups`` must equal C_in (it is implied by the shapes and not otherwise used).
    ``out`` is fully overwritten. Parallel over the flattened (n, c_out) output planes: each
    iteration writes only its own plane, so writes are disjoint.
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
              stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
        P = g.N * g.C_out
        if P == 0 or g.OH * g.OW == 0:
            pass
        elif g.kH * g.kW == 0 or g.H * g.W == 0:
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
                _forward_plane(&g, xp + (n * g.C_in + co // g.m) * g.H * g.W,
                               wp + co * g.kH * g.kW, bias[co] if has_bias else 0,
                               op + p * g.OH * g.OW)


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
    cdef Py_ssize_t p, n, ci, i, P
    cdef const floating* gyp
    cdef const floating* wp
    cdef floating* gxp
    with nogil:
        _geom(&g, grad_in.shape[0], grad_in.shape[1], grad_in.shape[2], grad_in.shape[3],
              grad_out.shape[1], grad_out.shape[2], grad_out.shape[3], weight.shape[2],
              weight.shape[3], stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
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
            for p in prange(P, num_threads=n_threads, schedule="static"):
                n = p // g.C_in
                ci = p % g.C_in
                _backward_input_plane(&g, gyp + (n * g.C_out + ci * g.m) * g.OH * g.OW,
                                      wp + ci * g.m * g.kH * g.kW, gxp + p * g.H * g.W)


def backward_weight(const floating[:, :, :, ::1] x,         # IN  (N, C_in, H, W)
                    const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
                    floating[:, :, :, ::1] grad_weight,     # OUT (C_out, 1, kH, kW)
                    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                    int groups, int n_threads):
    """grad_weight[co, 0, kh, kw] = sum over n, oh, ow of grad_out[n, co, oh, ow] times the
    value of x[n, co // m] that tap read.

    ``grad_weight`` is fully overwritten. Parallel over c_out: each iteration owns one filter,
    so writes are disjoint, and it loops over the batch in order, so the sum does not depend
    on the thread count.
    """
    cdef Geom g
    cdef Py_ssize_t co, i, KK
    cdef const floating* xp
    cdef const floating* gyp
    cdef floating* gwp
    with nogil:
        _geom(&g, x.shape[0], x.shape[1], x.shape[2], x.shape[3], grad_out.shape[1],
              grad_out.shape[2], grad_out.shape[3], grad_weight.shape[2],
              grad_weight.shape[3], stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
        KK = g.kH * g.kW
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
            for co in prange(g.C_out, num_threads=n_threads, schedule="static"):
                if g.kH == 3 and g.kW == 3:
                    _backward_weight_channel_3x3(&g, xp + (co // g.m) * g.H * g.W,
                                                 gyp + co * g.OH * g.OW, gwp + co * KK)
                else:
                    _backward_weight_channel(&g, xp + (co // g.m) * g.H * g.W,
                                             gyp + co * g.OH * g.OW, gwp + co * KK)
