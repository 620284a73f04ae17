"""2-D pooling over NCHW planes: max (with argmax indices), average, adaptive average and
adaptive max, forward and backward. Lp pooling needs no kernel of its own: it is average
pooling of x**p (see ``fastconv.functional.pooling.lp_pool2d``, as PyTorch).

Every window is PyTorch's, element for element:

* max: visits the window row by row and keeps ``v`` when ``v > best or v is NaN``, so the
  FIRST maximum wins ties and the LAST NaN of a window wins (NaN propagates); ``indices``
  are flat offsets ``ih * W + iw`` into the input plane (int64). A window that holds no input
  element (possible only with dilation) gives -inf and PyTorch's index of its first tap;
  backward ignores indices outside the plane.
* average: the divisor counts padded positions when ``count_include_pad`` but never the
  positions beyond the padded input that a ceil_mode window hangs over; ``divisor_override``
  > 0 replaces it.
* adaptive: the window of output ``i`` along an axis of size ``n -> o`` is
  ``[floor(i * n / o), ceil((i + 1) * n / o))``.

Level of parallelism: one OpenMP ``prange`` per pass over the flattened (n, c) planes. A
plane's outputs (forward) or input gradient (backward: the scatter through the indices and
the window adds stay inside the plane) belong to one iteration, so writes are disjoint, and
each element is computed in an order that does not depend on the thread count: results are
bit-identical for any ``n_threads``. Nothing inside an iteration is parallel.

The hot shapes get row kernels: max 2x2 and 3x3 (stride 1 or 2, dilation 1 along W) over
the window rows inside the input, 4 windows at a time with SSE2 for float32 (see
``fc_max_rows_f32``); average 2x2 stride 2 as one vectorised loop; the global average as a
sum in fixed partial lanes. Borders and every other geometry go through the per-window
loops, which check bounds.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset
from libc.math cimport INFINITY



ctypedef struct Geom:
    Py_ssize_t H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw


cdef enum:
    LANES = 8   # partial sums of the global average (fixed, so the order is fixed)


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


# ----------------------------------------------------------------------------- max forward

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


# The row kernels below run on window rows without NaN (checked by _has_nan just before use,
# which also brings the row into cache; output rows reading a NaN take the per-window loop):
# then "v > best or v is NaN" is just "v > best". A window is folded row by row, each row
# left to right with strict >, so the first maximum in row-major order wins, exactly as in
# the per-window loop. Only the window rows inside the
# input are passed (a padded row holds -inf and never wins), so border rows use them too.
# The tap offset k is relative to the window's first valid row and column, an int.

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


# SSE2 row kernel for float32 max pooling at strides 1 and 2 (2x2 and 3x3 windows).
# With GCC's default -ftrapping-math a float comparison feeding a select stays a branch, so
# the Cython loops are not vectorised; this does by hand what the vectoriser would: 4 windows
# at a time (stride 2: even/odd columns split with shuffles), maxps for the value and
# compare-and-select for the tap offset, reading only the windows' own taps. A row shorter
# than 4 windows, or no SSE2, returns lo and the Cython loop does the row.
cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define FC_POOL_SSE2 1
    static inline __m128i fc_sel_i(__m128 u, __m128i a, __m128i b) {  /* u ? a : b */
        __m128i m = _mm_castps_si128(u);
        return _mm_or_si128(_mm_and_si128(m, a), _mm_andnot_si128(m, b));
    }
    /* fold taps r[2l + j], j < kw (2 or 3), of the windows l = 0..3 of one row into (m, k);
       rel = offset of tap 0. Reads r[0] .. r[7] (kw 2) or r[8] (kw 3). */
    static inline void fc_fold_row_s2(const float *r, int kw, int rel, __m128 *m,
                                      __m128i *k) {
        __m128 a = _mm_loadu_ps(r), b = _mm_loadu_ps(r + 4), u, v;
        __m128 h = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));     /* r[0, 2, 4, 6] */
        __m128i hk = _mm_set1_epi32(rel);
        v = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));            /* r[1, 3, 5, 7] */
        u = _mm_cmpgt_ps(v, h);
        hk = fc_sel_i(u, _mm_set1_epi32(rel + 1), hk);
        h = _mm_max_ps(v, h);
        if (kw == 3) {                                                 /* r[2, 4, 6, 8] */
            v = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
            v = _mm_move_ss(v, _mm_load_ss(r + 8));                    /* r[8, 2, 4, 6] */
            v = _mm_shuffle_ps(v, v, _MM_SHUFFLE(0, 3, 2, 1));
            u = _mm_cmpgt_ps(v, h);
            hk = fc_sel_i(u, _mm_set1_epi32(rel + 2), hk);
            h = _mm_max_ps(v, h);
        }
        u = _mm_cmpgt_ps(h, *m);
        *k = fc_sel_i(u, hk, *k);
        *m = _mm_max_ps(h, *m);
    }
    /* the same at stride 1: windows l = 0..3 start at r[l]; reads r[0] .. r[kw + 2] */
    static inline void fc_fold_row_s1(const float *r, int kw, int rel, __m128 *m,
                                      __m128i *k) {
        __m128 h = _mm_loadu_ps(r), v = _mm_loadu_ps(r + 1), u;
        __m128i hk = _mm_set1_epi32(rel);
        u = _mm_cmpgt_ps(v, h);
        hk = fc_sel_i(u, _mm_set1_epi32(rel + 1), hk);
        h = _mm_max_ps(v, h);
        if (kw == 3) {
            v = _mm_loadu_ps(r + 2);
            u = _mm_cmpgt_ps(v, h);
            hk = fc_sel_i(u, _mm_set1_epi32(rel + 2), hk);
            h = _mm_max_ps(v, h);
        }
        u = _mm_cmpgt_ps(h, *m);
        *k = fc_sel_i(u, hk, *k);
        *m = _mm_max_ps(h, *m);
    }
    #else
    #define FC_POOL_SSE2 0
    #endif

    /* Windows ow in [lo, hi) over the nr valid rows r[i] (offset rel[i] from r[0]); window
       ow starts at column s*ow + off (s = 1 or 2), all its kw taps inside the row. Returns
       the first ow not done: hi, or lo for fewer than 4 windows or without SSE2. */
    static Py_ssize_t fc_max_rows_f32(const float **r, const int *rel, int nr, int kw,
                                      int s, float *om, int64_t *oi, Py_ssize_t lo,
                                      Py_ssize_t hi, Py_ssize_t off, Py_ssize_t base) {
    #if FC_POOL_SSE2
        Py_ssize_t ow = lo, c;
        if (hi - lo < 4)
            return lo;
        for (;;) {
            __m128 m = _mm_set1_ps(-INFINITY);
            __m128i k = _mm_setzero_si128(), z = _mm_setzero_si128(), col, b;
            int i;
            if (ow + 4 > hi)
                ow = hi - 4;       /* last group overlaps the previous one: same values */
            c = s * ow + off;
            if (s == 2) {
                for (i = 0; i < nr; i++)
                    fc_fold_row_s2(r[i] + c, kw, rel[i], &m, &k);
                col = _mm_add_epi32(k, _mm_setr_epi32(0, 2, 4, 6));
            } else {
                for (i = 0; i < nr; i++)
                    fc_fold_row_s1(r[i] + c, kw, rel[i], &m, &k);
                col = _mm_add_epi32(k, _mm_setr_epi32(0, 1, 2, 3));
            }
            /* flat index of window ow + l: base + c + s*l + k[l] */
            b = _mm_set1_epi64x((long long)(base + c));
            _mm_storeu_ps(om + ow, m);
            _mm_storeu_si128((__m128i *)(oi + ow), _mm_add_epi64(b, _mm_unpacklo_epi32(col, z)));
            _mm_storeu_si128((__m128i *)(oi + ow + 2),
                             _mm_add_epi64(b, _mm_unpackhi_epi32(col, z)));
            ow += 4;
            if (ow >= hi)
                return hi;
        }
    #else
        return lo;
    #endif
    }
    """
    Py_ssize_t fc_max_rows_f32(const float** r, const int* rel, int nr, int kw, int s,
                               float* om, int64_t* oi, Py_ssize_t lo, Py_ssize_t hi,
                               Py_ssize_t off, Py_ssize_t base) noexcept nogil


cdef void _max_row(const Geom* g, const floating** rows, const int* rel, int nr,
                   floating* om, int64_t* oi, Py_ssize_t lo, Py_ssize_t hi,
                   Py_ssize_t base) noexcept nogil:
    """Windows ow in [lo, hi) of a 2x2 or 3x3 (dilation 1 along W) pooling, all columns
    inside, over the nr valid window rows."""
    cdef Py_ssize_t ow, c, s = g.sw, off = -g.pw
    cdef floating m
    cdef int k, i
    if floating is float:
        if s == 1 or s == 2:
            lo = fc_max_rows_f32(rows, rel, nr, <int>g.kw, <int>s, om, oi, lo, hi, off, base)
    for ow in range(lo, hi):
        c = s * ow + off
        m = -INFINITY
        k = 0
        for i in range(nr):
            if g.kw == 3:
                _fold3(rows[i], c, rel[i], &m, &k)
            else:
                _fold2(rows[i], c, rel[i], &m, &k)
        om[ow] = m
        oi[ow] = base + c + k


cdef bint _has_nan(const floating* xp, Py_ssize_t n) noexcept nogil:
    """Whether any of n contiguous values is NaN (an integer OR: vectorised, no early exit)."""
    cdef Py_ssize_t i
    cdef int any_nan = 0
    for i in range(n):
        any_nan = any_nan | (xp[i] != xp[i])
    return any_nan != 0


cdef void _max_plane(const Geom* g, const floating* xp, floating* op,
                     int64_t* ip) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, first, lo = 0, hi = 0
    cdef floating* orow
    cdef int64_t* irow
    cdef const floating* rows[3]
    cdef int rel[3]
    cdef int nr, i
    # row kernels: 2x2 or 3x3 windows, dilation 1 along W, row offsets that fit an int
    cdef bint fast = ((g.kh == 2 and g.kw == 2 or g.kh == 3 and g.kw == 3) and g.dw == 1
                      and 2 * g.dh * g.W < (1 << 30))
    if fast:
        _interior_cols(g, &lo, &hi)
        fast = lo < hi
    for oh in range(g.OH):
        orow = op + oh * g.OW
        irow = ip + oh * g.OW
        nr = 0
        first = 0
        if fast:
            for i in range(g.kh):
                ih = oh * g.sh - g.ph + i * g.dh
                if 0 <= ih < g.H:
                    if _has_nan(xp + ih * g.W, g.W):
                        nr = 0      # the per-window loop, which propagates NaN
                        break
                    if nr == 0:
                        first = ih
                    rows[nr] = xp + ih * g.W
                    rel[nr] = <int>((ih - first) * g.W)
                    nr += 1
        if nr > 0:
            _max_row(g, rows, rel, nr, orow, irow, lo, hi, first * g.W)
            for ow in range(lo):
                _max_elem(g, xp, oh, ow, orow + ow, irow + ow)
            for ow in range(hi, g.OW):
                _max_elem(g, xp, oh, ow, orow + ow, irow + ow)
        else:
            for ow in range(g.OW):
                _max_elem(g, xp, oh, ow, orow + ow, irow + ow)


cdef void _max_backward_plane(const floating* gyp, const int64_t* ip, floating* gxp,
                              Py_ssize_t HW, Py_ssize_t OHW) noexcept nogil:
    cdef Py_ssize_t j
    cdef int64_t i
    memset(gxp, 0, HW * sizeof(floating))
    for j in range(OHW):
        i = ip[j]
        if <size_t>i < <size_t>HW:      # also false for negative i
            gxp[i] += gyp[j]


def max_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                floating[:, :, :, ::1] out,       # OUT (N, C, OH, OW)
                int64_t[:, :, :, ::1] indices,    # OUT (N, C, OH, OW)
                int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                int n_threads):
    """out = max over each window, indices = flat ``ih * W + iw`` of that maximum.

    ``out`` and ``indices`` are fully overwritten. Parallel over the N*C planes: each
    iteration writes only its own output and index planes.
    """
    cdef Geom g
    cdef Py_ssize_t p, P = x.shape[0] * x.shape[1], HW, OHW
    cdef const floating* xp
    cdef floating* op
    cdef int64_t* ip
    _geom(&g, x.shape[2], x.shape[3], out.shape[2], out.shape[3], kh, kw, sh, sw, ph, pw,
          dh, dw)
    HW, OHW = g.H * g.W, g.OH * g.OW
    if P == 0 or OHW == 0:
        return
    with nogil:
        xp, op, ip = &x[0, 0, 0, 0], &out[0, 0, 0, 0], &indices[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _max_plane(&g, xp + p * HW, op + p * OHW, ip + p * OHW)


def max_backward(const floating[:, :, :, ::1] grad_out,  # IN  (N, C, OH, OW)
                 const int64_t[:, :, :, ::1] indices,    # IN  (N, C, OH, OW)
                 floating[:, :, :, ::1] grad_in,         # OUT (N, C, H, W)
                 int n_threads):
    """grad_in[n, c].flat[indices[n, c, oh, ow]] += grad_out[n, c, oh, ow]; 0 elsewhere.

    Serves every pooling that saved argmax indices (max, adaptive max). ``grad_in`` is fully
    overwritten. Parallel over the N*C planes: the indices of a plane point into that plane,
    so each iteration writes only its own grad_in plane.
    """
    cdef Py_ssize_t p, P = grad_in.shape[0] * grad_in.shape[1]
    cdef Py_ssize_t HW = grad_in.shape[2] * grad_in.shape[3]
    cdef Py_ssize_t OHW = grad_out.shape[2] * grad_out.shape[3]
    cdef const floating* gyp
    cdef const int64_t* ip
    cdef floating* gxp
    if P == 0 or HW == 0:
        return
    if OHW == 0:
        grad_in[...] = 0
        return
    with nogil:
        gyp, ip, gxp = &grad_out[0, 0, 0, 0], &indices[0, 0, 0, 0], &grad_in[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _max_backward_plane(gyp + p * OHW, ip + p * OHW, gxp + p * HW, HW, OHW)


# ------------------------------------------------------------------------------ average

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


cdef void _avg_row_2x2_s2(const floating* r0, const floating* r1, floating* orow,
                          Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t off,
                          floating div) noexcept nogil:
    """2x2 windows at stride 2, all taps inside; summed in PyTorch's order (row by row)."""
    cdef Py_ssize_t ow, c
    for ow in range(lo, hi):
        c = 2 * ow + off
        orow[ow] = (r0[c] + r0[c + 1] + r1[c] + r1[c + 1]) / div


cdef void _avg_plane(const Geom* g, const floating* xp, floating* op, bint include_pad,
                     Py_ssize_t divisor_override) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, lo = 0, hi = 0, h0, h1, w0, w1, div
    cdef floating* orow
    cdef bint fast = g.kh == 2 and g.kw == 2 and g.sh == 2 and g.sw == 2
    if fast:
        _interior_cols(g, &lo, &hi)
        fast = lo < hi
    for oh in range(g.OH):
        orow = op + oh * g.OW
        ih = oh * 2 - g.ph
        if fast and ih >= 0 and ih + 1 < g.H:
            # an interior window is whole: its divisor is 4 unless overridden
            _avg_window(g, oh, lo, include_pad, divisor_override, &h0, &h1, &w0, &w1, &div)
            _avg_row_2x2_s2(xp + ih * g.W, xp + (ih + 1) * g.W, orow, lo, hi, -g.pw,
                            <floating>div)
            for ow in range(lo):
                orow[ow] = _avg_elem(g, xp, oh, ow, include_pad, divisor_override)
            for ow in range(hi, g.OW):
                orow[ow] = _avg_elem(g, xp, oh, ow, include_pad, divisor_override)
        else:
            for ow in range(g.OW):
                orow[ow] = _avg_elem(g, xp, oh, ow, include_pad, divisor_override)


cdef void _avg_backward_plane(const Geom* g, const floating* gyp, floating* gxp,
                              bint include_pad, Py_ssize_t divisor_override) noexcept nogil:
    """Each output's gradient / divisor added to its clipped window."""
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1, div
    cdef floating v
    cdef floating* gxrow
    cdef bint tiled = (g.kh == g.sh and g.kw == g.sw and g.ph == 0 and g.pw == 0
                       and g.OH * g.sh <= g.H and g.OW * g.sw <= g.W)
    if tiled:
        # windows tile the top-left OH*kh x OW*kw block without overlap or clipping: write
        # each gradient once and zero the uncovered bottom rows and right columns
        for oh in range(g.OH):
            _avg_window(g, oh, 0, include_pad, divisor_override, &h0, &h1, &w0, &w1, &div)
            for ih in range(oh * g.sh, oh * g.sh + g.kh):
                gxrow = gxp + ih * g.W
                if g.kw == 2:
                    for ow in range(g.OW):
                        v = gyp[oh * g.OW + ow] / div
                        gxrow[2 * ow] = v
                        gxrow[2 * ow + 1] = v
                else:
                    for ow in range(g.OW):
                        v = gyp[oh * g.OW + ow] / div
                        for iw in range(ow * g.kw, ow * g.kw + g.kw):
                            gxrow[iw] = v
                for iw in range(g.OW * g.kw, g.W):
                    gxrow[iw] = 0
        if g.OH * g.kh < g.H:
            memset(gxp + g.OH * g.kh * g.W, 0, (g.H - g.OH * g.kh) * g.W * sizeof(floating))
        return
    memset(gxp, 0, g.H * g.W * sizeof(floating))
    for oh in range(g.OH):
        for ow in range(g.OW):
            _avg_window(g, oh, ow, include_pad, divisor_override, &h0, &h1, &w0, &w1, &div)
            if h0 >= h1 or w0 >= w1:
                continue
            v = gyp[oh * g.OW + ow] / div
            for ih in range(h0, h1):
                gxrow = gxp + ih * g.W
                for iw in range(w0, w1):
                    gxrow[iw] += v


def avg_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                floating[:, :, :, ::1] out,       # OUT (N, C, OH, OW)
                int kh, int kw, int sh, int sw, int ph, int pw, bint count_include_pad,
                Py_ssize_t divisor_override, int n_threads):
    """out = sum over each (clipped) window / divisor; ``divisor_override`` <= 0 means none.

    ``out`` is fully overwritten. Parallel over the N*C planes (disjoint output planes).
    """
    cdef Geom g
    cdef Py_ssize_t p, P = x.shape[0] * x.shape[1], HW, OHW
    cdef const floating* xp
    cdef floating* op
    _geom(&g, x.shape[2], x.shape[3], out.shape[2], out.shape[3], kh, kw, sh, sw, ph, pw,
          1, 1)
    HW, OHW = g.H * g.W, g.OH * g.OW
    if P == 0 or OHW == 0:
        return
    with nogil:
        xp, op = &x[0, 0, 0, 0], &out[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _avg_plane(&g, xp + p * HW, op + p * OHW, count_include_pad, divisor_override)


def avg_backward(const floating[:, :, :, ::1] grad_out,  # IN  (N, C, OH, OW)
                 floating[:, :, :, ::1] grad_in,         # OUT (N, C, H, W)
                 int kh, int kw, int sh, int sw, int ph, int pw, bint count_include_pad,
                 Py_ssize_t divisor_override, int n_threads):
    """grad_in = the adjoint of avg_forward applied to grad_out.

    ``grad_in`` is fully overwritten. Parallel over the N*C planes: an output's window lies
    in its own plane, so each iteration writes only its own grad_in plane.
    """
    cdef Geom g
    cdef Py_ssize_t p, P = grad_in.shape[0] * grad_in.shape[1], HW, OHW
    cdef const floating* gyp
    cdef floating* gxp
    _geom(&g, grad_in.shape[2], grad_in.shape[3], grad_out.shape[2], grad_out.shape[3], kh,
          kw, sh, sw, ph, pw, 1, 1)
    HW, OHW = g.H * g.W, g.OH * g.OW
    if P == 0 or HW == 0:
        return
    if OHW == 0:
        grad_in[...] = 0
        return
    with nogil:
        gyp, gxp = &grad_out[0, 0, 0, 0], &grad_in[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _avg_backward_plane(&g, gyp + p * OHW, gxp + p * HW, count_include_pad,
                                divisor_override)


# ----------------------------------------------------------------------------- adaptive

cdef inline Py_ssize_t _astart(Py_ssize_t i, Py_ssize_t n, Py_ssize_t o) noexcept nogil:
    return (i * n) // o


cdef inline Py_ssize_t _aend(Py_ssize_t i, Py_ssize_t n, Py_ssize_t o) noexcept nogil:
    return ((i + 1) * n + o - 1) // o


cdef floating _plane_sum(const floating* xp, Py_ssize_t n) noexcept nogil:
    """Sum of n contiguous values in LANES fixed partial sums (vectorisable, fixed order)."""
    cdef floating lane[LANES]
    cdef Py_ssize_t i, l, nv = n - n % LANES
    cdef floating s = 0
    for l in range(LANES):
        lane[l] = 0
    for i in range(0, nv, 8):      # 8 == LANES (a literal step keeps this a C loop)
        for l in range(LANES):
            lane[l] += xp[i + l]
    for i in range(nv, n):
        lane[i - nv] += xp[i]
    for l in range(LANES):
        s += lane[l]
    return s


cdef void _adaptive_avg_plane(const floating* xp, floating* op, Py_ssize_t H, Py_ssize_t W,
                              Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, ih, iw
    cdef floating s
    if OH == 1 and OW == 1:
        op[0] = _plane_sum(xp, H * W) / H / W
        return
    for oh in range(OH):
        h0, h1 = _astart(oh, H, OH), _aend(oh, H, OH)
        for ow in range(OW):
            w0, w1 = _astart(ow, W, OW), _aend(ow, W, OW)
            s = 0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    s = s + xp[ih * W + iw]
            op[oh * OW + ow] = s / (h1 - h0) / (w1 - w0)


cdef void _adaptive_avg_backward_plane(const floating* gyp, floating* gxp, Py_ssize_t H,
                                       Py_ssize_t W, Py_ssize_t OH,
                                       Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, ih, iw
    cdef floating v
    if OH == 1 and OW == 1:
        v = gyp[0] / H / W
        for iw in range(H * W):
            gxp[iw] = v
        return
    memset(gxp, 0, H * W * sizeof(floating))
    for oh in range(OH):
        h0, h1 = _astart(oh, H, OH), _aend(oh, H, OH)
        for ow in range(OW):
            w0, w1 = _astart(ow, W, OW), _aend(ow, W, OW)
            v = gyp[oh * OW + ow] / (h1 - h0) / (w1 - w0)
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    gxp[ih * W + iw] += v


cdef void _adaptive_max_plane(const floating* xp, floating* op, int64_t* ip, Py_ssize_t H,
                              Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, ih, iw
    cdef floating m, v
    cdef int64_t mi
    for oh in range(OH):
        h0, h1 = _astart(oh, H, OH), _aend(oh, H, OH)
        for ow in range(OW):
            w0, w1 = _astart(ow, W, OW), _aend(ow, W, OW)
            m = -INFINITY
            mi = h0 * W + w0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    v = xp[ih * W + iw]
                    if (v > m) | (v != v):
                        m = v
                        mi = ih * W + iw
            op[oh * OW + ow] = m
            ip[oh * OW + ow] = mi


def adaptive_avg_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                         floating[:, :, :, ::1] out,       # OUT (N, C, OH, OW)
                         int n_threads):
    """out = mean over each adaptive window (OH, OW taken from ``out``); (1, 1) is the
    global average. ``out`` is fully overwritten. Parallel over the N*C planes (disjoint
    output planes)."""
    cdef Py_ssize_t p, P = x.shape[0] * x.shape[1]
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3], OH = out.shape[2], OW = out.shape[3]
    cdef const floating* xp
    cdef floating* op
    if P == 0 or OH * OW == 0:
        return
    with nogil:
        xp, op = &x[0, 0, 0, 0], &out[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _adaptive_avg_plane(xp + p * H * W, op + p * OH * OW, H, W, OH, OW)


def adaptive_avg_backward(const floating[:, :, :, ::1] grad_out,  # IN  (N, C, OH, OW)
                          floating[:, :, :, ::1] grad_in,         # OUT (N, C, H, W)
                          int n_threads):
    """grad_in = the adjoint of adaptive_avg_forward applied to grad_out. ``grad_in`` is
    fully overwritten. Parallel over the N*C planes: windows stay inside their plane."""
    cdef Py_ssize_t p, P = grad_in.shape[0] * grad_in.shape[1]
    cdef Py_ssize_t H = grad_in.shape[2], W = grad_in.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef const floating* gyp
    cdef floating* gxp
    if P == 0 or H * W == 0:
        return
    if OH * OW == 0:
        grad_in[...] = 0
        return
    with nogil:
        gyp, gxp = &grad_out[0, 0, 0, 0], &grad_in[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _adaptive_avg_backward_plane(gyp + p * OH * OW, gxp + p * H * W, H, W, OH, OW)


def adaptive_max_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                         floating[:, :, :, ::1] out,       # OUT (N, C, OH, OW)
                         int64_t[:, :, :, ::1] indices,    # OUT (N, C, OH, OW)
                         int n_threads):
    """out = max over each adaptive window, indices = flat ``ih * W + iw`` of it (first
    maximum wins, NaN propagates; backward is :func:`max_backward`). ``out`` and
    ``indices`` are fully overwritten. Parallel over the N*C planes (disjoint outputs)."""
    cdef Py_ssize_t p, P = x.shape[0] * x.shape[1]
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3], OH = out.shape[2], OW = out.shape[3]
    cdef const floating* xp
    cdef floating* op
    cdef int64_t* ip
    if P == 0 or OH * OW == 0:
        return
    with nogil:
        xp, op, ip = &x[0, 0, 0, 0], &out[0, 0, 0, 0], &indices[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _adaptive_max_plane(xp + p * H * W, op + p * OH * OW, ip + p * OH * OW, H, W,
                                OH, OW)
