"""2-D convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016), for 3x3
kernels with stride 1 and groups 1 (any padding). A dilation d (per axis) that divides the
input's size and the padding is d_h*d_w undilated convolutions, one per phase of the input
(rows r::d_h, columns q::d_w, padding / d): the phases are split out, run as a batch of
images, and merged back (src/_winograd_phases.pxi). forward and backward_input do that image by image
when the batch shares evenly between the threads (run_phases: an image's phases stay in the
core's caches), otherwise over the whole batch (_split, _merge), as backward_weight does.

Each 2x2 output tile costs 16 multiplies per (input, output) channel pair instead of 36: the
input's 4x4 patches and the kernels are transformed (B^T d B, G g G^T), the channel sums are
16 GEMMs, one per position of the transformed tile, and the results are transformed back
(A^T m A). winograd.h has the formulas, the layout and the AVX-512 block kernel.

- forward: the above, bias added in the output transform.
- backward_input: the forward convolution of grad_out with the 180-degree-rotated,
  in/out-swapped kernel, its top-left padding 2 - pad (grad_in may be larger than the
  convolution's input: its extra rows and columns see zeros).
- backward_weight: dU = sum over tiles of (A dY A^T) * V, then G^T dU G (winograd_wgrad.h),
  float32 on AVX-512; float64 and other CPUs run conv2d_im2col's.

A NaN or infinity in the input, grad_out or the weights would leak into the whole 2x2 tile
through the transforms (inf - inf), unlike the direct sum: the weight transform, the packing
and the grad_out transform detect it, and such calls run conv2d_im2col's instead.

Level of parallelism: one per pass. forward and backward_input transform the weights over
output channels, then (N >= threads) give each thread chunks of images to pack into its own
scratch (they stay in L2) and compute, block by block of 48 tiles; with fewer images the
channels are packed in parallel and the blocks run in parallel. Every tile's outputs are
written by one block, and computed the same way whichever block holds it, so results do not
depend on the thread count. backward_weight sums fixed groups of images (by the shape, not
the thread count) in parallel into partials, added in group order.

Workspace: the transformed weights, packed inputs and run_phases' images live in per-thread
scratch (scratch.h), reused from call to call; backward_weight allocates its partial sums (at
most 16 MiB).
"""
from cython.parallel cimport prange
from cython cimport floating

from libc.stdint cimport int64_t
import numpy as np

from libc.string cimport memset
from scratch cimport fc_scratch
from fastconv._ext import conv2d_im2col as _im2col

cdef extern from "winograd.h" nogil:
    ctypedef struct fc_wn_geo:
        int64_t N, C, K, H, W, OH, OW, ph, pw, th, tw, Hq, Wq, ntiles, ld, ln
    enum:
        FC_WN_TB, FC_WN_KC
    void fc_wn_geometry(fc_wn_geo *g, int64_t N, int64_t C, int64_t K, int64_t H, int64_t W,
                        int64_t OH, int64_t OW, int64_t ph, int64_t pw) noexcept
    bint fc_wn_simd() noexcept
    bint fc_wn_avx2() noexcept
    const char *fc_cpu_target_name() noexcept
    int fc_wn_pack_f32(const float *x, int64_t c, const fc_wn_geo *g, float *xp,
                       float *row) noexcept
    int fc_wn_pack_f64(const double *x, int64_t c, const fc_wn_geo *g, double *xp,
                       double *row) noexcept
    int fc_wn_weights_f32(const float *w, int64_t k, int flip, const fc_wn_geo *g,
                          float *U) noexcept
    int fc_wn_weights_f64(const double *w, int64_t k, int flip, const fc_wn_geo *g,
                          double *U) noexcept
    int fc_wn_pack_all_f32(const float *x, const fc_wn_geo *g, float *xp) noexcept
    int fc_wn_pack_all_f32_avx2(const float *x, const fc_wn_geo *g, float *xp) noexcept
    void fc_wn_block_f32(const fc_wn_geo *g, const float *xp, const float *U,
                         const float *bias, float *y, int64_t t0, int nv, float *V,
                         float *M) noexcept
    void fc_wn_block_f32_avx2(const fc_wn_geo *g, const float *xp, const float *U,
                              const float *bias, float *y, int64_t t0, int nv, float *V,
                              float *M) noexcept
    void fc_wn_block_generic_f32(const fc_wn_geo *g, const float *xp, const float *U,
                                 const float *bias, float *y, int64_t t0, float *V,
                                 float *M) noexcept
    void fc_wn_block_generic_f64(const fc_wn_geo *g, const double *xp, const double *U,
                                 const double *bias, double *y, int64_t t0, double *V,
                                 double *M) noexcept


cdef extern from "winograd_wgrad.h" nogil:
    int64_t fc_wn_cpad(int64_t C) noexcept
    void fc_wn_wgrad_finish(const float *dU, int64_t K, int64_t C, int64_t k,
                            float *gw) noexcept
    int fc_wn_wgrad_block(const fc_wn_geo *g, const float *xp, const float *gy, int64_t t0,
                          int nv, float *Vt, float *Yt, float *tmp, float *dU) noexcept
    int fc_wn_wgrad_block_avx2(const fc_wn_geo *g, const float *xp, const float *gy,
                               int64_t t0, int nv, float *Vt, float *Yt, float *tmp,
                               float *dU) noexcept

# backward_weight: at most this many groups of images (partial sums), and this many bytes
# of partial sums; fixed by the shape, so the summation order does not depend on threads
cdef Py_ssize_t WG_GROUPS = 8
cdef size_t WG_BUDGET = 16 << 20


def simd_available():
    """True when the float32 blocks (forward, input and weight gradients) run a SIMD
    kernel: AVX-512 or AVX2 + FMA. Otherwise the blocks are portable C and backward_weight
    runs conv2d_im2col's."""
    return bool(fc_wn_simd() or fc_wn_avx2())


def simd_target():
    """The code path the float32 blocks take here: "avx512f", "avx2" or "generic" (the
    CPU's best, or a lower one forced by FASTCONV_SIMD_TARGET)."""
    return fc_cpu_target_name().decode()



def supports(int kh, int kw, int stride_h, int stride_w, int dil_h, int dil_w, int groups,
             Py_ssize_t H=0, Py_ssize_t W=0, int pad_h=0, int pad_w=0):
    """Whether this module computes the convolution with these parameters: a 3x3 kernel,
    stride 1, groups 1, and dilation 1 or a dilation that divides the input's size (H, W)
    and the padding (the convolution is then dil_h*dil_w undilated ones on the input's
    phases)."""
    return kh == 3 and kw == 3 and stride_h == 1 and stride_w == 1 and groups == 1 and \
        dil_h >= 1 and dil_w >= 1 and (dil_h == dil_w == 1 or (
            H % dil_h == 0 and W % dil_w == 0 and pad_h % dil_h == 0 and pad_w % dil_w == 0))


# images per chunk in the batch-parallel path: a chunk's packed input (4 phase planes per
# channel) stays in L2 while its blocks read it
cdef size_t CHUNK_BYTES = 384 << 10


cdef inline Py_ssize_t chunk_images(fc_wn_geo *g, size_t itemsize) noexcept nogil:
    """Images in a chunk of g: as many as CHUNK_BYTES of packed input hold, at least one."""
    return max(1, <Py_ssize_t>(CHUNK_BYTES // (g.ln * itemsize)))


cdef int pack(const floating *x, fc_wn_geo *g, floating *xp, floating *row) noexcept nogil:
    """Every channel of g's images into xp; 1 if the input holds a NaN or an infinity."""
    cdef Py_ssize_t c
    cdef int bad = 0
    if floating is float:
        if fc_wn_simd():
            return fc_wn_pack_all_f32(x, g, xp)
        if fc_wn_avx2():
            return fc_wn_pack_all_f32_avx2(x, g, xp)
        for c in range(g.C):
            bad |= fc_wn_pack_f32(x, c, g, xp, row)
    else:
        for c in range(g.C):
            bad |= fc_wn_pack_f64(x, c, g, xp, row)
    return bad


cdef void blocks(fc_wn_geo *g, const floating *xp, const floating *U, const floating *bias,
                 floating *y, Py_ssize_t b0, Py_ssize_t b1, floating *V,
                 floating *M) noexcept nogil:
    """Blocks [b0, b1) of g's tiles (the last one may be short)."""
    cdef Py_ssize_t b, t0
    cdef int nv
    for b in range(b0, b1):
        t0 = b * FC_WN_TB
        nv = <int>min(<Py_ssize_t>(FC_WN_TB // 16), (g.ntiles - t0 + 15) // 16)
        if floating is float:
            if fc_wn_simd():
                fc_wn_block_f32(g, xp, U, bias, y, t0, nv, V, M)
            elif fc_wn_avx2():
                fc_wn_block_f32_avx2(g, xp, U, bias, y, t0, nv, V, M)
            else:
                fc_wn_block_generic_f32(g, xp, U, bias, y, t0, V, M)
        else:
            fc_wn_block_generic_f64(g, xp, U, bias, y, t0, V, M)


cdef inline size_t m_size(fc_wn_geo *g) noexcept nogil:
    """Values in a thread's M buffer, which also serves as the portable packing's row."""
    return max(<size_t>(16 * FC_WN_KC * FC_WN_TB), <size_t>(2 * g.Wq))


cdef int chunk(const floating *x, const floating *U, const floating *bias, floating *y,
               fc_wn_geo *g, Py_ssize_t n0, Py_ssize_t nc) noexcept nogil:
    """Images [n0, n0 + nc) on this thread: pack them into its scratch, then their blocks.
    0, 1 (non-finite input) or -1 (no memory)."""
    cdef fc_wn_geo gc
    fc_wn_geometry(&gc, nc, g.C, g.K, g.H, g.W, g.OH, g.OW, g.ph, g.pw)
    cdef floating *xp = <floating *>fc_scratch(2, gc.N * gc.ln * sizeof(floating))
    cdef floating *V = <floating *>fc_scratch(0, 16 * gc.C * FC_WN_TB * sizeof(floating))
    cdef floating *M = <floating *>fc_scratch(3, m_size(&gc) * sizeof(floating))
    if xp == NULL or V == NULL or M == NULL:
        return -1
    if pack(x + n0 * g.C * g.H * g.W, &gc, xp, M):
        return 1
    blocks(&gc, xp, U, bias, y + n0 * g.K * g.OH * g.OW, 0,
           (gc.ntiles + FC_WN_TB - 1) // FC_WN_TB, V, M)
    return 0


cdef int transform(const floating *w, bint flip, fc_wn_geo *g, floating **U,
                   int n_threads) noexcept nogil:
    """*U = the transformed weights of g (scratch slot 1 of the calling thread), in parallel
    over output channels. 0, 1 (a NaN or an infinity in w) or -1 (no memory)."""
    cdef Py_ssize_t k
    cdef int bad = 0
    U[0] = <floating *>fc_scratch(1, 16 * g.K * g.C * sizeof(floating))
    if U[0] == NULL:
        return -1
    for k in prange(g.K, num_threads=n_threads, schedule="static"):
        if floating is float:
            bad += fc_wn_weights_f32(w, k, flip, g, U[0])
        else:
            bad += fc_wn_weights_f64(w, k, flip, g, U[0])
    return 1 if bad else 0


cdef int run(const floating *x, const floating *w, bint flip, const floating *bias,
             floating *y, fc_wn_geo *g, int n_threads) noexcept nogil:
    """y = the convolution of fc_wn_geo g. 0, 1 (non-finite input or weights: y partly
    written) or -1 (no memory).

    With at least n_threads images, chunks of images run in parallel, each thread packing
    its own chunk (which then stays in its L2). Otherwise the channels are packed in
    parallel into one buffer and the blocks of tiles run in parallel. Scratch slots: the
    calling thread keeps U in 1 (and the shared packing in 2); every thread uses 0, 2 and 3
    for its V, packed chunk and M."""
    cdef floating *U = NULL
    cdef floating *xp
    cdef floating *row
    cdef Py_ssize_t i, nb, nchunks, nblocks
    cdef int bad = 0, nomem = 0, status = transform(w, flip, g, &U, n_threads)
    cdef floating *V
    cdef floating *M
    if status:
        return status
    if g.N >= n_threads:
        # chunks of at most CHUNK_BYTES (or one image), a multiple of n_threads of them
        # (at most N), their sizes differing by at most one image
        nb = chunk_images(g, sizeof(floating))
        nchunks = (g.N + nb - 1) // nb
        nchunks = min(g.N, (nchunks + n_threads - 1) // n_threads * n_threads)
        for i in prange(nchunks, num_threads=n_threads, schedule="static"):
            status = chunk(x, U, bias, y, g, i * g.N // nchunks,
                           (i + 1) * g.N // nchunks - i * g.N // nchunks)
            nomem += status < 0
            bad += status > 0
        return -1 if nomem else (1 if bad else 0)
    xp = <floating *>fc_scratch(2, g.N * g.ln * sizeof(floating))
    if xp == NULL:
        return -1
    for i in prange(g.C, num_threads=n_threads, schedule="static"):
        row = <floating *>fc_scratch(3, m_size(g) * sizeof(floating))
        if row == NULL:
            nomem += 1
        elif floating is float:
            bad += fc_wn_pack_f32(x, i, g, xp, row)
        else:
            bad += fc_wn_pack_f64(x, i, g, xp, row)
    if nomem or bad:
        return -1 if nomem else 1
    nblocks = (g.ntiles + FC_WN_TB - 1) // FC_WN_TB
    for i in prange(nblocks, num_threads=n_threads, schedule="static"):
        V = <floating *>fc_scratch(0, 16 * g.C * FC_WN_TB * sizeof(floating))
        M = <floating *>fc_scratch(3, m_size(g) * sizeof(floating))
        if V == NULL or M == NULL:
            nomem += 1
        else:
            blocks(g, xp, U, bias, y, i, i + 1, V, M)
    return -1 if nomem else 0


# a dilation as undilated convolutions on the input's phases
include "_winograd_phases.pxi"


cdef object check_supported(str op, int kh, int kw, int stride_h, int stride_w, int dil_h,
                            int dil_w, int groups, Py_ssize_t H, Py_ssize_t W, int pad_h,
                            int pad_w):
    if not supports(kh, kw, stride_h, stride_w, dil_h, dil_w, groups, H, W, pad_h, pad_w):
        raise ValueError(f"conv2d_winograd.{op}: expected a 3x3 kernel, stride 1, groups 1 "
                         f"and dilation 1 (or one dividing the input size and the padding), "
                         f"got kernel {kh}x{kw}, stride ({stride_h}, {stride_w}), dilation "
                         f"({dil_h}, {dil_w}), groups {groups}, input {H}x{W}, padding "
                         f"({pad_h}, {pad_w})")


cdef bint fallback(str op, int status) except -1:
    """True when run's status asks for conv2d_im2col's kernel (1: a NaN or an infinity in
    the input or the weights, or no pixel under any window); MemoryError for -1."""
    if status < 0:
        raise MemoryError(f"conv2d_winograd.{op}: cannot allocate the workspace")
    return status == 1


def forward(const floating[:, :, :, ::1] x,        # IN  (N, C_in, H, W)
            const floating[:, :, :, ::1] weight,   # IN  (C_out, C_in, 3, 3)
            const floating[::1] bias,              # IN  (C_out,) or length 0: no bias
            floating[:, :, :, ::1] out,            # OUT (N, C_out, OH, OW): fully overwritten
            int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
            int groups, int n_threads):
    """out = conv2d(x, weight) + bias. Parallel over blocks of output tiles (each thread
    writes only its blocks' tiles). Inputs holding NaN or infinity run conv2d_im2col."""
    check_supported("forward", weight.shape[2], weight.shape[3], stride_h, stride_w, dil_h,
                    dil_w, groups, x.shape[2], x.shape[3], pad_h, pad_w)
    cdef fc_wn_geo g
    cdef int status = 0
    cdef Py_ssize_t oh, ow
    cdef const floating *b = NULL
    if bias.shape[0] > 0:
        b = &bias[0]
    if dil_h != 1 or dil_w != 1:
        # each phase's output at its natural size (a multiple of the dilation); out may be
        # smaller (conv_transpose2d's input gradient under output_padding): then cropped
        oh, ow = x.shape[2] + 2 * pad_h - 2 * dil_h, x.shape[3] + 2 * pad_w - 2 * dil_w
        if (oh, ow) == (out.shape[2], out.shape[3]) and phases_in_cache(
                x.shape[0], x.shape[1], out.shape[1], x.shape[2], x.shape[3], oh, ow, dil_h,
                dil_w, n_threads):
            fc_wn_geometry(&g, dil_h * dil_w, x.shape[1], out.shape[1], x.shape[2] // dil_h,
                           x.shape[3] // dil_w, oh // dil_h, ow // dil_w, pad_h // dil_h,
                           pad_w // dil_w)
            with nogil:
                status = run_phases(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], False, b,
                                    &out[0, 0, 0, 0], &g, x.shape[0], x.shape[2], x.shape[3],
                                    oh, ow, dil_h, dil_w, n_threads)
            if fallback("forward", status):
                _im2col.forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, dil_h,
                                dil_w, groups, n_threads)
            return
        xs = _split(x, dil_h, dil_w, n_threads)
        ys = np.empty((xs.shape[0], out.shape[1], oh // dil_h, ow // dil_w), xs.dtype)
        forward(xs, weight, bias, ys, 1, 1, pad_h // dil_h, pad_w // dil_w, 1, 1, 1, n_threads)
        if (oh, ow) == (out.shape[2], out.shape[3]):
            _merge(ys, out, dil_h, dil_w, n_threads)
        else:
            full = np.empty((out.shape[0], out.shape[1], oh, ow), xs.dtype)
            _merge(ys, full, dil_h, dil_w, n_threads)
            np.asarray(out)[...] = full[:, :, :out.shape[2], :out.shape[3]]
        return
    fc_wn_geometry(&g, x.shape[0], x.shape[1], out.shape[1], x.shape[2], x.shape[3],
                   out.shape[2], out.shape[3], pad_h, pad_w)
    if g.N == 0 or g.K == 0 or g.OH * g.OW == 0:
        return
    # no pixel under any window (only padding): im2col's forward gives the bias
    status = 1
    if g.C > 0 and g.H * g.W > 0:
        with nogil:
            status = run(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], False, b, &out[0, 0, 0, 0],
                         &g, n_threads)
    if fallback("forward", status):        # that, or a NaN / infinity in x or the weights
        _im2col.forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                        groups, n_threads)


def backward_input(const floating[:, :, :, ::1] grad_out,  # IN  (N, C_out, OH, OW)
                   const floating[:, :, :, ::1] weight,    # IN  (C_out, C_in, 3, 3)
                   floating[:, :, :, ::1] grad_in,         # OUT (N, C_in, H, W): fully overwritten
                   int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                   int groups, int n_threads):
    """grad_in = d(conv2d)/dx applied to grad_out: the forward convolution of grad_out with
    the rotated, in/out-swapped kernel, padded by 2 - pad at the top and left (grad_in may be
    larger than the convolution's input, as conv_transpose2d's output_padding asks: its
    extra rows and columns see zeros). Parallel as forward."""
    check_supported("backward_input", weight.shape[2], weight.shape[3], stride_h, stride_w,
                    dil_h, dil_w, groups, grad_in.shape[2], grad_in.shape[3], pad_h, pad_w)
    cdef fc_wn_geo g
    cdef int status = 0
    if dil_h != 1 or dil_w != 1:
        if phases_in_cache(grad_out.shape[0], grad_out.shape[1], grad_in.shape[1],
                           grad_out.shape[2], grad_out.shape[3], grad_in.shape[2],
                           grad_in.shape[3], dil_h, dil_w, n_threads):
            fc_wn_geometry(&g, dil_h * dil_w, grad_out.shape[1], grad_in.shape[1],
                           grad_out.shape[2] // dil_h, grad_out.shape[3] // dil_w,
                           grad_in.shape[2] // dil_h, grad_in.shape[3] // dil_w,
                           2 - pad_h // dil_h, 2 - pad_w // dil_w)
            with nogil:
                status = run_phases(&grad_out[0, 0, 0, 0], &weight[0, 0, 0, 0], True, NULL,
                                    &grad_in[0, 0, 0, 0], &g, grad_out.shape[0],
                                    grad_out.shape[2], grad_out.shape[3], grad_in.shape[2],
                                    grad_in.shape[3], dil_h, dil_w, n_threads)
            if fallback("backward_input", status):
                _im2col.backward_input(grad_out, weight, grad_in, stride_h, stride_w, pad_h,
                                       pad_w, dil_h, dil_w, groups, n_threads)
            return
        gys = _split_grad(np.asarray(grad_out), dil_h, dil_w, n_threads)
        gxs = np.empty((gys.shape[0], grad_in.shape[1], grad_in.shape[2] // dil_h,
                        grad_in.shape[3] // dil_w), gys.dtype)
        backward_input(gys, weight, gxs, 1, 1, pad_h // dil_h, pad_w // dil_w, 1, 1, 1,
                       n_threads)
        _merge(gxs, grad_in, dil_h, dil_w, n_threads)
        return
    fc_wn_geometry(&g, grad_out.shape[0], grad_out.shape[1], grad_in.shape[1],
                   grad_out.shape[2], grad_out.shape[3], grad_in.shape[2], grad_in.shape[3],
                   2 - pad_h, 2 - pad_w)
    if g.N == 0 or g.K == 0 or g.OH * g.OW == 0:
        return
    if g.C == 0 or g.H * g.W == 0:
        grad_in[...] = 0
        return
    with nogil:
        status = run(&grad_out[0, 0, 0, 0], &weight[0, 0, 0, 0], True, NULL,
                     &grad_in[0, 0, 0, 0], &g, n_threads)
    if fallback("backward_input", status):
        _im2col.backward_input(grad_out, weight, grad_in, stride_h, stride_w, pad_h, pad_w,
                               dil_h, dil_w, groups, n_threads)


cdef int wgrad_group(const float *x, const float *gy, fc_wn_geo *g, Py_ssize_t n0,
                     Py_ssize_t nc, float *dU) noexcept nogil:
    """dU (16, K, CP) = the weight gradient's transformed sum over images [n0, n0 + nc), in
    block order. 0, 1 (non-finite x or grad_out) or -1 (no memory)."""
    cdef fc_wn_geo gc
    fc_wn_geometry(&gc, nc, g.C, g.K, g.H, g.W, g.OH, g.OW, g.ph, g.pw)
    cdef Py_ssize_t CP = fc_wn_cpad(g.C), b, t0
    cdef float *xp = <float *>fc_scratch(2, gc.N * gc.ln * sizeof(float))
    cdef float *Vt = <float *>fc_scratch(0, 16 * FC_WN_TB * CP * sizeof(float))
    cdef float *Yt = <float *>fc_scratch(3, (16 * g.K * FC_WN_TB + 4096) * sizeof(float))
    if xp == NULL or Vt == NULL or Yt == NULL:
        return -1
    cdef bint avx512 = fc_wn_simd()
    cdef int nv, bad
    memset(dU, 0, 16 * g.K * CP * sizeof(float))
    if pack(x + n0 * g.C * g.H * g.W, &gc, xp, <float *>NULL):   # SIMD: no row needed
        return 1
    for b in range((gc.ntiles + FC_WN_TB - 1) // FC_WN_TB):
        t0 = b * FC_WN_TB
        nv = <int>min(<Py_ssize_t>(FC_WN_TB // 16), (gc.ntiles - t0 + 15) // 16)
        if avx512:
            bad = fc_wn_wgrad_block(&gc, xp, gy + n0 * g.K * g.OH * g.OW, t0, nv, Vt, Yt,
                                    Yt + 16 * g.K * FC_WN_TB, dU)
        else:
            bad = fc_wn_wgrad_block_avx2(&gc, xp, gy + n0 * g.K * g.OH * g.OW, t0, nv, Vt, Yt,
                                         Yt + 16 * g.K * FC_WN_TB, dU)
        if bad:
            return 1
    return 0


def backward_weight(const floating[:, :, :, ::1] x,        # IN  (N, C_in, H, W)
                    const floating[:, :, :, ::1] grad_out, # IN  (N, C_out, OH, OW)
                    floating[:, :, :, ::1] grad_weight,    # OUT (C_out, C_in, 3, 3)
                    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w,
                    int groups, int n_threads):
    """grad_weight (fully overwritten) = d(conv2d)/dweight applied to grad_out. float32 with
    AVX-512 or AVX2: Winograd (winograd_wgrad.h), fixed groups of images in parallel into
    partial sums (disjoint writes) added in group order, then transformed back in parallel
    over output channels. float64, other CPUs, and inputs holding NaN or infinity:
    conv2d_im2col's."""
    check_supported("backward_weight", grad_weight.shape[2], grad_weight.shape[3], stride_h,
                    stride_w, dil_h, dil_w, groups, x.shape[2], x.shape[3], pad_h, pad_w)
    if not wgrad(x, grad_out, grad_weight, pad_h, pad_w, dil_h, dil_w, n_threads):
        _im2col.backward_weight(x, grad_out, grad_weight, stride_h, stride_w, pad_h, pad_w,
                                dil_h, dil_w, groups, n_threads)


cdef bint wgrad(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] grad_out,
                floating[:, :, :, ::1] grad_weight, int pad_h, int pad_w, int dil_h, int dil_w,
                int n_threads) except -1:
    """backward_weight by Winograd (a dilation on the phase images): True when done, False
    when the call is conv2d_im2col's (float64, no SIMD, empty sizes, or a NaN or an infinity
    in x or grad_out: then im2col runs on the caller's own arrays, the same bits as calling
    it directly)."""
    if floating is double or not simd_available():
        return False
    cdef floating[:, :, :, ::1] xs, gys
    if dil_h != 1 or dil_w != 1:
        xs = _split(x, dil_h, dil_w, n_threads)
        gys = _split_grad(np.asarray(grad_out), dil_h, dil_w, n_threads)
        return wgrad(xs, gys, grad_weight, pad_h // dil_h, pad_w // dil_w, 1, 1, n_threads)
    cdef fc_wn_geo g
    fc_wn_geometry(&g, x.shape[0], x.shape[1], grad_out.shape[1], x.shape[2], x.shape[3],
                   grad_out.shape[2], grad_out.shape[3], pad_h, pad_w)
    if g.N == 0 or g.C == 0 or g.K == 0 or g.OH * g.OW == 0 or g.H * g.W == 0:
        return False
    cdef Py_ssize_t CP = fc_wn_cpad(g.C), size = 16 * g.K * CP
    cdef Py_ssize_t ngroups = max(1, min(WG_GROUPS, g.N, <Py_ssize_t>(WG_BUDGET // (size * 4))))
    cdef Py_ssize_t nb = (g.N + ngroups - 1) // ngroups, i, j, k
    ngroups = (g.N + nb - 1) // nb
    cdef float[:, ::1] parts = np.empty((ngroups, size), np.float32)
    cdef float *pp = &parts[0, 0]
    cdef int status, bad = 0, nomem = 0
    with nogil:
        for i in prange(ngroups, num_threads=n_threads, schedule="static"):
            status = wgrad_group(<const float *>&x[0, 0, 0, 0],
                                 <const float *>&grad_out[0, 0, 0, 0], &g, i * nb,
                                 min(nb, g.N - i * nb), pp + i * size)
            nomem += status < 0
            bad += status > 0
        if not nomem and not bad:
            for k in prange(g.K, num_threads=n_threads, schedule="static"):
                for i in range(1, ngroups):
                    for j in range(16):
                        add_row(pp + (j * g.K + k) * CP, pp + i * size + (j * g.K + k) * CP, CP)
                fc_wn_wgrad_finish(pp, g.K, g.C, k, <float *>&grad_weight[0, 0, 0, 0])
    return not fallback("backward_weight", -1 if nomem else (1 if bad else 0))


cdef inline void add_row(float *acc, const float *a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        acc[i] += a[i]
