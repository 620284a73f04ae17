# Included by conv2d_winograd.pyx: a dilation (d_h, d_w) dividing the input's size and the
# padding as d_h*d_w undilated convolutions, one per phase of the input (rows r::d_h, columns
# q::d_w). The phases of a whole batch (_split, _merge, for the whole-batch path and
# backward_weight), or of one image at a time in per-thread scratch (run_phases).

cdef extern from "stride2_simd.h" nogil:
    bint fc_stride2_copy_f32(const float *src, int64_t n, float *dst) noexcept
    bint fc_interleave2_f32(float *dst, const float *a, const float *b, int64_t n) noexcept


def _split(const floating[:, :, :, ::1] a, int dh, int dw, int n_threads):
    """(N, C, H, W) -> (N*dh*dw, C, H/dh, W/dw): image (n*dh + r)*dw + s is a[n, :, r::dh,
    s::dw]. Parallel over a's planes."""
    cdef Py_ssize_t N = a.shape[0], C = a.shape[1], H = a.shape[2], W = a.shape[3], i
    out = np.empty((N * dh * dw, C, H // dh, W // dw), np.asarray(a).dtype)
    cdef floating[:, :, :, ::1] o = out
    if out.size:
        with nogil:
            for i in prange(N * C, num_threads=n_threads, schedule="static"):
                phase_copy(&a[0, 0, 0, 0] + i * H * W, &o[0, 0, 0, 0], i // C, i % C, C, H, W,
                           dh, dw, True)
    return out


def _split_grad(grad_out, int dh, int dw, int n_threads):
    """_split of grad_out, zero-padded at the bottom and right to a multiple of the dilation
    first: with conv_transpose2d's output_padding the input is larger than the output's
    size implies, and grad_out's rows need not divide evenly (the zeros add nothing)."""
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    if oh % dh or ow % dw:
        grad_out = np.pad(grad_out, ((0, 0), (0, 0), (0, -oh % dh), (0, -ow % dw)))
    return _split(grad_out, dh, dw, n_threads)


def _merge(const floating[:, :, :, ::1] p, floating[:, :, :, ::1] out, int dh, int dw,
           int n_threads):
    """The inverse of _split: out (N, C, H, W) from p (N*dh*dw, C, H/dh, W/dw)."""
    cdef Py_ssize_t N = out.shape[0], C = out.shape[1], H = out.shape[2], W = out.shape[3], i
    if N * C * H * W:
        with nogil:
            for i in prange(N * C, num_threads=n_threads, schedule="static"):
                phase_copy(&out[0, 0, 0, 0] + i * H * W, <floating *>&p[0, 0, 0, 0], i // C,
                           i % C, C, H, W, dh, dw, False)


cdef void phase_copy(floating *plane, floating *phases, Py_ssize_t n, Py_ssize_t c,
                     Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int dh, int dw,
                     bint to_phases) noexcept nogil:
    """Plane (n, c) of the full image to (to_phases) or from its dh*dw phase images. Float32
    rows with dw == 2 move both column phases at once by SIMD (stride2_simd.h)."""
    cdef Py_ssize_t r, q, h, w, Hs = H // dh, Ws = W // dw
    cdef Py_ssize_t step = C * Hs * Ws   # phase image (n, r, q) to (n, r, q + 1)
    cdef floating *row
    cdef floating *ph
    for r in range(dh):
        for h in range(Hs):
            row = plane + (h * dh + r) * W
            ph = phases + ((n * dh + r) * dw * C + c) * Hs * Ws + h * Ws   # row h of q = 0
            if floating is float and dw == 2:
                if to_phases:
                    if fc_stride2_copy_f32(row, Ws, ph) and \
                            fc_stride2_copy_f32(row + 1, Ws, ph + step):
                        continue
                elif fc_interleave2_f32(row, ph, ph + step, Ws):
                    continue
            for q in range(dw):
                if to_phases:
                    for w in range(Ws):
                        ph[q * step + w] = row[w * dw + q]
                else:
                    for w in range(Ws):
                        row[w * dw + q] = ph[q * step + w]


cdef bint phases_in_cache(Py_ssize_t N, Py_ssize_t C, Py_ssize_t K, Py_ssize_t H,
                          Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int dh, int dw,
                          int n_threads):
    """Whether a dilated call whose run reads (N, C, H, W) and writes (N, K, OH, OW) goes
    image by image (run_phases): every size positive and a multiple of the dilation, and
    images enough to share evenly between the threads. Otherwise the whole batch is split
    into phase images first, and those are shared out (a batch of one still uses every
    thread)."""
    return N >= n_threads and (N % n_threads == 0 or N >= 4 * n_threads) and C > 0 and \
        K > 0 and H > 0 and W > 0 and OH > 0 and OW > 0 and H % dh == 0 and W % dw == 0 and \
        OH % dh == 0 and OW % dw == 0


cdef int run_phases(const floating *x, const floating *w, bint flip, const floating *bias,
                    floating *y, fc_wn_geo *g, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W,
                    Py_ssize_t OH, Py_ssize_t OW, int dh, int dw, int n_threads) noexcept nogil:
    """y (N, K, OH, OW) = the dilated convolution of x (N, C, H, W), image by image: each
    thread splits its image into its dh*dw phase images (scratch slot 4, phase_copy), runs
    them as g (the geometry of one image's phases: g.N = dh*dw), in chunks of at most
    CHUNK_BYTES, into slot 5, and merges them into y, so the phases stay in the core's
    caches (split and merge over the whole batch go through memory: 0.7 ms of dilated_d2's
    7.7 ms forward at 2 threads). OH and OW are the phases' output sizes times dh and dw (no
    cropping). 0, 1 (non-finite input or weights) or -1 (no memory)."""
    cdef floating *U = NULL
    cdef floating *xs
    cdef floating *ys
    cdef Py_ssize_t n, c, p0, C = g.C, K = g.K
    cdef Py_ssize_t nb = chunk_images(g, sizeof(floating))
    cdef int bad = 0, nomem = 0, status = transform(w, flip, g, &U, n_threads)
    if status:
        return status
    for n in prange(N, num_threads=n_threads, schedule="static"):
        xs = <floating *>fc_scratch(4, C * H * W * sizeof(floating))
        ys = <floating *>fc_scratch(5, K * OH * OW * sizeof(floating))
        if xs == NULL or ys == NULL:
            nomem += 1
        else:
            for c in range(C):
                phase_copy(<floating *>x + (n * C + c) * H * W, xs, 0, c, C, H, W, dh, dw,
                           True)
            status = 0
            p0 = 0
            while p0 < g.N and status == 0:
                status = chunk(xs, U, bias, ys, g, p0, min(nb, g.N - p0))
                p0 = p0 + nb
            nomem += status < 0
            bad += status > 0
            if status == 0:
                for c in range(K):
                    phase_copy(y + (n * K + c) * OH * OW, ys, 0, c, K, OH, OW, dh, dw, False)
    return -1 if nomem else (1 if bad else 0)
