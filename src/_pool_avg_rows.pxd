"""Average pooling of one plane by rows, for the geometries without a dedicated kernel
(any kernel and stride; the 2x2 stride-2 and tiled cases have their own): instead of a
bounds-checked loop per window, each output row works on a row buffer.

* forward: buf[iw] = the sum over the row's window rows (clipped to the input) of x[ih, iw],
  then each output is the sum of buf over its clipped columns, / its divisor;
* backward: buf[iw] = the sum of gy[oh, ow] / divisor over the row's windows holding column
  iw, then buf is added to each of the row's window rows.

The divisor depends on the window's clipping, so it is the same for every column window that
lies inside the row ([lo, hi)): one _avg_window call per row for those, one per window at the
borders. The sums run in another order than PyTorch's row-by-row one (rounding differs in the
last bits); the windows and divisors are PyTorch's. ``buf`` holds W values.
"""
from cython cimport floating
from libc.string cimport memset

from _pool2d_helpers cimport Geom, _interior_cols, _avg_window


cdef inline void _window_rows(const Geom* g, Py_ssize_t oh, Py_ssize_t* h0,
                              Py_ssize_t* h1) noexcept nogil:
    """[h0, h1): the input rows of output row oh's windows, clipped to the input."""
    cdef Py_ssize_t a = oh * g.sh - g.ph
    h0[0] = a if a > 0 else 0
    h1[0] = a + g.kh if a + g.kh < g.H else g.H


cdef inline Py_ssize_t _window_cols(const Geom* g, Py_ssize_t oh, Py_ssize_t ow,
                                    Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t rdiv,
                                    bint include_pad, Py_ssize_t divisor_override,
                                    Py_ssize_t* w0, Py_ssize_t* w1) noexcept nogil:
    """[w0, w1): window (oh, ow)'s clipped columns; returns its divisor (rdiv, the row's,
    for the windows inside the row, ow in [lo, hi))."""
    cdef Py_ssize_t d0, d1, div
    if lo <= ow < hi:
        w0[0] = ow * g.sw - g.pw
        w1[0] = w0[0] + g.kw
        return rdiv
    _avg_window(g, oh, ow, include_pad, divisor_override, &d0, &d1, w0, w1, &div)
    return div


cdef inline void _avg_plane_rows(const Geom* g, const floating* xp, floating* op,
                                 bint include_pad, Py_ssize_t divisor_override,
                                 floating* buf) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1, c, div, lo = 0, hi = 0
    cdef Py_ssize_t d0, d1, e0, e1, rdiv = 1
    cdef floating s
    cdef const floating* xr
    _interior_cols(g, &lo, &hi)
    for oh in range(g.OH):
        _window_rows(g, oh, &h0, &h1)
        memset(buf, 0, g.W * sizeof(floating))
        for ih in range(h0, h1):
            xr = xp + ih * g.W
            for iw in range(g.W):
                buf[iw] += xr[iw]
        if lo < hi:
            _avg_window(g, oh, lo, include_pad, divisor_override, &d0, &d1, &e0, &e1, &rdiv)
        for ow in range(g.OW):
            div = _window_cols(g, oh, ow, lo, hi, rdiv, include_pad, divisor_override, &w0,
                               &w1)
            s = 0
            for c in range(w0, w1):
                s = s + buf[c]
            op[oh * g.OW + ow] = s / div


cdef inline void _avg_backward_plane_rows(const Geom* g, const floating* gyp, floating* gxp,
                                          bint include_pad, Py_ssize_t divisor_override,
                                          floating* buf) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1, c, div, lo = 0, hi = 0
    cdef Py_ssize_t d0, d1, e0, e1, rdiv = 1
    cdef floating v
    cdef floating* gr
    _interior_cols(g, &lo, &hi)
    memset(gxp, 0, g.H * g.W * sizeof(floating))
    for oh in range(g.OH):
        _window_rows(g, oh, &h0, &h1)
        if h0 >= h1:
            continue
        memset(buf, 0, g.W * sizeof(floating))
        if lo < hi:
            _avg_window(g, oh, lo, include_pad, divisor_override, &d0, &d1, &e0, &e1, &rdiv)
        for ow in range(g.OW):
            div = _window_cols(g, oh, ow, lo, hi, rdiv, include_pad, divisor_override, &w0,
                               &w1)
            v = gyp[oh * g.OW + ow] / div
            for c in range(w0, w1):
                buf[c] += v
        for ih in range(h0, h1):
            gr = gxp + ih * g.W
            for iw in range(g.W):
                gr[iw] += buf[iw]
