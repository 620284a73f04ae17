"""2-D convolution as im2col + GEMM (every stride, padding, dilation and groups).

Per image and group, the convolution is one matrix product:
    out[n, g] (C_out_g x P) = W_g (C_out_g x K) @ cols (K x P),  K = C_in_g*kh*kw, P = OH*OW
and the two gradients are the transposed products
    gcols = W_g^T @ gy[n, g]  then col2im into gx[n, g];    gW_g += gy[n, g] @ cols^T.
A 1x1 stride-1 unpadded convolution needs no column matrix: cols is the image itself.

forward and backward_weight never build cols: they call the GEMM's implicit-im2col entry
point (gemm.h, fc_?gemm_im2col), which packs B's cache blocks straight from the image. The
column matrix (2.4 MB per 64-channel 32x32 image, larger than L2) is then neither written nor
read back, and the packed values, hence the results, are those of im2col + gemm.

Level of parallelism: ONE per pass, never nested. forward and backward_input run the batch in
parallel (each image's output belongs to one thread, which runs a single-threaded GEMM) when
there are at least as many images as threads; otherwise images run in turn and the GEMM (over
output tiles, each thread packing its own panels) and col2im (over channels) are parallel.
backward_weight runs images in turn, accumulating into one gW with a GEMM parallel over gW's
tiles. Since the GEMM reduces every element in the same order for any thread count, all three
passes give bit-identical results for any n_threads.

Memory: backward_input's column matrix lives in a per-thread, grow-only scratch buffer
(scratch.h), and the output rows are processed in blocks so it never exceeds COLS_BUDGET bytes
per thread.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.string cimport memset

from gemm_api cimport gemm, gemm_im2col, fc_im2col_t
from _im2col cimport col2im_channels
from scratch cimport fc_scratch

# Column workspace per thread: 16 MiB (float32: 4M entries) keeps the GEMM's B operand large
# enough to run at full speed while bounding memory at a few tens of MB for any input.
cdef size_t COLS_BUDGET = 16 << 20


cdef struct Geometry:
    Py_ssize_t N, C_in, H, W, C_out, OH, OW
    int kh, kw, sh, sw, ph, pw, dh, dw, groups
    Py_ssize_t cin_g, cout_g, K, P
    bint direct_cols      # 1x1, stride 1, no padding: the image itself is the column matrix
    Py_ssize_t rows       # output rows per block of backward_input's column matrix
    fc_im2col_t cols      # one group of one image as the GEMM's implicit B operand


cdef Geometry make_geometry(Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t C_out, Py_ssize_t OH, Py_ssize_t OW, int kh, int kw,
                            int sh, int sw, int ph, int pw, int dh, int dw, int groups,
                            size_t itemsize):
    cdef Geometry g
    g.N, g.C_in, g.H, g.W, g.C_out, g.OH, g.OW = N, C_in, H, W, C_out, OH, OW
    g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups = kh, kw, sh, sw, ph, pw, dh, dw, groups
    g.cin_g = C_in // groups
    g.cout_g = C_out // groups
    g.K = g.cin_g * kh * kw
    g.P = OH * OW
    g.direct_cols = kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
    g.cols.C, g.cols.H, g.cols.W, g.cols.OW, g.cols.oh0 = g.cin_g, H, W, OW, 0
    g.cols.kh, g.cols.kw, g.cols.sh, g.cols.sw = kh, kw, sh, sw
    g.cols.ph, g.cols.pw, g.cols.dh, g.cols.dw = ph, pw, dh, dw
    g.rows = OH
    if not g.direct_cols and g.K * OW > 0:
        g.rows = <Py_ssize_t>(COLS_BUDGET // (<size_t>g.K * OW * itemsize))
        if g.rows < 1:
            g.rows = 1
        if g.rows > OH:
            g.rows = OH
    return g


cdef inline void add_bias(floating *y, const floating *bias, Py_ssize_t nco,
                          Py_ssize_t P) noexcept nogil:
    cdef Py_ssize_t co, p
    cdef floating b
    for co in range(nco):
        b = bias[co]
        for p in range(P):
            y[co * P + p] += b


cdef int forward_image(const floating *x, const floating *w, const floating *bias,
                       floating *y, Geometry *g, int n_threads) noexcept nogil:
    """out[n] for one image; n_threads > 1 parallelises the GEMM over output tiles. The
    column matrix is never built: the GEMM packs its panels straight from the image."""
    cdef Py_ssize_t grp
    cdef const floating *xg
    cdef const floating *wg
    cdef floating *yg
    for grp in range(g.groups):
        xg = x + grp * g.cin_g * g.H * g.W
        wg = w + grp * g.cout_g * g.K
        yg = y + grp * g.cout_g * g.P
        if g.direct_cols:
            gemm(False, False, g.cout_g, g.P, g.K, 1, wg, g.K, xg, g.P, 0, yg, g.P, n_threads)
        elif gemm_im2col(False, False, g.cout_g, g.P, g.K, 1, wg, g.K, xg, &g.cols, 0, yg, g.P,
                         n_threads) != 0:
            return -1
    if bias != NULL:
        add_bias(y, bias, g.C_out, g.P)
    return 0


def forward(const floating[:, :, :, ::1] x,        # IN  (N, C_in, H, W)
            const floating[:, :, :, ::1] weight,   # IN  (C_out, C_in // groups, kh, kw)
            const floating[::1] bias,              # IN  (C_out,) or length 0: no bias
            floating[:, :, :, ::1] out,            # OUT (N, C_out, OH, OW): fully overwritten
            int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
            int groups, int n_threads):
    """out = conv2d(x, weight) + bias. Parallel over images when N >= n_threads (each thread
    writes only its images' planes), else over GEMM output tiles within each image."""
    cdef Geometry g = make_geometry(x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                    out.shape[1], out.shape[2], out.shape[3],
                                    weight.shape[2], weight.shape[3], stride_h, stride_w,
                                    pad_h, pad_w, dil_h, dil_w, groups, sizeof(floating))
    cdef Py_ssize_t n
    cdef int failed = 0
    cdef const floating *b = NULL
    if g.N == 0 or g.C_out == 0 or g.P == 0:
        return
    if bias.shape[0] > 0:
        b = &bias[0]
    with nogil:
        if g.N >= n_threads and n_threads > 1:
            for n in prange(g.N, num_threads=n_threads, schedule="static"):
                failed += forward_image(&x[n, 0, 0, 0], &weight[0, 0, 0, 0], b,
                                        &out[n, 0, 0, 0], &g, 1) != 0
        else:
            for n in range(g.N):
                if forward_image(&x[n, 0, 0, 0], &weight[0, 0, 0, 0], b, &out[n, 0, 0, 0],
                                 &g, n_threads) != 0:
                    failed = 1
                    break
    if failed:
        raise MemoryError("conv2d_im2col.forward: cannot allocate the column workspace")


cdef int backward_input_image(const floating *gy, const floating *w, floating *gx,
                              Geometry *g, int n_threads) noexcept nogil:
    """gx[n] for one image; n_threads > 1 parallelises the GEMM and col2im (over channels)."""
    cdef Py_ssize_t grp, oh0, oh1, ncol, c, HW = g.H * g.W
    cdef floating *cols = NULL
    cdef floating *gxg
    if not g.direct_cols:
        cols = <floating *>fc_scratch(0, <size_t>g.K * g.rows * g.OW * sizeof(floating))
        if cols == NULL:
            return -1
        memset(gx, 0, <size_t>g.C_in * HW * sizeof(floating))
    for grp in range(g.groups):
        gxg = gx + grp * g.cin_g * HW
        oh0 = 0
        while oh0 < g.OH:
            oh1 = min(oh0 + g.rows, g.OH)
            ncol = (oh1 - oh0) * g.OW
            if g.direct_cols:
                gemm(True, False, g.K, ncol, g.cout_g, 1, w + grp * g.cout_g * g.K, g.K,
                     gy + grp * g.cout_g * g.P + oh0 * g.OW, g.P, 0, gxg + oh0 * g.OW, HW,
                     n_threads)
            else:
                gemm(True, False, g.K, ncol, g.cout_g, 1, w + grp * g.cout_g * g.K, g.K,
                     gy + grp * g.cout_g * g.P + oh0 * g.OW, g.P, 0, cols, ncol, n_threads)
                if n_threads > 1:
                    for c in prange(g.cin_g, num_threads=n_threads, schedule="static"):
                        col2im_channels(cols, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw,
                                        g.dh, g.dw, g.OW, oh0, oh1, c, c + 1, gxg)
                else:
                    col2im_channels(cols, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh,
                                    g.dw, g.OW, oh0, oh1, 0, g.cin_g, gxg)
            oh0 = oh1
    return 0


def backward_input(const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
                   const floating[:, :, :, ::1] weight,    # IN  (C_out, C_in // groups, kh, kw)
                   floating[:, :, :, ::1] grad_in,         # OUT (N, C_in, H, W): fully overwritten
                   int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                   int groups, int n_threads):
    """grad_in = d(conv2d)/dx applied to grad_out. Input pixels no window reaches get 0.
    Parallel over images when N >= n_threads (each thread owns its images' grad_in planes),
    else over GEMM tiles and input channels within each image."""
    cdef Geometry g = make_geometry(grad_in.shape[0], grad_in.shape[1], grad_in.shape[2],
                                    grad_in.shape[3], grad_out.shape[1], grad_out.shape[2],
                                    grad_out.shape[3], weight.shape[2], weight.shape[3],
                                    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                                    sizeof(floating))
    cdef Py_ssize_t n
    cdef int failed = 0
    if g.N == 0 or g.C_in == 0 or g.H * g.W == 0:
        return
    if g.P == 0 or g.C_out == 0:
        grad_in[...] = 0
        return
    # A 1x1 stride-1 unpadded conv whose output is smaller than its input (impossible unless
    # the caller passes a larger grad_in, as conv_transpose2d's output_padding does) needs the
    # zero-fill of the general path.
    if g.direct_cols and (g.OH != g.H or g.OW != g.W):
        g.direct_cols = False
        g.rows = make_geometry(g.N, g.C_in, g.H, g.W, g.C_out, g.OH, g.OW, 1, 1, 1, 1, 0, 0,
                               1, 1, 1, sizeof(floating)).rows
    with nogil:
        if g.N >= n_threads and n_threads > 1:
            for n in prange(g.N, num_threads=n_threads, schedule="static"):
                failed += backward_input_image(&grad_out[n, 0, 0, 0], &weight[0, 0, 0, 0],
                                               &grad_in[n, 0, 0, 0], &g, 1) != 0
        else:
            for n in range(g.N):
                if backward_input_image(&grad_out[n, 0, 0, 0], &weight[0, 0, 0, 0],
                                        &grad_in[n, 0, 0, 0], &g, n_threads) != 0:
                    failed = 1
                    break
    if failed:
        raise MemoryError("conv2d_im2col.backward_input: cannot allocate the column workspace")


def backward_weight(const floating[:, :, :, ::1] x,        # IN  (N, C_in, H, W)
                    const floating[:, :, :, ::1] grad_out, # IN  (N, C_out, OH, OW)
                    floating[:, :, :, ::1] grad_weight,    # OUT (C_out, C_in // groups, kh, kw): fully overwritten
                    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                    int groups, int n_threads):
    """grad_weight = sum over images of gy[n] @ cols(x[n])^T, images in order. Parallel over
    grad_weight's GEMM tiles (disjoint writes); each thread packs its own tiles' columns
    straight from the image."""
    cdef Geometry g = make_geometry(x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                    grad_out.shape[1], grad_out.shape[2], grad_out.shape[3],
                                    grad_weight.shape[2], grad_weight.shape[3], stride_h,
                                    stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                                    sizeof(floating))
    cdef Py_ssize_t n, grp
    cdef int failed = 0
    cdef const floating *xg
    cdef const floating *gyg
    cdef floating *gw = &grad_weight[0, 0, 0, 0]
    cdef floating beta
    if g.C_out == 0 or g.K == 0:
        return
    if g.N == 0 or g.P == 0:
        grad_weight[...] = 0
        return
    with nogil:
        for n in range(g.N):
            beta = 0 if n == 0 else 1
            for grp in range(g.groups):
                xg = &x[n, grp * g.cin_g, 0, 0]
                gyg = &grad_out[n, grp * g.cout_g, 0, 0]
                if g.direct_cols:
                    gemm(False, True, g.cout_g, g.K, g.P, 1, gyg, g.P, xg, g.P, beta,
                         gw + grp * g.cout_g * g.K, g.K, n_threads)
                elif gemm_im2col(False, True, g.cout_g, g.K, g.P, 1, gyg, g.P, xg, &g.cols,
                                 beta, gw + grp * g.cout_g * g.K, g.K, n_threads) != 0:
                    failed = 1
                    break
            if failed:
                break
    if failed:
        raise MemoryError("conv2d_im2col.backward_weight: cannot allocate the column workspace")
