# The geometry of a conv2d_im2col call, shared by its passes (src/conv2d_im2col.pyx).
from gemm_api cimport fc_im2col_t

cdef enum:
    # Column workspace per thread: 16 MiB (float32: 4M entries) keeps the GEMM's B operand
    # large enough to run at full speed while bounding memory at a few tens of MB for any
    # input.
    COLS_BUDGET = 16 << 20


cdef struct Geometry:
    Py_ssize_t N, C_in, H, W, C_out, OH, OW
    int kh, kw, sh, sw, ph, pw, dh, dw, groups
    Py_ssize_t cin_g, cout_g, K, P
    bint direct_cols      # 1x1, stride 1, no padding: the image itself is the column matrix
    Py_ssize_t rows       # output rows per block of backward_input's column matrix
    fc_im2col_t cols      # one group of one image as the GEMM's implicit B operand
    # the row-offset form (_padded.pxd): stride 1, little junk; pcols.rowoff is set by the
    # caller (set_taps) to an array of K offsets that it keeps alive during the call
    bint padded
    bint phased           # stride 2: the padded planes split into 4 phases of Hp x Wp
    Py_ssize_t Hp, Wp, NP, plane, xsize   # padded plane, columns OH*Wp, image + tail
    fc_im2col_t pcols


cdef inline Geometry make_geometry(Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t C_out, Py_ssize_t OH, Py_ssize_t OW, int kh, int kw,
                            int sh, int sw, int ph, int pw, int dh, int dw, int groups,
                            size_t itemsize):
    cdef Geometry g
    g.N, g.C_in, g.H, g.W, g.C_out, g.OH, g.OW = N, C_in, H, W, C_out, OH, OW
    g.kh, g.kw, g.sh, g.sw, g.ph, g.pw = kh, kw, sh, sw, ph, pw
    g.dh, g.dw, g.groups = dh, dw, groups
    g.cin_g = C_in // groups
    g.cout_g = C_out // groups
    g.K = g.cin_g * kh * kw
    g.P = OH * OW
    # (an output smaller than the input happens in conv_transpose2d's gradients with
    # output_padding: the image is then not the column matrix)
    g.direct_cols = (kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
                     and OH == H and OW == W)
    g.cols.C, g.cols.H, g.cols.W, g.cols.OW, g.cols.oh0 = g.cin_g, H, W, OW, 0
    g.cols.kh, g.cols.kw, g.cols.sh, g.cols.sw = kh, kw, sh, sw
    g.cols.ph, g.cols.pw, g.cols.dh, g.cols.dw = ph, pw, dh, dw
    g.cols.rowoff, g.cols.seg, g.cols.segstride = NULL, 0, 0
    # The padded image holds every row and column a stride-1 window reads: padding="same"
    # with an even kernel asks for more output than H + 2*ph allows (the extra padding goes
    # to the bottom and right, as PyTorch), so the planes grow to fit the output.
    # Stride 2 (dilation 1): the padded image is split into its 4 phases (even/odd rows x
    # even/odd columns, Hp x Wp each, _padded.pxd: pad_planes_phased), in which every tap of
    # a stride-2 window again reads a contiguous run of the Wp-wide output grid. Not for 1xk
    # or kx1 kernels, whose taps use only some phases (1x1 stride 2: 3.5x slower than the
    # general path, measured), though all 4 are copied.
    g.phased = sh == 2 and sw == 2 and dh == 1 and dw == 1 and kh >= 2 and kw >= 2
    if g.phased:
        g.Hp = max((H + 2 * ph + 1) // 2, OH + (kh - 1) // 2)
        g.Wp = max((W + 2 * pw + 1) // 2, OW + (kw - 1) // 2)
        g.plane = 4 * g.Hp * g.Wp
    else:
        g.Hp = max(H + 2 * ph, OH + (kh - 1) * dh)
        g.Wp = max(W + 2 * pw, OW + (kw - 1) * dw)
        g.plane = g.Hp * g.Wp
    g.NP = OH * g.Wp
    # 16 spare entries: the junk columns of the last tap read (kw - 1) * dw past the planes
    g.xsize = C_in * g.plane + (kw - 1) * dw + 16
    # Junk columns cost compute, but one GEMM over a chunk of images (weights packed once,
    # panels packed by plain copies) beats a small GEMM per image: measured 2-5x faster
    # forward and weight gradient with up to 2 junk columns per real one (lenet_c2: 4 per 10).
    g.padded = ((sh == 1 and sw == 1 or g.phased) and not g.direct_cols and OH > 0 and OW > 0
                and g.K > 0 and (g.Wp - OW) <= 2 * OW)
    g.pcols = g.cols
    g.pcols.seg, g.pcols.segstride = g.NP, 0
    g.rows = OH
    if not g.direct_cols and g.K * OW > 0:
        g.rows = <Py_ssize_t>(COLS_BUDGET // (<size_t>g.K * OW * itemsize))
        if g.rows < 1:
            g.rows = 1
        if g.rows > OH:
            g.rows = OH
    return g
