# The row-offset form of a stride-1 convolution (gemm.h), as inline nogil helpers for
# conv2d_im2col.pyx.
#
# Pad the image once into (C, Hp, Wp) (Hp = H + 2*ph, Wp = W + 2*pw, or more when the
# output asks for it: _conv_geometry.pxd) and compute the output
# on a grid of padded width, OH rows of Wp columns (the last Wp - OW of each row are junk,
# computed and dropped). Column t = oh*Wp + ow of tap (c, i, j) then reads
#     xpad[c, oh + i*dh, ow + j*dw] = xpad_flat[c*Hp*Wp + i*dh*Wp + j*dw + t],
# so every row of the column matrix is a contiguous run of the padded image: the GEMM packs
# it with plain copies. The junk costs (Wp - OW) / OW more multiply-adds; the caller uses
# this form only when that is small. Stride 2 uses the padded image's 4 phase planes
# (pad_planes_phased, tap_offsets_phased), Hp x Wp each, on an OH x Wp grid.
from cython cimport floating
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset


cdef extern from "stride2_simd.h" nogil:
    bint fc_stride2_copy_f32(const float *src, int64_t n, float *dst) noexcept


cdef inline void pad_planes(const floating *x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t Hp, Py_ssize_t Wp,
                            floating *xp, Py_ssize_t size) noexcept nogil:
    """xp[0 .. size) = C zero-padded Hp x Wp planes of x (x at row ph, column pw; zeros
    above, left, below and right of it), then zeros."""
    cdef Py_ssize_t c, h
    cdef floating *row
    for c in range(C):
        memset(xp + c * Hp * Wp, 0, ph * Wp * sizeof(floating))
        for h in range(H):
            row = xp + (c * Hp + ph + h) * Wp
            memset(row, 0, pw * sizeof(floating))
            memcpy(row + pw, x + (c * H + h) * W, W * sizeof(floating))
            memset(row + pw + W, 0, (Wp - pw - W) * sizeof(floating))
        memset(xp + (c * Hp + ph + H) * Wp, 0, (Hp - ph - H) * Wp * sizeof(floating))
    memset(xp + C * Hp * Wp, 0, (size - C * Hp * Wp) * sizeof(floating))


cdef inline void pad_planes_phased(const floating *x, Py_ssize_t C, Py_ssize_t H,
                                   Py_ssize_t W, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t Hq,
                                   Py_ssize_t Wq, floating *xp, Py_ssize_t size) noexcept nogil:
    """The stride-2 form: xp[0 .. size) = for each of the C channels, the zero-padded image
    (x at row ph, column pw) split into 4 phase planes of Hq x Wq, phase 2*a + b holding
    padded[2*r + a, 2*q + b] at r*Wq + q; then zeros. A stride-2 tap (i, j) of output
    (oh, ow) reads padded[2*oh + i, 2*ow + j] = phase (i % 2, j % 2) at
    (oh + i // 2)*Wq + ow + j // 2: a contiguous run along the output grid."""
    cdef Py_ssize_t c, h, k, p, HW = Hq * Wq
    # padded column q = w + pw goes to phase q % 2 at column q // 2: the columns w0, w0 + 2,
    # ... to phase 0 from column ce on, w1, w1 + 2, ... to phase 1 from column co on; two
    # strided copies per row (float32 on AVX-512: stride2_simd.h's permutes)
    cdef Py_ssize_t w0 = pw & 1, w1 = 1 - (pw & 1)
    cdef Py_ssize_t ne = (W - w0 + 1) >> 1, no = (W - w1 + 1) >> 1
    cdef Py_ssize_t ce = (w0 + pw) >> 1, co = (w1 + pw) >> 1
    cdef floating *even
    cdef floating *odd
    cdef const floating *src
    memset(xp, 0, size * sizeof(floating))
    for c in range(C):
        for h in range(H):
            p = h + ph
            src = x + (c * H + h) * W
            even = xp + (c * 4 + (p & 1) * 2) * HW + (p >> 1) * Wq + ce
            odd = xp + (c * 4 + (p & 1) * 2 + 1) * HW + (p >> 1) * Wq + co
            if floating is float and fc_stride2_copy_f32(src + w0, ne, even) and \
                    fc_stride2_copy_f32(src + w1, no, odd):
                continue
            for k in range(ne):
                even[k] = src[w0 + 2 * k]
            for k in range(no):
                odd[k] = src[w1 + 2 * k]


cdef inline void tap_offsets_phased(int64_t *off, Py_ssize_t C, int kh, int kw,
                                    Py_ssize_t Hq, Py_ssize_t Wq) noexcept nogil:
    """The stride-2 form's off[(c*kh + i)*kw + j]: phase (i % 2, j % 2) of channel c, row
    i // 2, column j // 2 (pad_planes_phased)."""
    cdef Py_ssize_t c, i, j
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                off[(c * kh + i) * kw + j] = ((c * 4 + (i % 2) * 2 + j % 2) * Hq + i // 2) * Wq \
                    + j // 2


cdef inline void tap_offsets(int64_t *off, Py_ssize_t C, int kh, int kw, int dh, int dw,
                             Py_ssize_t Hp, Py_ssize_t Wp) noexcept nogil:
    """off[(c*kh + i)*kw + j] = c*Hp*Wp + i*dh*Wp + j*dw: where tap (c, i, j) starts."""
    cdef Py_ssize_t c, i, j
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                off[(c * kh + i) * kw + j] = (c * Hp + i * dh) * Wp + j * dw


cdef inline void unpad_rows(const floating *yt, Py_ssize_t ld, Py_ssize_t Wp, floating *y,
                            Py_ssize_t ys, Py_ssize_t nco, Py_ssize_t OH, Py_ssize_t OW,
                            const floating *bias) noexcept nogil:
    """Rows oh < OH of y's channels co < nco (channel co at y + co*ys, rows OW apart) = the
    first OW columns of each Wp-wide row of yt (row oh of channel co at yt + co*ld + oh*Wp),
    plus bias[co] when bias is not NULL (the same rounding as adding it afterwards)."""
    cdef Py_ssize_t co, oh, ow
    cdef const floating *src
    cdef floating *dst
    cdef floating b
    for co in range(nco):
        for oh in range(OH):
            src = yt + co * ld + oh * Wp
            dst = y + co * ys + oh * OW
            if bias == NULL:
                memcpy(dst, src, OW * sizeof(floating))
            else:
                b = bias[co]
                for ow in range(OW):
                    dst[ow] = src[ow] + b


cdef inline void widen_rows(const floating *gy, Py_ssize_t nco, Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t Wp, floating *dst, Py_ssize_t ld) noexcept nogil:
    """dst[co*ld + oh*Wp + ow] = gy[co, oh, ow], with zeros in the junk columns ow >= OW."""
    cdef Py_ssize_t co, oh
    cdef floating *row
    for co in range(nco):
        for oh in range(OH):
            row = dst + co * ld + oh * Wp
            memcpy(row, gy + (co * OH + oh) * OW, OW * sizeof(floating))
            memset(row + OW, 0, (Wp - OW) * sizeof(floating))


cdef inline bint all_finite(const floating *x, Py_ssize_t n) noexcept nogil:
    """No NaN or infinity in x[0 .. n): an exponent field of all ones marks both. An integer
    OR-reduction, so the compiler vectorises it."""
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef const uint32_t *u32
    cdef const uint64_t *u64
    if floating is float:
        u32 = <const uint32_t *>x
        for i in range(n):
            bad32 |= (u32[i] & 0x7f800000u) == 0x7f800000u
        return bad32 == 0
    else:
        u64 = <const uint64_t *>x
        for i in range(n):
            bad64 |= (u64[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull
        return bad64 == 0
