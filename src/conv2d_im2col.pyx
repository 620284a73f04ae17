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

Stride 1 with at most 2 junk columns per output column takes the row-offset form of
_padded.pxd instead: the image is zero-padded once and the output computed on a grid of
padded width, so every row of the column matrix is a contiguous run of the padded image and
the GEMM packs it with plain copies. forward runs one GEMM per chunk of images (the weights
are packed once per chunk), or with at most 32 output channels per group the no-pack kernel
of conv_rowoff.h (with much junk, on AVX-512, over the real columns only); backward_input is
the forward convolution of grad_out with the flipped, in/out-swapped kernel (no column
matrix, no col2im); backward_weight is one GEMM per chunk
of images over all their pixels, or SIMD dot products (wgrad_dot.h). Stride 2 (kernels
of at least 2x2, dilation 1) takes the same form for forward and backward_weight over the
padded image split into its 4 phase planes (even/odd rows x columns), where each tap again
reads a contiguous run.

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
from libc.string cimport memcpy, memset

from libc.stdint cimport int64_t
import numpy as np

from gemm_api cimport gemm, gemm_im2col, fc_im2col_t
from _im2col cimport col2im_channels
from _padded cimport (pad_planes, pad_planes_phased, tap_offsets, tap_offsets_phased,
                      unpad_rows, widen_rows, all_finite)
from scratch cimport fc_scratch
from _conv_geometry cimport Geometry, make_geometry

cdef extern from "conv_rowoff.h" nogil:
    bint fc_rowoff_available() noexcept
    int fc_rowoff_rows() noexcept
    enum:
        FC_RO_COLS
    void fc_rowoff_forward_f32(int64_t M, int64_t K, const float *A, int64_t lda,
                               const float *X, const int64_t *off, int64_t n, float *C,
                               int64_t ldc) noexcept
    bint fc_rowruns_available() noexcept
    bint fc_rowruns_fits(int64_t OW, int64_t Wp) noexcept
    int64_t fc_rowruns_cols(int64_t P) noexcept
    void fc_rowruns_pack(int64_t M, int64_t K, const float *A, int64_t lda,
                         float *A8) noexcept
    void fc_rowruns_forward_f32(int64_t M, int64_t K, const float *A8, const float *X,
                                const int64_t *off, int64_t u0, int64_t u1, int64_t P,
                                int64_t OW, int64_t Wp, int64_t S, float *Y, int64_t ys,
                                const float *bias) noexcept

# forward in the row-offset form: up to this many output channels per group, the no-pack
# kernel of conv_rowoff.h instead of the GEMM (measured: see forward_chunk_padded)
cdef Py_ssize_t ROWOFF_MAX_COUT = 32


cdef inline bint rowoff_serves(Py_ssize_t cout_g) noexcept nogil:
    """Whether a float32 forward in the row-offset form runs the no-pack kernel."""
    return cout_g <= ROWOFF_MAX_COUT and fc_rowoff_available()


# forward in the row-offset form: images per GEMM so that it has about this many columns
cdef Py_ssize_t CHUNK_COLUMNS = 1024
# ... and for one large image, output rows per GEMM so that its output (junk columns
# included) takes about this much of L2
cdef size_t YT_BLOCK = 256 << 10


cdef inline void add_bias(floating *y, const floating *bias, Py_ssize_t nco, Py_ssize_t n,
                          Py_ssize_t ys) noexcept nogil:
    """y[co*ys + p] += bias[co] for co < nco, p < n."""
    cdef Py_ssize_t co, p
    cdef floating b
    for co in range(nco):
        b = bias[co]
        for p in range(n):
            y[co * ys + p] += b


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
        add_bias(y, bias, g.C_out, g.P, g.P)
    return 0


# forward in the row-offset form, float32 with AVX-512: when at least 1 column in RUNS_JUNK
# of the padded-width grid is junk, the kernel that computes only the real columns
# (conv_rowoff.h, fc_rowruns_forward_f32). Measured on a Zen 4 at 2 threads, against the
# padded-width no-pack kernel, the same bits: 0.70-0.84x the time with 20-40% junk
# (lenet_c2 forward 0.80x, its input gradient 0.73-0.78x); with 11-14% (lenet_c1, 3x3 on
# 16x16) 1.0-1.19x, so not there.
cdef Py_ssize_t RUNS_JUNK = 5


cdef inline bint runs_serve(Geometry *g) noexcept nogil:
    """Whether a float32 forward in the row-offset form skips the junk columns."""
    return (g.padded and not g.phased and rowoff_serves(g.cout_g) and fc_rowruns_available()
            and fc_rowruns_fits(g.OW, g.Wp) and (g.Wp - g.OW) * RUNS_JUNK >= g.Wp)


cdef int forward_chunk_runs(const float *x, const float *w, const float *bias, float *y,
                            Geometry *g, Py_ssize_t nb, int n_threads) noexcept nogil:
    """forward of nb consecutive images in the row-offset form over their real columns
    only: pad them into this thread's scratch, then per group the kernel writes y's planes
    directly (bias included); with n_threads > 1, over blocks of columns in parallel (each
    output is written by the block holding it and summed the same way in any block)."""
    cdef Py_ssize_t S = (g.xsize + 15) // 16 * 16, ncol = nb * fc_rowruns_cols(g.P)
    cdef Py_ssize_t nblk = (ncol + FC_RO_COLS - 1) // FC_RO_COLS, i, grp, t
    cdef float *xp = <float *>fc_scratch(1, (nb * S + 32) * sizeof(float))
    cdef float *A8 = <float *>fc_scratch(2, ((g.cout_g + 7) // 8 * 8) * g.K * sizeof(float))
    cdef const float *xg
    cdef const float *bg
    cdef float *yg
    if xp == NULL or A8 == NULL:
        return -1
    for i in range(nb):
        pad_image(x + i * g.C_in * g.H * g.W, g, xp + i * S, S)
    for grp in range(g.groups):
        fc_rowruns_pack(g.cout_g, g.K, w + grp * g.cout_g * g.K, g.K, A8)
        xg = xp + grp * g.cin_g * g.plane
        yg = y + grp * g.cout_g * g.P
        bg = bias + grp * g.cout_g if bias != NULL else NULL
        if n_threads == 1:
            fc_rowruns_forward_f32(g.cout_g, g.K, A8, xg, g.pcols.rowoff, 0, ncol, g.P, g.OW,
                                   g.Wp, S, yg, g.C_out * g.P, bg)
        else:
            for t in prange(nblk, num_threads=n_threads, schedule="static"):
                fc_rowruns_forward_f32(g.cout_g, g.K, A8, xg, g.pcols.rowoff, t * FC_RO_COLS,
                                       min(ncol, (t + 1) * FC_RO_COLS), g.P, g.OW, g.Wp, S,
                                       yg, g.C_out * g.P, bg)
    return 0


cdef int forward_chunk_padded(const floating *x, const floating *w, const floating *bias,
                              floating *y, Geometry *g, Py_ssize_t nb,
                              int n_threads) noexcept nogil:
    """forward of nb consecutive images in the row-offset form: pad them into this thread's
    scratch (one segment each), one GEMM per group over all their columns (the weights are
    packed once per chunk, not per image), then drop the junk columns. A chunk of one image
    has no junk columns: its GEMM skips them."""
    cdef Py_ssize_t grp, i, ld = nb * g.NP
    cdef Py_ssize_t S = (g.xsize + 15) // 16 * 16
    cdef Py_ssize_t nblk = (g.NP + FC_RO_COLS - 1) // FC_RO_COLS, t, j, r0, nr, rb
    cdef bint rowoff = rowoff_serves(g.cout_g)
    cdef floating *xp = <floating *>fc_scratch(1, nb * S * sizeof(floating))
    cdef floating *yt = NULL
    cdef fc_im2col_t cols = g.pcols
    if (floating is float and rowoff) or nb > 1:   # the output on the padded-width grid
        yt = <floating *>fc_scratch(2, <size_t>g.cout_g * ld * sizeof(floating))
        if yt == NULL:
            return -1
    if xp == NULL:
        return -1
    cols.segstride = S
    for i in range(nb):
        pad_image(x + i * g.C_in * g.H * g.W, g, xp + i * S, S)
    for grp in range(g.groups):
        if floating is float and rowoff:
            # the no-pack kernel (conv_rowoff.h); with threads to spare (a chunk holding the
            # whole batch), over blocks of columns: each output's sum is the same either way
            if n_threads == 1:
                for i in range(nb):
                    fc_rowoff_forward_f32(g.cout_g, g.K, w + grp * g.cout_g * g.K, g.K,
                                          xp + grp * g.cin_g * g.plane + i * S,
                                          g.pcols.rowoff, g.NP, yt + i * g.NP, ld)
            else:
                for t in prange(nb * nblk, num_threads=n_threads, schedule="static"):
                    i = t // nblk
                    j = t % nblk * FC_RO_COLS
                    fc_rowoff_forward_f32(g.cout_g, g.K, w + grp * g.cout_g * g.K, g.K,
                                          xp + grp * g.cin_g * g.plane + i * S + j,
                                          g.pcols.rowoff, min(<Py_ssize_t>FC_RO_COLS, g.NP - j),
                                          yt + i * g.NP + j, ld)
        elif nb == 1:
            # one image: B's columns skip the junk ones (segments of OW columns, Wp apart),
            # so the GEMM writes the output planes themselves; with a bias, in blocks of
            # output rows that are still in L2 when the bias is added
            cols.seg, cols.segstride = g.OW, g.Wp
            if bias != NULL:
                rb = max(1, <Py_ssize_t>(YT_BLOCK // (g.cout_g * g.OW * sizeof(floating))))
            else:
                rb = g.OH
            r0 = 0
            while r0 < g.OH:
                nr = min(rb, g.OH - r0)
                if gemm_im2col(False, False, g.cout_g, nr * g.OW, g.K, 1,
                               w + grp * g.cout_g * g.K, g.K,
                               xp + grp * g.cin_g * g.plane + r0 * g.Wp, &cols, 0,
                               y + grp * g.cout_g * g.P + r0 * g.OW, g.P, n_threads) != 0:
                    return -1
                if bias != NULL:
                    add_bias(y + grp * g.cout_g * g.P + r0 * g.OW, bias + grp * g.cout_g,
                             g.cout_g, nr * g.OW, g.P)
                r0 += nr
            continue
        elif gemm_im2col(False, False, g.cout_g, ld, g.K, 1, w + grp * g.cout_g * g.K, g.K,
                         xp + grp * g.cin_g * g.plane, &cols, 0, yt, ld, n_threads) != 0:
            return -1
        for i in range(nb):
            unpad_rows(yt + i * g.NP, ld, g.Wp,
                       y + (i * g.C_out + grp * g.cout_g) * g.P, g.P, g.cout_g, g.OH, g.OW,
                       bias + grp * g.cout_g if bias != NULL else NULL)
    return 0


cdef int run_forward(const floating *x, const floating *w, const floating *bias, floating *y,
                     Geometry *g, int n_threads) noexcept nogil:
    """forward over the batch: images (or chunks of images) in parallel when there are at
    least n_threads of them (each thread writes only its images' planes), else in turn with
    a parallel GEMM. Chunking never changes results: every output element is reduced over
    the same K in the same order whatever the GEMM's width. 0, or -1: no memory."""
    cdef Py_ssize_t n, nb = 1, nchunks = g.N
    cdef Py_ssize_t xs = g.C_in * g.H * g.W, ys = g.C_out * g.P
    cdef int failed = 0
    cdef bint runs = floating is float and runs_serve(g)
    cdef Py_ssize_t per_image = fc_rowruns_cols(g.P) if runs else g.NP
    if g.padded:
        # about CHUNK_COLUMNS columns per GEMM, in a number of chunks that the threads share
        # evenly
        nb = max(1, min(g.N, (CHUNK_COLUMNS + per_image - 1) // per_image))
        nchunks = (g.N + nb - 1) // nb
        if n_threads > 1 and g.N >= n_threads:
            nchunks = (nchunks + n_threads - 1) // n_threads * n_threads
        nb = (g.N + nchunks - 1) // nchunks
        nchunks = (g.N + nb - 1) // nb
    if nchunks >= n_threads and n_threads > 1:
        for n in prange(nchunks, num_threads=n_threads, schedule="static"):
            if runs:
                failed += forward_chunk_runs(<const float *>x + n * nb * xs, <const float *>w,
                                             <const float *>bias, <float *>y + n * nb * ys,
                                             g, min(nb, g.N - n * nb), 1) != 0
            elif g.padded:
                failed += forward_chunk_padded(x + n * nb * xs, w, bias, y + n * nb * ys, g,
                                               min(nb, g.N - n * nb), 1) != 0
            else:
                failed += forward_image(x + n * xs, w, bias, y + n * ys, g, 1) != 0
    else:
        for n in range(nchunks):
            if runs:
                failed = forward_chunk_runs(<const float *>x + n * nb * xs, <const float *>w,
                                            <const float *>bias, <float *>y + n * nb * ys,
                                            g, min(nb, g.N - n * nb), n_threads) != 0
            elif g.padded:
                failed = forward_chunk_padded(x + n * nb * xs, w, bias, y + n * nb * ys, g,
                                              min(nb, g.N - n * nb), n_threads) != 0
            else:
                failed = forward_image(x + n * xs, w, bias, y + n * ys, g, n_threads) != 0
            if failed:
                break
    return -1 if failed else 0


cdef inline void pad_image(const floating *x, Geometry *g, floating *xp,
                           Py_ssize_t size) noexcept nogil:
    """One image into the row-offset form's workspace (stride 1: padded planes; stride 2:
    their phases)."""
    if g.phased:
        pad_planes_phased(x, g.C_in, g.H, g.W, g.ph, g.pw, g.Hp, g.Wp, xp, size)
    else:
        pad_planes(x, g.C_in, g.H, g.W, g.ph, g.pw, g.Hp, g.Wp, xp, size)


cdef int64_t[::1] set_taps(Geometry *g):
    """The tap offsets of the row-offset form (None when g does not use it); the caller
    keeps the returned array alive while g is in use."""
    cdef int64_t[::1] taps
    if not g.padded:
        return None
    taps = np.empty(g.K, np.int64)
    if g.phased:
        tap_offsets_phased(&taps[0], g.cin_g, g.kh, g.kw, g.Hp, g.Wp)
    else:
        tap_offsets(&taps[0], g.cin_g, g.kh, g.kw, g.dh, g.dw, g.Hp, g.Wp)
    g.pcols.rowoff = &taps[0]
    return taps


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
    cdef int failed = 0
    cdef const floating *b = NULL
    if g.N == 0 or g.C_out == 0 or g.P == 0:
        return
    if g.C_in == 0 or g.H * g.W == 0:       # no window sees a pixel: out = bias
        out[...] = 0
        if bias.shape[0] > 0:
            np.asarray(out)[...] += np.asarray(bias)[:, None, None]
        return
    if bias.shape[0] > 0:
        b = &bias[0]
    taps = set_taps(&g)
    with nogil:
        failed = run_forward(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], b, &out[0, 0, 0, 0], &g,
                             n_threads)
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
    # Stride 1: the input gradient is the forward convolution of grad_out (zero-padded by
    # dilation*(k-1) - padding) with the flipped, in/out-swapped kernel; in the row-offset
    # form that needs neither column matrix nor col2im.
    cdef Geometry gt
    cdef const floating[:, :, :, ::1] wt
    # It pads grad_out by d*(k-1) - p a side, so small planes get many junk columns. Against
    # GEMM + col2im, measured: on the GEMM, under 8 channels or over 25% junk lost (float64
    # 5x5 on 14x14 1.5-2.2x); on the no-pack kernel, 4+ channels and junk up to 100% won
    # everywhere tried (lenet_c2 0.66-0.72x, small planes 0.30-0.68x; 1-3 channels lost)
    # with AVX-512's 8-row tiles; with AVX2's 4-row tiles lenet_c2's 6 channels lost (1.19x
    # at 1 thread, Zen 3), 8 channels won (0.52x on 32x32), so there 8+.
    cdef bint rowoff = floating is float and rowoff_serves(g.cin_g)
    cdef Py_ssize_t min_cin = 8 if not rowoff or fc_rowoff_rows() < 8 else 4
    if stride_h == 1 and stride_w == 1 and g.cin_g >= min_cin and \
            pad_h <= dil_h * (g.kh - 1) and pad_w <= dil_w * (g.kw - 1) and \
            g.H == g.OH + dil_h * (g.kh - 1) - 2 * pad_h and \
            g.W == g.OW + dil_w * (g.kw - 1) - 2 * pad_w:
        gt = make_geometry(g.N, g.C_out, g.OH, g.OW, g.C_in, g.H, g.W, g.kh, g.kw, 1, 1,
                           dil_h * (g.kh - 1) - pad_h, dil_w * (g.kw - 1) - pad_w, dil_h,
                           dil_w, groups, sizeof(floating))
        if gt.padded and (gt.Wp - gt.OW) * (1 if rowoff else 4) <= gt.OW:
            wt = np.ascontiguousarray(
                np.asarray(weight).reshape(groups, g.cout_g, g.cin_g, g.kh, g.kw)
                .transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1]
                .reshape(g.C_in, g.cout_g, g.kh, g.kw))
            taps = set_taps(&gt)
            with nogil:
                failed = run_forward(&grad_out[0, 0, 0, 0], &wt[0, 0, 0, 0], NULL,
                                     &grad_in[0, 0, 0, 0], &gt, n_threads)
            if failed:
                raise MemoryError("conv2d_im2col.backward_input: cannot allocate the "
                                  "padded workspace")
            return
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


include "_im2col_wgrad.pxi"


def backward_weight(const floating[:, :, :, ::1] x,        # IN  (N, C_in, H, W)
                    const floating[:, :, :, ::1] grad_out, # IN  (N, C_out, OH, OW)
                    floating[:, :, :, ::1] grad_weight,    # OUT (C_out, C_in // groups, kh, kw)
                    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                    int groups, int n_threads):
    """grad_weight (fully overwritten) = sum over images of gy[n] @ cols(x[n])^T. Stride-1
    layers: the row-offset forms below. Others: groups of WG_GROUP images in parallel into
    partial gradients (disjoint writes), added in group order; with one group, images in
    order, each GEMM parallel over grad_weight's tiles. Either way each thread packs its own
    columns straight from the image."""
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
    if g.N == 0 or g.P == 0 or g.H * g.W == 0:      # no window sees a pixel
        grad_weight[...] = 0
        return
    # The row-offset form multiplies the junk columns' zeros in gy' by real pixels: exact
    # unless a pixel is infinite or NaN (0 * inf = NaN), so such inputs take the general path.
    cdef Py_ssize_t nonfinite = 0, img = g.C_in * g.H * g.W
    if g.padded:
        with nogil:     # one image per iteration: a pass over x, shared by the threads
            for n in prange(g.N, num_threads=n_threads, schedule="static"):
                nonfinite += not all_finite(&x[0, 0, 0, 0] + n * img, img)
        g.padded = nonfinite == 0
    cdef WgPlan plan
    cdef int64_t[:, ::1] pieces
    if g.padded:
        taps = set_taps(&g)
        # measured: the dot form wins up to 32 output channels per group, the GEMM's
        # packing is amortised from 64 on. With AVX2's half-size blocks (Zen 3, against the
        # GEMM form) only short reductions win: 0.52-0.72x the time with 25-27 taps x
        # channels (lenet_c1, resnet20's first layer), 0.86-1.05x with 144-150, 1.11-1.20x
        # with 288.
        if fc_wg_available() and g.cout_g <= 32 and (fc_wg_wide() or g.K <= 64):
            plan = wg_plan(&g, sizeof(floating))
            pieces = np.empty((plan.max_pieces, 3), np.int64)
            with nogil:
                failed = backward_weight_dot(&x[0, 0, 0, 0], &grad_out[0, 0, 0, 0], gw, &g,
                                             &plan, <fc_wg_piece *>&pieces[0, 0], n_threads)
        else:
            with nogil:
                failed = backward_weight_padded(&x[0, 0, 0, 0], &grad_out[0, 0, 0, 0], gw,
                                                &g, n_threads)
        if failed:
            raise MemoryError("conv2d_im2col.backward_weight: cannot allocate the padded "
                              "workspace")
        return
    # Images in fixed groups of WG_GROUP, the groups in parallel, each into its own partial
    # gradient (one serial GEMM per image and group of channels), then the partials added in
    # group order: a parallel region per call, not a parallel GEMM per image (small GEMMs
    # split over threads, and a fork and join each), and the sums do not depend on the
    # thread count. One group (N <= WG_GROUP): the images in turn, each GEMM over the threads.
    cdef Py_ssize_t ngr = (g.N + WG_GROUP - 1) // WG_GROUP, gr, i, wsize = g.C_out * g.K
    cdef floating[:, ::1] parts
    cdef floating *pp
    if ngr > 1:
        parts = np.empty((ngr, wsize), dtype=np.asarray(grad_weight).dtype)
        pp = &parts[0, 0]
        with nogil:
            for gr in prange(ngr, num_threads=n_threads, schedule="static"):
                failed += wgrad_images(&x[0, 0, 0, 0], &grad_out[0, 0, 0, 0],
                                       pp + gr * wsize, &g, gr * WG_GROUP,
                                       min(g.N, (gr + 1) * WG_GROUP), 1)
            if not failed:
                memcpy(gw, pp, wsize * sizeof(floating))
                for gr in range(1, ngr):
                    for i in range(wsize):
                        gw[i] += pp[gr * wsize + i]
    else:
        with nogil:
            failed = wgrad_images(&x[0, 0, 0, 0], &grad_out[0, 0, 0, 0], gw, &g, 0, g.N,
                                  n_threads)
    if failed:
        raise MemoryError("conv2d_im2col.backward_weight: cannot allocate the column workspace")
