# im2col / col2im on one image, as inline nogil helpers shared by conv2d_im2col.pyx (and
# exposed for tests by im2col.pyx). The column matrix of a block of output rows
# [oh0, oh1) has one row per (c, i, j) tap, r = (c*kh + i)*kw + j, and one column per output
# pixel (oh - oh0)*OW + ow:
#     cols[r, p] = x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]   (0 outside the image)
# Padding is handled by index bounds: per tap, the valid ow range is computed once.
from cython cimport floating
from libc.stdint cimport int64_t


cdef extern from "stride2_simd.h" nogil:
    bint fc_col2im_pair_f32(float *dst, const float *a, const float *b, int64_t n) noexcept


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """ceil(a / b) for b > 0 and any sign of a (C division truncates toward zero)."""
    if a <= 0:
        return -((-a) // b)
    return (a + b - 1) // b


cdef inline void valid_range(Py_ssize_t W, Py_ssize_t OW, int k, int s, int p, int d,
                             Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """Output positions o in [lo, hi) whose input o*s - p + k*d lies in [0, W)."""
    cdef Py_ssize_t off = <Py_ssize_t>k * d - p
    lo[0] = ceil_div(-off, s)
    if lo[0] < 0:
        lo[0] = 0
    hi[0] = ceil_div(W - off, s)
    if hi[0] > OW:
        hi[0] = OW
    if hi[0] < lo[0]:
        hi[0] = lo[0]


cdef inline void im2col_rows(const floating *x, Py_ssize_t H, Py_ssize_t W,
                             int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                             Py_ssize_t OW, Py_ssize_t oh0, Py_ssize_t oh1,
                             Py_ssize_t r0, Py_ssize_t r1, floating *cols) noexcept nogil:
    """Fill rows [r0, r1) of the column matrix of output rows [oh0, oh1); x is (C, H, W)."""
    cdef Py_ssize_t r, c, oh, ow, ih, lo, hi, xoff
    cdef Py_ssize_t ncol = (oh1 - oh0) * OW
    cdef int i, j
    cdef floating *dst
    cdef const floating *src
    for r in range(r0, r1):
        j = r % kw
        i = (r // kw) % kh
        c = r // (<Py_ssize_t>kw * kh)
        valid_range(W, OW, j, sw, pw, dw, &lo, &hi)
        xoff = <Py_ssize_t>j * dw - pw
        dst = cols + r * ncol
        for oh in range(oh0, oh1):
            ih = oh * sh - ph + <Py_ssize_t>i * dh
            if ih < 0 or ih >= H or lo >= hi:
                for ow in range(OW):
                    dst[ow] = 0
            else:
                src = x + (c * H + ih) * W + xoff
                for ow in range(lo):
                    dst[ow] = 0
                if sw == 1:
                    for ow in range(lo, hi):
                        dst[ow] = src[ow]
                else:
                    for ow in range(lo, hi):
                        dst[ow] = src[ow * sw]
                for ow in range(hi, OW):
                    dst[ow] = 0
            dst += OW


cdef inline void col2im_channels(const floating *cols, Py_ssize_t H, Py_ssize_t W,
                                 int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                                 Py_ssize_t OW, Py_ssize_t oh0, Py_ssize_t oh1,
                                 Py_ssize_t c0, Py_ssize_t c1, floating *gx) noexcept nogil:
    """Scatter-add the column rows of channels [c0, c1) into gx (C, H, W), taps in fixed
    (i, j) order. Writes only gx[c0:c1], so channel ranges may run in parallel."""
    cdef Py_ssize_t c, oh, ow, ih, lo, hi, xoff, lo1, hi1, plo, phi
    cdef Py_ssize_t ncol = (oh1 - oh0) * OW
    cdef int i, j
    cdef const floating *src
    cdef const floating *src1
    cdef floating *dst
    for c in range(c0, c1):
        for i in range(kh):
            j = 0
            while j < kw:
                valid_range(W, OW, j, sw, pw, dw, &lo, &hi)
                xoff = <Py_ssize_t>j * dw - pw
                src = cols + ((c * kh + i) * kw + j) * ncol
                if sw == 2 and dw == 1 and j + 1 < kw:
                    # taps j and j + 1 of stride 2 write the even and odd columns of one
                    # contiguous run: interleaved in one loop, which vectorises (each gx
                    # value still gets its taps' terms in (i, j) order: one tap per column)
                    valid_range(W, OW, j + 1, sw, pw, dw, &lo1, &hi1)
                    src1 = src + ncol
                    plo, phi = max(lo, lo1), min(hi, hi1)
                    for oh in range(oh0, oh1):
                        ih = oh * sh - ph + <Py_ssize_t>i * dh
                        if ih >= 0 and ih < H:
                            dst = gx + (c * H + ih) * W + xoff
                            if not (floating is float and fc_col2im_pair_f32(
                                    dst + 2 * plo, src + plo, src1 + plo, phi - plo)):
                                for ow in range(plo, phi):
                                    dst[2 * ow] += src[ow]
                                    dst[2 * ow + 1] += src1[ow]
                            for ow in range(lo, min(hi, plo)):
                                dst[2 * ow] += src[ow]
                            for ow in range(max(lo, phi), hi):
                                dst[2 * ow] += src[ow]
                            for ow in range(lo1, min(hi1, plo)):
                                dst[2 * ow + 1] += src1[ow]
                            for ow in range(max(lo1, phi), hi1):
                                dst[2 * ow + 1] += src1[ow]
                        src += OW
                        src1 += OW
                    j += 2
                    continue
                if lo < hi:
                    for oh in range(oh0, oh1):
                        ih = oh * sh - ph + <Py_ssize_t>i * dh
                        if ih >= 0 and ih < H:
                            dst = gx + (c * H + ih) * W + xoff
                            if sw == 1:
                                for ow in range(lo, hi):
                                    dst[ow] += src[ow]
                            else:
                                for ow in range(lo, hi):
                                    dst[ow * sw] += src[ow]
                        src += OW
                j += 1
