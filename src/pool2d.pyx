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
the window rows inside the input, for float32 16, 8 or 4 windows at a time with AVX-512,
AVX2 or SSE2 picked at run time (``src/_pool_max.h``), which also detect NaN on the fly;
average 2x2 stride 2 as one vectorised loop; the global average as a sum in fixed partial
lanes. Borders and every other geometry go through the per-window loops, which check bounds
(``src/_pool2d_helpers.pxd``).

With AVX-512 the float32 hot shapes run whole planes in C, since on small planes (32x32 and
less) the per-row calls cost more than the SIMD work: max pooling (``_pool_max.h``), 2x2
stride-2 and global average pooling (``_pool_avg.h``), and max-pool backward
(``_pool_max_bwd.h``: 2x2 stride-2 windows write each grad_in row once instead of zeroing and
scattering; other windows scatter). They prefetch the next plane as they go: a plane is a
page or a few, and the hardware prefetchers stop at page boundaries.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset
from libc.math cimport INFINITY

from _pool2d_helpers cimport (Geom, _geom, _interior_cols, _max_elem, _fold2, _fold3,
                              _has_nan, _avg_window, _avg_elem)
from scratch cimport fc_scratch
from _pool_avg_rows cimport _avg_plane_rows, _avg_backward_plane_rows


cdef enum:
    LANES = 8   # partial sums of the global average (fixed, so the order is fixed)
    MEAN_BLOCK = 64   # planes per call of the float32 global average

cdef extern from "_pool_max_bwd.h":
    int fc_max2_backward_plane_f32(const float* gyp, const int64_t* ip, Py_ssize_t OH,
                                   Py_ssize_t OW, Py_ssize_t H, Py_ssize_t W,
                                   float* gxp) noexcept nogil
    void fc_max_backward_plane_f32(const float* gyp, const int64_t* ip, Py_ssize_t HW,
                                   Py_ssize_t OHW, float* gxp) noexcept nogil

cdef extern from "_pool_avg.h":
    int fc_avg2_plane_f32(const float* xp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OW, int ph,
                          int pw, Py_ssize_t r_lo, Py_ssize_t r_hi, Py_ssize_t lo,
                          Py_ssize_t hi, float div, float* op) noexcept nogil
    int fc_avg2_backward_plane_f32(const float* gyp, Py_ssize_t OH, Py_ssize_t OW,
                                   Py_ssize_t W, float div, float* gxp) noexcept nogil
    void fc_plane_means_f32(const float* x, Py_ssize_t P, Py_ssize_t n, float* out, float H,
                            float W) noexcept nogil
    void fc_plane_fill_f32(const float* gy, Py_ssize_t P, Py_ssize_t n, float* gx, float H,
                           float W) noexcept nogil


# ----------------------------------------------------------------------------- max forward

# Float32 planes of 2x2 / 3x3 windows with run-time ISA dispatch (AVX-512, AVX2, SSE2;
# contract in the header); the Cython loops below do everything else (float64, the
# portable path, other windows, rows of fewer than 4 interior windows).
cdef extern from "_pool_max.h":
    int fc_max_plane_f32(const float* xp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                         Py_ssize_t OW, int k, int sh, int s, int ph, int pw, int dh,
                         Py_ssize_t lo, Py_ssize_t hi, float* op, int64_t* ip) noexcept nogil
    const char* fc_pool_active_target() noexcept nogil


def simd_target():
    """The code path the float32 row kernels use: avx512f, avx2, sse2 or generic (lower ones
    can be forced with FASTCONV_POOL_TARGET, read once per process)."""
    return fc_pool_active_target().decode()


cdef Py_ssize_t _max_row(const Geom* g, const floating** rows, const int* rel, int nr,
                         floating* om, int64_t* oi, Py_ssize_t lo, Py_ssize_t hi,
                         Py_ssize_t base) noexcept nogil:
    """Windows ow in [lo, hi) of a 2x2 or 3x3 (dilation 1 along W) pooling, all columns
    inside, over the nr valid window rows. Returns -1, and leaves the row to the per-window
    loop, when one of the rows holds a NaN; else 0."""
    cdef Py_ssize_t ow, c, s = g.sw, off = -g.pw
    cdef floating m
    cdef int k, i
    if lo == hi:
        return 0
    for i in range(nr):
        if _has_nan(rows[i], g.W):
            return -1
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
    return 0


cdef void _max_plane(const Geom* g, const floating* xp, floating* op, int64_t* ip,
                     Py_ssize_t irow_stride) noexcept nogil:
    """One plane; the indices of row oh go to ip + oh * irow_stride (stride 0: one scratch
    row that every row overwrites, when the caller wants no indices)."""
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
    if floating is float:   # the whole plane in C when it can (x86, >= 4 windows a row)
        if fast and (g.sw == 1 or g.sw == 2) and fc_max_plane_f32(
                xp, g.H, g.W, g.OH, g.OW, <int>g.kw, <int>g.sh, <int>g.sw, <int>g.ph,
                <int>g.pw, <int>g.dh, lo, hi, op, NULL if irow_stride == 0 else ip) == 0:
            return
    for oh in range(g.OH):
        orow = op + oh * g.OW
        irow = ip + oh * irow_stride
        nr = 0
        first = 0
        if fast:
            for i in range(g.kh):
                ih = oh * g.sh - g.ph + i * g.dh
                if 0 <= ih < g.H:
                    if nr == 0:
                        first = ih
                    rows[nr] = xp + ih * g.W
                    rel[nr] = <int>((ih - first) * g.W)
                    nr += 1
        if nr > 0 and _max_row(g, rows, rel, nr, orow, irow, lo, hi, first * g.W) == 0:
            for ow in range(lo):
                _max_elem(g, xp, oh, ow, orow + ow, irow + ow)
            for ow in range(hi, g.OW):
                _max_elem(g, xp, oh, ow, orow + ow, irow + ow)
        else:
            for ow in range(g.OW):
                _max_elem(g, xp, oh, ow, orow + ow, irow + ow)


cdef void _max_backward_plane(const floating* gyp, const int64_t* ip, floating* gxp,
                              Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                              Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t j, r, HW = H * W, OHW = OH * OW
    cdef int64_t i
    if floating is float:   # windows of 2x2 stride 2: each grad_in row written once, in C
        if 2 * OH <= H and 2 * OW <= W and fc_max2_backward_plane_f32(
                gyp, ip, OH, OW, H, W, gxp) == 0:
            if 2 * OW < W:
                for r in range(2 * OH):
                    memset(gxp + r * W + 2 * OW, 0, (W - 2 * OW) * sizeof(floating))
            memset(gxp + 2 * OH * W, 0, (H - 2 * OH) * W * sizeof(floating))
            return
        fc_max_backward_plane_f32(gyp, ip, HW, OHW, gxp)
        return
    memset(gxp, 0, HW * sizeof(floating))
    for j in range(OHW):
        i = ip[j]
        if <size_t>i < <size_t>HW:      # also false for negative i
            gxp[i] += gyp[j]


def max_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                floating[:, :, :, ::1] out,       # OUT (N, C, OH, OW)
                int64_t[:, :, :, ::1] indices,    # OUT (N, C, OH, OW), or None: not wanted
                int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                int n_threads):
    """out = max over each window, indices = flat ``ih * W + iw`` of that maximum.

    ``out`` and ``indices`` are fully overwritten. With ``indices=None`` (inference) no index
    is stored: each thread's row kernels write them into one L1-resident scratch row, so
    the pass moves only x and out. Parallel over the N*C planes: each iteration writes only
    its own output and index planes (or its thread's scratch row).
    """
    cdef Geom g
    cdef Py_ssize_t p, P = x.shape[0] * x.shape[1], HW, OHW
    cdef const floating* xp
    cdef floating* op
    cdef int64_t* ip = NULL
    cdef bint keep = indices is not None
    cdef int failed = 0
    _geom(&g, x.shape[2], x.shape[3], out.shape[2], out.shape[3], kh, kw, sh, sw, ph, pw,
          dh, dw)
    HW, OHW = g.H * g.W, g.OH * g.OW
    if P == 0 or OHW == 0:
        return
    with nogil:
        xp, op = &x[0, 0, 0, 0], &out[0, 0, 0, 0]
        if keep:
            ip = &indices[0, 0, 0, 0]
            for p in prange(P, num_threads=n_threads, schedule="static"):
                _max_plane(&g, xp + p * HW, op + p * OHW, ip + p * OHW, g.OW)
        else:
            for p in prange(P, num_threads=n_threads, schedule="static"):
                ip = <int64_t*>fc_scratch(0, g.OW * sizeof(int64_t))
                if ip == NULL:
                    failed += 1
                else:
                    _max_plane(&g, xp + p * HW, op + p * OHW, ip, 0)
    if failed:
        raise MemoryError("pool2d.max_forward: cannot allocate a scratch row")


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
    cdef Py_ssize_t H = grad_in.shape[2], W = grad_in.shape[3], HW = H * W
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], OHW = OH * OW
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
            _max_backward_plane(gyp + p * OHW, ip + p * OHW, gxp + p * HW, H, W, OH, OW)


# ------------------------------------------------------------------------------ average

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
    cdef Py_ssize_t r_lo, r_hi
    cdef bint fast = g.kh == 2 and g.kw == 2 and g.sh == 2 and g.sw == 2
    cdef bint interior_done = False
    if fast:
        _interior_cols(g, &lo, &hi)
        fast = lo < hi
    if floating is float:   # interior windows in C (AVX-512, >= 16 a row); borders below
        if fast:
            r_lo = (g.ph + 1) // 2                  # rows with both window rows inside
            r_hi = (g.H - 2 + g.ph) // 2 + 1 if g.H - 2 + g.ph >= 0 else 0
            r_hi = min(r_hi, g.OH)
            r_lo = min(r_lo, r_hi)
            _avg_window(g, r_lo, lo, include_pad, divisor_override, &h0, &h1, &w0, &w1, &div)
            interior_done = fc_avg2_plane_f32(xp, g.H, g.W, g.OW, <int>g.ph, <int>g.pw, r_lo,
                                              r_hi, lo, hi, <float>div, op) == 0
    for oh in range(g.OH):
        orow = op + oh * g.OW
        ih = oh * 2 - g.ph
        if fast and ih >= 0 and ih + 1 < g.H:
            if not interior_done:
                # an interior window is whole: its divisor is 4 unless overridden
                _avg_window(g, oh, lo, include_pad, divisor_override, &h0, &h1, &w0, &w1,
                            &div)
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
                              bint include_pad, Py_ssize_t divisor_override,
                              floating* buf) noexcept nogil:
    """Each output's gradient / divisor added to its clipped window (``buf``: a scratch row
    of W values, for the overlapping or clipped windows)."""
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1, div
    cdef floating v
    cdef floating* gxrow
    cdef bint tiled = (g.kh == g.sh and g.kw == g.sw and g.ph == 0 and g.pw == 0
                       and g.OH * g.sh <= g.H and g.OW * g.sw <= g.W)
    if tiled:
        # windows tile the top-left OH*kh x OW*kw block without overlap or clipping: write
        # each gradient once and zero the uncovered bottom rows and right columns
        if floating is float:
            if g.kh == 2 and g.kw == 2 and g.OH > 0:
                _avg_window(g, 0, 0, include_pad, divisor_override, &h0, &h1, &w0, &w1, &div)
                if fc_avg2_backward_plane_f32(gyp, g.OH, g.OW, g.W, <float>div, gxp) == 0:
                    for ih in range(2 * g.OH):
                        for iw in range(g.OW * 2, g.W):
                            gxp[ih * g.W + iw] = 0
                    if g.OH * 2 < g.H:
                        memset(gxp + g.OH * 2 * g.W, 0,
                               (g.H - g.OH * 2) * g.W * sizeof(floating))
                    return
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
    _avg_backward_plane_rows(g, gyp, gxp, include_pad, divisor_override, buf)


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
    cdef floating* buf
    cdef int failed = 0
    _geom(&g, x.shape[2], x.shape[3], out.shape[2], out.shape[3], kh, kw, sh, sw, ph, pw,
          1, 1)
    HW, OHW = g.H * g.W, g.OH * g.OW
    if P == 0 or OHW == 0:
        return
    cdef bint rows = not (kh == 2 and kw == 2 and sh == 2 and sw == 2)
    with nogil:
        xp, op = &x[0, 0, 0, 0], &out[0, 0, 0, 0]
        for p in prange(P, num_threads=n_threads, schedule="static"):
            if rows:   # every geometry but 2x2 stride 2: by rows, in a scratch row
                buf = <floating*>fc_scratch(0, g.W * sizeof(floating))
                if buf == NULL:
                    failed += 1
                else:
                    _avg_plane_rows(&g, xp + p * HW, op + p * OHW, count_include_pad,
                                    divisor_override, buf)
            else:
                _avg_plane(&g, xp + p * HW, op + p * OHW, count_include_pad,
                           divisor_override)
    if failed:
        raise MemoryError("pool2d.avg_forward: cannot allocate a scratch row")


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
    cdef floating* buf
    cdef int failed = 0
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
            buf = <floating*>fc_scratch(0, g.W * sizeof(floating))
            if buf == NULL:
                failed += 1
            else:
                _avg_backward_plane(&g, gyp + p * OHW, gxp + p * HW, count_include_pad,
                                    divisor_override, buf)
    if failed:
        raise MemoryError("pool2d.avg_backward: cannot allocate a scratch row")


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
    global average (float32: blocks of MEAN_BLOCK planes per call of the SIMD sum of
    ``src/_pool_avg.h``). ``out`` is fully overwritten. Parallel over the N*C planes
    (disjoint output planes)."""
    cdef Py_ssize_t p, P = x.shape[0] * x.shape[1]
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t nb = (P + MEAN_BLOCK - 1) // MEAN_BLOCK
    cdef const floating* xp
    cdef floating* op
    if P == 0 or OH * OW == 0:
        return
    with nogil:
        xp, op = &x[0, 0, 0, 0], &out[0, 0, 0, 0]
        if floating is float and OH == 1 and OW == 1:
            for p in prange(nb, num_threads=n_threads, schedule="static"):
                fc_plane_means_f32(xp + p * MEAN_BLOCK * H * W,
                                   min(<Py_ssize_t>MEAN_BLOCK, P - p * MEAN_BLOCK), H * W,
                                   op + p * MEAN_BLOCK, <float>H, <float>W)
        else:
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
    cdef Py_ssize_t nb = (P + MEAN_BLOCK - 1) // MEAN_BLOCK
    cdef const floating* gyp
    cdef floating* gxp
    if P == 0 or H * W == 0:
        return
    if OH * OW == 0:
        grad_in[...] = 0
        return
    with nogil:
        gyp, gxp = &grad_out[0, 0, 0, 0], &grad_in[0, 0, 0, 0]
        if floating is float and OH == 1 and OW == 1:
            for p in prange(nb, num_threads=n_threads, schedule="static"):
                fc_plane_fill_f32(gyp + p * MEAN_BLOCK,
                                  min(<Py_ssize_t>MEAN_BLOCK, P - p * MEAN_BLOCK), H * W,
                                  gxp + p * MEAN_BLOCK * H * W, <float>H, <float>W)
        else:
            for p in prange(P, num_threads=n_threads, schedule="static"):
                _adaptive_avg_backward_plane(gyp + p * OH * OW, gxp + p * H * W, H, W, OH,
                                             OW)


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
