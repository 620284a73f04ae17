# Inline helpers of src/pool2d.pyx: the pooling geometry, PyTorch's per-window loops (max
# and average, with full bounds checks) and the scalar pieces of the max row kernels.
from cython cimport floating
from libc.math cimport INFINITY
from libc.stdint cimport int64_t


ctypedef struct Geom:
    Py_ssize_t H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw


cdef inline void _geom(Geom* g, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                       Py_ssize_t dw) noexcept nogil:
    g.H, g.W, g.OH, g.OW = H, W, OH, OW
    g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw = kh, kw, sh, sw, ph, pw, dh, dw


cdef inline Py_ssize_t _first_tap(Py_ssize_t start, Py_ssize_t d) noexcept nogil:
    """The first of start, start + d, start + 2d, ... that is >= 0 (PyTorch's skip)."""
    if start < 0:
        start += ((-start + d - 1) // d) * d
    return start


cdef inline void _interior_cols(const Geom* g, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the ow whose kw taps all land inside the row, i.e.
    0 <= ow * sw - pw and ow * sw - pw + (kw - 1) * dw < W."""
    cdef Py_ssize_t a = (g.pw + g.sw - 1) // g.sw
    cdef Py_ssize_t last = g.W - 1 + g.pw - (g.kw - 1) * g.dw
    cdef Py_ssize_t b = last // g.sw + 1 if last >= 0 else 0
    lo[0] = a
    hi[0] = b if b < g.OW else g.OW
    if hi[0] < lo[0]:
        hi[0] = lo[0]


cdef inline void _max_elem(const Geom* g, const floating* xp, Py_ssize_t oh, Py_ssize_t ow,
                           floating* out, int64_t* idx) noexcept nogil:
    """One max window with full bounds checks: PyTorch's loop, element for element."""
    cdef Py_ssize_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw
    cdef Py_ssize_t h1 = h0 + (g.kh - 1) * g.dh + 1, w1 = w0 + (g.kw - 1) * g.dw + 1
    cdef Py_ssize_t ih, iw
    cdef floating m = -INFINITY, v
    cdef int64_t mi
    h1 = h1 if h1 < g.H else g.H
    w1 = w1 if w1 < g.W else g.W
    h0 = _first_tap(h0, g.dh)
    w0 = _first_tap(w0, g.dw)
    mi = h0 * g.W + w0
    ih = h0
    while ih < h1:
        iw = w0
        while iw < w1:
            v = xp[ih * g.W + iw]
            if (v > m) | (v != v):
                m = v
                mi = ih * g.W + iw
            iw += g.dw
        ih += g.dh
    out[0] = m
    idx[0] = mi


# The row folds (and the float32 SIMD row kernels of _pool_max.h) run on window rows without
# NaN: the SIMD kernels detect a NaN as they go, the Cython loop checks with _has_nan first,
# and a row reading a NaN takes the per-window loop. Then "v > best or v is NaN" is just
# "v > best". A window is folded row by row, each row left to right with strict >, so the
# first maximum in row-major order wins, exactly as in the per-window loop. Only the window
# rows inside the input are passed (a padded row holds -inf and never wins), so border rows
# use them too. The tap offset k is relative to the window's first valid row and column.

cdef inline void _fold2(const floating* r, Py_ssize_t c, int rel, floating* m,
                        int* k) noexcept nogil:
    """Fold the taps r[c], r[c + 1] (offsets rel, rel + 1) of one window row into (m, k)."""
    cdef floating h = r[c], v = r[c + 1]
    cdef int hk = rel
    if v > h:
        h, hk = v, rel + 1
    if h > m[0]:
        m[0], k[0] = h, hk


cdef inline void _fold3(const floating* r, Py_ssize_t c, int rel, floating* m,
                        int* k) noexcept nogil:
    """Fold the taps r[c], r[c + 1], r[c + 2] (offsets rel .. rel + 2) into (m, k)."""
    cdef floating h = r[c], v = r[c + 1]
    cdef int hk = rel
    if v > h:
        h, hk = v, rel + 1
    v = r[c + 2]
    if v > h:
        h, hk = v, rel + 2
    if h > m[0]:
        m[0], k[0] = h, hk


cdef inline bint _has_nan(const floating* xp, Py_ssize_t n) noexcept nogil:
    """Whether any of n contiguous values is NaN (an integer OR: vectorised, no early exit)."""
    cdef Py_ssize_t i
    cdef int any_nan = 0
    for i in range(n):
        any_nan = any_nan | (xp[i] != xp[i])
    return any_nan != 0


cdef inline void _avg_window(const Geom* g, Py_ssize_t oh, Py_ssize_t ow, bint include_pad,
                             Py_ssize_t divisor_override, Py_ssize_t* h0, Py_ssize_t* h1,
                             Py_ssize_t* w0, Py_ssize_t* w1, Py_ssize_t* div) noexcept nogil:
    """Clipped window [h0, h1) x [w0, w1) of output (oh, ow) and its divisor (PyTorch's)."""
    cdef Py_ssize_t a = oh * g.sh - g.ph, c = ow * g.sw - g.pw
    cdef Py_ssize_t b = a + g.kh, d = c + g.kw
    # the padded input ends at H + ph: a ceil_mode window beyond it does not count that part
    if b > g.H + g.ph:
        b = g.H + g.ph
    if d > g.W + g.pw:
        d = g.W + g.pw
    div[0] = (b - a) * (d - c)
    h0[0] = a if a > 0 else 0
    w0[0] = c if c > 0 else 0
    h1[0] = b if b < g.H else g.H
    w1[0] = d if d < g.W else g.W
    if divisor_override > 0:
        div[0] = divisor_override
    elif not include_pad:
        div[0] = (h1[0] - h0[0]) * (w1[0] - w0[0])


cdef inline floating _avg_elem(const Geom* g, const floating* xp, Py_ssize_t oh,
                               Py_ssize_t ow, bint include_pad,
                               Py_ssize_t divisor_override) noexcept nogil:
    cdef Py_ssize_t h0, h1, w0, w1, div, ih, iw
    cdef floating s = 0
    _avg_window(g, oh, ow, include_pad, divisor_override, &h0, &h1, &w0, &w1, &div)
    if h0 >= h1 or w0 >= w1:
        return 0
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            s = s + xp[ih * g.W + iw]
    return s / div
