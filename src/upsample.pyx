"""Resampling kernels on NCHW planes: nearest and bilinear resize (forward and backward) and
pixel_shuffle / pixel_unshuffle (depth-to-space and space-to-depth).

Source indices follow PyTorch's CPU formulas exactly, so that the same output pixel reads the
same input pixels (this matters for nearest, where an index is either right or wrong):

* nearest: ``src = min(floor(dst * scale), in - 1)`` in single precision for every dtype,
  with ``scale = 1 / scale_factor`` when the caller passed a scale factor and ``in / out``
  otherwise; ``out == in`` copies and ``out == 2 * in`` takes ``dst >> 1``.
* bilinear, ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)``;
  ``align_corners=False``: ``src = max(scale * (dst + 0.5) - 0.5, 0)`` with the same scale
  as nearest but in the array's dtype. ``i0 = min(floor(src), in - 1)``,
  ``i1 = i0 + (i0 < in - 1)``, ``lambda1 = clamp(src - i0, 0, 1)``; ``out == in`` copies.

The per-row and per-column tables (indices and weights) are computed once per call, with
the GIL, before the parallel loop; they hold OH + OW entries. Bilinear is separable: forward
blends each needed input row horizontally once (a 2-row cache in per-thread scratch,
scratch.h) and then blends rows vertically in a vectorisable loop; backward accumulates
grad_out rows vertically into an (H, OW) scratch and scatters each of its rows horizontally.
That halves the gathers of a 2x upsampling (4 per output pixel otherwise).

Level of parallelism: one OpenMP ``prange`` per pass over the flattened (n, c) planes
(for pixel_shuffle, the output channel's group of r*r input planes). Every iteration writes
only its own output (or grad_in) plane, so writes are disjoint; a backward pass scatters
into its own grad_in plane in a fixed order of output pixels, so results are bit-identical
for every ``n_threads``. Nothing inside an iteration is parallel.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport floor, floorf
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from scratch cimport fc_scratch


# ------------------------------------------------------------------------- index tables

cdef void _nearest_table(int64_t* idx, Py_ssize_t in_size, Py_ssize_t out_size,
                         double scale_factor) noexcept nogil:
    """PyTorch's ``nearest_idx`` for every output index (float arithmetic, as PyTorch)."""
    cdef Py_ssize_t i
    cdef int64_t s
    cdef float ratio
    if out_size == in_size:
        for i in range(out_size):
            idx[i] = i
    elif out_size == 2 * in_size:
        for i in range(out_size):
            idx[i] = i >> 1
    else:
        if scale_factor > 0:
            ratio = <float>(1.0 / scale_factor)
        else:
            ratio = <float>in_size / <float>out_size
        for i in range(out_size):
            s = <int64_t>floorf(<float>i * ratio)
            idx[i] = s if s < in_size - 1 else in_size - 1


cdef void _linear_table(int64_t* i0, int64_t* i1, floating* lam1, Py_ssize_t in_size,
                        Py_ssize_t out_size, bint align_corners,
                        double scale_factor) noexcept nogil:
    """PyTorch's ``compute_source_index_and_lambda`` for every output index, in the dtype."""
    cdef Py_ssize_t i
    cdef floating ratio, src, lam
    cdef int64_t k
    if out_size == in_size:
        for i in range(out_size):
            i0[i] = i
            i1[i] = i
            lam1[i] = 0
        return
    if align_corners:
        ratio = <floating>(in_size - 1) / <floating>(out_size - 1) if out_size > 1 else 0
    elif scale_factor > 0:
        ratio = <floating>(1.0 / scale_factor)
    else:
        ratio = <floating>in_size / <floating>out_size
    for i in range(out_size):
        if align_corners:
            src = ratio * <floating>i
        else:
            src = ratio * (<floating>i + <floating>0.5) - <floating>0.5
            if src < 0:
                src = 0
        k = <int64_t>floor(src)
        if k > in_size - 1:
            k = in_size - 1
        lam = src - <floating>k
        lam = 0 if lam < 0 else (1 if lam > 1 else lam)
        i0[i] = k
        i1[i] = k + 1 if k < in_size - 1 else k
        lam1[i] = lam


cdef int64_t* _alloc_index(Py_ssize_t n) except NULL:
    cdef int64_t* p = <int64_t*>malloc((n if n > 0 else 1) * sizeof(int64_t))
    if p == NULL:
        raise MemoryError()
    return p


# ------------------------------------------------------------------------------ planes

cdef void _nearest_plane(const floating* xp, floating* op, Py_ssize_t W, Py_ssize_t OH,
                         Py_ssize_t OW, const int64_t* sh, const int64_t* sw) noexcept nogil:
    cdef Py_ssize_t oh, ow
    cdef const floating* row
    cdef floating* orow
    for oh in range(OH):
        orow = op + oh * OW
        if oh > 0 and sh[oh] == sh[oh - 1]:
            # the same source row again (every upscale by > 1): copy the row just written
            memcpy(orow, orow - OW, OW * sizeof(floating))
            continue
        row = xp + sh[oh] * W
        for ow in range(OW):
            orow[ow] = row[sw[ow]]


cdef void _nearest_backward_plane(const floating* gyp, floating* gxp, Py_ssize_t H,
                                  Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                                  const int64_t* sh, const int64_t* sw) noexcept nogil:
    cdef Py_ssize_t oh, ow
    cdef const floating* grow
    cdef floating* row
    memset(gxp, 0, H * W * sizeof(floating))
    for oh in range(OH):
        grow = gyp + oh * OW
        row = gxp + sh[oh] * W
        for ow in range(OW):
            row[sw[ow]] += grow[ow]


cdef inline void _hinterp_row(const floating* row, floating* dst, Py_ssize_t OW,
                              const int64_t* w0, const int64_t* w1,
                              const floating* lw) noexcept nogil:
    """dst[ow] = the horizontal blend of one input row at every output column."""
    cdef Py_ssize_t ow
    cdef floating b1
    for ow in range(OW):
        b1 = lw[ow]
        dst[ow] = (1 - b1) * row[w0[ow]] + b1 * row[w1[ow]]


cdef floating* _cached_row(const floating* xp, Py_ssize_t W, Py_ssize_t h, Py_ssize_t keep,
                           floating** rows, Py_ssize_t* keys, Py_ssize_t OW,
                           const int64_t* w0, const int64_t* w1,
                           const floating* lw) noexcept nogil:
    """Input row h blended horizontally, from a 2-entry cache; the entry holding row
    ``keep`` (the other row the current output row needs) is never evicted."""
    cdef int k
    for k in range(2):
        if keys[k] == h:
            return rows[k]
    k = 1 if keys[0] == keep else 0
    _hinterp_row(xp + h * W, rows[k], OW, w0, w1, lw)
    keys[k] = h
    return rows[k]


cdef void _bilinear_plane(const floating* xp, floating* op, Py_ssize_t W, Py_ssize_t OH,
                          Py_ssize_t OW, const int64_t* h0, const int64_t* h1,
                          const floating* lh, const int64_t* w0, const int64_t* w1,
                          const floating* lw) noexcept nogil:
    """Separable: each input row is blended horizontally once (cached while consecutive
    output rows need it), then every output row is a vectorisable blend of two such rows.
    out = a0 * (b0 x[h0, w0] + b1 x[h0, w1]) + a1 * (b0 x[h1, w0] + b1 x[h1, w1]), the same
    expression, rounding for rounding, as the direct gather used when scratch is short."""
    cdef Py_ssize_t oh, ow
    cdef floating a0, a1, b0, b1
    cdef const floating* r0
    cdef const floating* r1
    cdef floating* orow
    cdef floating* rows[2]
    cdef Py_ssize_t keys[2]
    cdef floating* buf = <floating*>fc_scratch(0, 2 * OW * sizeof(floating))
    if buf != NULL:
        rows[0] = buf
        rows[1] = buf + OW
        keys[0] = -1
        keys[1] = -1
        for oh in range(OH):
            r0 = _cached_row(xp, W, h0[oh], h1[oh], rows, keys, OW, w0, w1, lw)
            r1 = _cached_row(xp, W, h1[oh], h0[oh], rows, keys, OW, w0, w1, lw)
            a1 = lh[oh]
            a0 = 1 - a1
            orow = op + oh * OW
            for ow in range(OW):
                orow[ow] = a0 * r0[ow] + a1 * r1[ow]
        return
    for oh in range(OH):
        orow = op + oh * OW
        r0 = xp + h0[oh] * W
        r1 = xp + h1[oh] * W
        a1 = lh[oh]
        a0 = 1 - a1
        for ow in range(OW):
            b1 = lw[ow]
            b0 = 1 - b1
            orow[ow] = (a0 * (b0 * r0[w0[ow]] + b1 * r0[w1[ow]])
                        + a1 * (b0 * r1[w0[ow]] + b1 * r1[w1[ow]]))


cdef void _bilinear_backward_plane(const floating* gyp, floating* gxp, Py_ssize_t H,
                                   Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                                   const int64_t* h0, const int64_t* h1, const floating* lh,
                                   const int64_t* w0, const int64_t* w1,
                                   const floating* lw) noexcept nogil:
    """Separable adjoint: grad_out rows are first accumulated vertically into an (H, OW)
    scratch (contiguous, vectorisable), then each of its H rows is scattered horizontally
    into grad_in, so the gathers drop from 4 per output pixel to 2 per (input row, output
    column). Both passes run in a fixed order. Without scratch: a direct 4-way scatter
    (also deterministic, but rounded differently)."""
    cdef Py_ssize_t oh, ow, h
    cdef floating a0, a1, b0, b1, g
    cdef const floating* grow
    cdef floating* r0
    cdef floating* r1
    cdef floating* t
    cdef floating* buf = <floating*>fc_scratch(0, H * OW * sizeof(floating))
    memset(gxp, 0, H * W * sizeof(floating))
    if buf != NULL:
        memset(buf, 0, H * OW * sizeof(floating))
        for oh in range(OH):
            grow = gyp + oh * OW
            a1 = lh[oh]
            a0 = 1 - a1
            t = buf + h0[oh] * OW
            for ow in range(OW):
                t[ow] += a0 * grow[ow]
            t = buf + h1[oh] * OW
            for ow in range(OW):
                t[ow] += a1 * grow[ow]
        for h in range(H):
            t = buf + h * OW
            r0 = gxp + h * W
            for ow in range(OW):
                b1 = lw[ow]
                r0[w0[ow]] += (1 - b1) * t[ow]
                r0[w1[ow]] += b1 * t[ow]
        return
    for oh in range(OH):
        grow = gyp + oh * OW
        r0 = gxp + h0[oh] * W
        r1 = gxp + h1[oh] * W
        a1 = lh[oh]
        a0 = 1 - a1
        for ow in range(OW):
            b1 = lw[ow]
            b0 = 1 - b1
            g = grow[ow]
            r0[w0[ow]] += a0 * b0 * g
            r0[w1[ow]] += a0 * b1 * g
            r1[w0[ow]] += a1 * b0 * g
            r1[w1[ow]] += a1 * b1 * g


# ------------------------------------------------------------------------- entry points

def nearest_forward(const floating[:, :, :, ::1] x,      # IN  (N, C, H, W)
                    floating[:, :, :, ::1] out,          # OUT (N, C, OH, OW)
                    double scale_h, double scale_w, int n_threads):
    """out[n, c, oh, ow] = x[n, c, src_h(oh), src_w(ow)] (PyTorch's 'nearest').

    ``scale_h``/``scale_w``: the scale_factor the user gave, or 0 when the output size was
    given (the ratio is then in / out). ``out`` is fully overwritten. Parallel over the
    (n, c) planes; each iteration writes only its own output plane.
    """
    cdef Py_ssize_t P = x.shape[0] * x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], p
    cdef const floating* xp
    cdef floating* op
    if P == 0 or OH * OW == 0:
        return
    cdef int64_t* sh = _alloc_index(OH)
    cdef int64_t* sw = NULL
    try:
        sw = _alloc_index(OW)
        _nearest_table(sh, H, OH, scale_h)
        _nearest_table(sw, W, OW, scale_w)
        xp = &x[0, 0, 0, 0]
        op = &out[0, 0, 0, 0]
        with nogil:
            for p in prange(P, num_threads=n_threads, schedule="static"):
                _nearest_plane(xp + p * H * W, op + p * OH * OW, W, OH, OW, sh, sw)
    finally:
        free(sh)
        free(sw)


def nearest_backward(const floating[:, :, :, ::1] grad_out,   # IN  (N, C, OH, OW)
                     floating[:, :, :, ::1] grad_in,          # OUT (N, C, H, W)
                     double scale_h, double scale_w, int n_threads):
    """grad_in[n, c, h, w] = sum of grad_out over the output pixels that read (h, w).

    Scales as in :func:`nearest_forward`. ``grad_in`` is fully overwritten. Parallel over
    the (n, c) planes: each iteration zeroes and scatters into its own grad_in plane, in
    output-pixel order.
    """
    cdef Py_ssize_t P = grad_in.shape[0] * grad_in.shape[1]
    cdef Py_ssize_t H = grad_in.shape[2], W = grad_in.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], p
    cdef const floating* gyp
    cdef floating* gxp
    if P == 0 or H * W == 0:
        return
    if OH * OW == 0:
        with nogil:
            memset(&grad_in[0, 0, 0, 0], 0, P * H * W * sizeof(floating))
        return
    cdef int64_t* sh = _alloc_index(OH)
    cdef int64_t* sw = NULL
    try:
        sw = _alloc_index(OW)
        _nearest_table(sh, H, OH, scale_h)
        _nearest_table(sw, W, OW, scale_w)
        gyp = &grad_out[0, 0, 0, 0]
        gxp = &grad_in[0, 0, 0, 0]
        with nogil:
            for p in prange(P, num_threads=n_threads, schedule="static"):
                _nearest_backward_plane(gyp + p * OH * OW, gxp + p * H * W, H, W, OH, OW,
                                        sh, sw)
    finally:
        free(sh)
        free(sw)


cdef class _LinearTables:
    """Row and column tables of a bilinear resize (owned memory, freed with the object)."""
    cdef int64_t* h0
    cdef int64_t* h1
    cdef int64_t* w0
    cdef int64_t* w1
    cdef void* lh
    cdef void* lw

    def __cinit__(self, Py_ssize_t OH, Py_ssize_t OW, size_t itemsize):
        self.h0 = _alloc_index(2 * OH)
        self.h1 = self.h0 + OH
        self.w0 = _alloc_index(2 * OW)
        self.w1 = self.w0 + OW
        self.lh = malloc((OH if OH > 0 else 1) * itemsize)
        self.lw = malloc((OW if OW > 0 else 1) * itemsize)
        if self.lh == NULL or self.lw == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.h0)
        free(self.w0)
        free(self.lh)
        free(self.lw)


cdef _LinearTables _bilinear_tables(floating dtype_tag, Py_ssize_t H, Py_ssize_t W,
                                    Py_ssize_t OH, Py_ssize_t OW, bint align_corners,
                                    double scale_h, double scale_w):
    cdef _LinearTables t = _LinearTables(OH, OW, sizeof(floating))
    _linear_table(t.h0, t.h1, <floating*>t.lh, H, OH, align_corners, scale_h)
    _linear_table(t.w0, t.w1, <floating*>t.lw, W, OW, align_corners, scale_w)
    return t


def bilinear_forward(const floating[:, :, :, ::1] x,     # IN  (N, C, H, W)
                     floating[:, :, :, ::1] out,         # OUT (N, C, OH, OW)
                     bint align_corners, double scale_h, double scale_w, int n_threads):
    """out[n, c, oh, ow] = the bilinear blend of the 2 x 2 input pixels around the source
    position of (oh, ow) (PyTorch's 'bilinear', see the module docstring).

    Scales as in :func:`nearest_forward` (unused with ``align_corners``). ``out`` is fully
    overwritten. Parallel over the (n, c) planes; each iteration writes its own plane.
    """
    cdef Py_ssize_t P = x.shape[0] * x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], p
    cdef const floating* xp
    cdef floating* op
    if P == 0 or OH * OW == 0:
        return
    cdef floating tag = 0
    cdef _LinearTables t = _bilinear_tables(tag, H, W, OH, OW, align_corners, scale_h, scale_w)
    xp = &x[0, 0, 0, 0]
    op = &out[0, 0, 0, 0]
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _bilinear_plane(xp + p * H * W, op + p * OH * OW, W, OH, OW, t.h0, t.h1,
                            <floating*>t.lh, t.w0, t.w1, <floating*>t.lw)


def bilinear_backward(const floating[:, :, :, ::1] grad_out,   # IN  (N, C, OH, OW)
                      floating[:, :, :, ::1] grad_in,          # OUT (N, C, H, W)
                      bint align_corners, double scale_h, double scale_w, int n_threads):
    """grad_in = the adjoint of :func:`bilinear_forward` applied to grad_out: every output
    pixel's gradient is scattered to its 2 x 2 source pixels with the forward's weights.

    ``grad_in`` is fully overwritten. Parallel over the (n, c) planes: each iteration
    zeroes and scatters into its own grad_in plane, in output-pixel order (deterministic).
    """
    cdef Py_ssize_t P = grad_in.shape[0] * grad_in.shape[1]
    cdef Py_ssize_t H = grad_in.shape[2], W = grad_in.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], p
    cdef const floating* gyp
    cdef floating* gxp
    if P == 0 or H * W == 0:
        return
    if OH * OW == 0:
        with nogil:
            memset(&grad_in[0, 0, 0, 0], 0, P * H * W * sizeof(floating))
        return
    cdef floating tag = 0
    cdef _LinearTables t = _bilinear_tables(tag, H, W, OH, OW, align_corners, scale_h, scale_w)
    gyp = &grad_out[0, 0, 0, 0]
    gxp = &grad_in[0, 0, 0, 0]
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            _bilinear_backward_plane(gyp + p * OH * OW, gxp + p * H * W, H, W, OH, OW,
                                     t.h0, t.h1, <floating*>t.lh, t.w0, t.w1,
                                     <floating*>t.lw)


# ----------------------------------------------------------------- pixel (un)shuffle

def pixel_shuffle(const floating[:, :, :, ::1] x,   # IN  (N, C * r * r, H, W)
                  floating[:, :, :, ::1] out,       # OUT (N, C, H * r, W * r)
                  int upscale_factor, int n_threads):
    """out[n, c, h*r + i, w*r + j] = x[n, c*r*r + i*r + j, h, w] (depth to space).

    ``out`` is fully overwritten. Parallel over the (n, c) output planes: each iteration
    reads its own r*r input planes and writes its own output plane.
    """
    cdef Py_ssize_t r = upscale_factor
    cdef Py_ssize_t P = out.shape[0] * out.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t p, h, i, j, w, OW = W * r
    cdef const floating* src
    cdef floating* dst
    cdef const floating* xp
    cdef floating* op
    if P == 0 or H * W == 0:
        return
    xp = &x[0, 0, 0, 0]
    op = &out[0, 0, 0, 0]
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            for h in range(H):
                for i in range(r):
                    dst = op + (p * H * r + h * r + i) * OW
                    for j in range(r):
                        src = xp + ((p * r + i) * r + j) * H * W + h * W
                        for w in range(W):
                            dst[w * r + j] = src[w]


def pixel_unshuffle(const floating[:, :, :, ::1] x,   # IN  (N, C, H * r, W * r)
                    floating[:, :, :, ::1] out,       # OUT (N, C * r * r, H, W)
                    int downscale_factor, int n_threads):
    """out[n, c*r*r + i*r + j, h, w] = x[n, c, h*r + i, w*r + j] (space to depth, the
    inverse of :func:`pixel_shuffle`).

    ``out`` is fully overwritten. Parallel over the (n, c) input planes: each iteration
    reads its own input plane and writes its own r*r output planes.
    """
    cdef Py_ssize_t r = downscale_factor
    cdef Py_ssize_t P = x.shape[0] * x.shape[1], H = out.shape[2], W = out.shape[3]
    cdef Py_ssize_t p, h, i, j, w, IW = W * r
    cdef const floating* src
    cdef floating* dst
    cdef const floating* xp
    cdef floating* op
    if P == 0 or H * W == 0:
        return
    xp = &x[0, 0, 0, 0]
    op = &out[0, 0, 0, 0]
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule="static"):
            for h in range(H):
                for i in range(r):
                    src = xp + (p * H * r + h * r + i) * IW
                    for j in range(r):
                        dst = op + ((p * r + i) * r + j) * H * W + h * W
                        for w in range(W):
                            dst[w] = src[w * r + j]
