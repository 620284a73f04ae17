# Included by batchnorm2d.pyx (one module; split for length): the backward passes and
# their three schedules.

# ------------------------------------------------------------------------------ backward

ctypedef struct GradArgs:
    Py_ssize_t N, C, L
    double M                   # values per channel, N * L
    bint training, want_gx, want_gw, want_gb, want_sums
    bint relu                  # gy is relu's output gradient: mask it (_relu_masked)


cdef void _grad_input_planes(const GradArgs* g, const floating* gyp, const floating* xp,
                             floating* gxp, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c,
                             double w, double bias, double mean, double invstd,
                             double sum_gy, double dot, floating* mb) noexcept nogil:
    """Input gradient of channel c's planes n0 <= n < n1 given its sums over the batch (mb:
    this thread's plane of masked gy, with g.relu)."""
    cdef Py_ssize_t n, off
    cdef double ga = w * invstd, gd = 0, gc = 0
    if g.training:
        gd = -ga * invstd * invstd * dot / g.M
        gc = -ga * sum_gy / g.M
    for n in range(n0, n1):
        off = (n * g.C + c) * g.L
        if n + 1 < n1:
            fc_prefetch_w(gxp + off + g.C * g.L, g.L * sizeof(floating))
        _plane_grad_input_m(g.relu, gyp + off, xp + off, gxp + off, mb, g.L, mean, ga, gd, gc,
                            bias)


cdef void _store_param_grads(const GradArgs* g, Py_ssize_t c, double sum_gy, double dot,
                             double invstd, floating* gwp, floating* gbp) noexcept nogil:
    if g.want_gw:
        gwp[c] = <floating>(dot * invstd)
    if g.want_gb:
        gbp[c] = <floating>sum_gy


cdef void _channel_backward(const GradArgs* g, const floating* gyp, const floating* xp,
                            floating* gxp, floating* gwp, floating* gbp, Py_ssize_t c,
                            double w, double bias, double mean, double invstd,
                            floating* mb) noexcept nogil:
    """Everything of one channel, planes in order (the by-channel schedule)."""
    cdef Py_ssize_t n, off
    cdef double sg = 0, sd = 0, psg, psd
    if g.want_sums:
        for n in range(g.N):
            off = (n * g.C + c) * g.L
            if n + 1 < g.N:
                fc_prefetch(gyp + off + g.C * g.L, g.L * sizeof(floating))
                fc_prefetch(xp + off + g.C * g.L, g.L * sizeof(floating))
            _plane_grad_sums_m(g.relu, gyp + off, xp + off, mb, g.L, mean, w * invstd, bias,
                               &psg, &psd)
            sg += psg
            sd += psd
        _store_param_grads(g, c, sg, sd, invstd, gwp, gbp)
    if g.want_gx:
        _grad_input_planes(g, gyp, xp, gxp, 0, g.N, c, w, bias, mean, invstd, sg, sd, mb)


cdef _backward_image_major(const GradArgs* g, const floating* gyp, const floating* xp,
                           floating* gxp, floating* gwp, floating* gbp, const floating* wp,
                           const floating* bp, const double* sm, const double* si,
                           floating* mbuf, int n_threads):
    """The schedule for short planes (L < IMAGE_MAJOR_L): visiting one channel's N planes,
    C*L values apart, reads memory in runs too short for the prefetchers, so both passes
    walk the batch image by image instead, in parallel over images, and keep every plane's
    sums (N*C pairs); each channel then adds its planes' sums in plane order, exactly as
    _channel_backward does, so the results are bit-identical to the by-channel schedule's."""
    cdef Py_ssize_t n, c, off, NC = g.N * g.C
    cdef double sg, sd
    cdef floating* mb = NULL
    cdef double* buf = <double*>malloc((2 * NC + 2 * g.C) * sizeof(double))
    cdef double* tot
    if buf == NULL:
        raise MemoryError("batchnorm2d.backward: cannot allocate the partial-sum buffer")
    tot = buf + 2 * NC
    with nogil:
        if g.want_sums:
            for n in prange(g.N, num_threads=n_threads, schedule="static"):
                mb = mbuf + threadid() * g.L if g.relu else NULL
                for c in range(g.C):
                    off = n * g.C + c
                    _plane_grad_sums_m(g.relu, gyp + off * g.L, xp + off * g.L, mb, g.L, sm[c],
                                       _at(wp, c, 1.0) * si[c], _at(bp, c, 0.0),
                                       &buf[2 * off], &buf[2 * off + 1])
        for c in range(g.C):
            sg = 0
            sd = 0
            if g.want_sums:
                for n in range(g.N):
                    sg = sg + buf[2 * (n * g.C + c)]
                    sd = sd + buf[2 * (n * g.C + c) + 1]
                _store_param_grads(g, c, sg, sd, si[c], gwp, gbp)
            tot[2 * c] = sg
            tot[2 * c + 1] = sd
        if g.want_gx:
            for n in prange(g.N, num_threads=n_threads, schedule="static"):
                mb = mbuf + threadid() * g.L if g.relu else NULL
                for c in range(g.C):
                    _grad_input_planes(g, gyp, xp, gxp, n, n + 1, c, _at(wp, c, 1.0),
                                       _at(bp, c, 0.0), sm[c], si[c], tot[2 * c],
                                       tot[2 * c + 1], mb)
    free(buf)


cdef _backward(const floating[:, :, ::1] grad_out, const floating[:, :, ::1] x,
               const floating[::1] weight, const double[::1] save_mean,
               const double[::1] save_invstd, floating[:, :, ::1] grad_in,
               floating[::1] grad_weight, floating[::1] grad_bias, bint training,
               int n_threads, const floating[::1] bias, bint relu):
    cdef GradArgs g
    cdef Py_ssize_t c
    cdef const floating* gyp
    cdef const floating* xp
    cdef const floating* wp = _ptr(weight)
    cdef const floating* bp = NULL
    cdef floating* mbuf = NULL
    cdef floating* mb = NULL
    cdef floating* gxp = NULL
    cdef floating* gwp = NULL
    cdef floating* gbp = NULL
    cdef const double* sm
    cdef const double* si
    g.N, g.C, g.L = x.shape[0], x.shape[1], x.shape[2]
    g.M = <double>g.N * g.L
    g.training = training
    g.want_gx = grad_in.shape[0] > 0
    g.want_gw = grad_weight.shape[0] > 0
    g.want_gb = grad_bias.shape[0] > 0
    g.want_sums = g.want_gw or g.want_gb or (g.want_gx and training)
    g.relu = relu
    if g.want_gw:
        gwp = &grad_weight[0]
    if g.want_gb:
        gbp = &grad_bias[0]
    if g.C == 0:
        return
    if g.N * g.L == 0:
        for c in range(g.C):
            _store_param_grads(&g, c, 0.0, 0.0, 0.0, gwp, gbp)
        return
    gyp = &grad_out[0, 0, 0]
    xp = &x[0, 0, 0]
    sm = &save_mean[0]
    si = &save_invstd[0]
    if g.want_gx:
        gxp = &grad_in[0, 0, 0]
    bp = _ptr(bias)
    n_threads = max(n_threads, 1)
    if relu:            # one plane of masked gy per thread (_relu_masked)
        mbuf = <floating*>malloc(n_threads * g.L * sizeof(floating))
        if mbuf == NULL:
            raise MemoryError("batchnorm2d.backward: cannot allocate the masked planes")
    try:
        if g.L < IMAGE_MAJOR_L and g.N > 1:
            _backward_image_major(&g, gyp, xp, gxp, gwp, gbp, wp, bp, sm, si, mbuf,
                                  n_threads)
        elif _by_channel(g.C, g.N, n_threads):
            with nogil:
                for c in prange(g.C, num_threads=n_threads, schedule="static"):
                    mb = mbuf + threadid() * g.L if relu else NULL
                    _channel_backward(&g, gyp, xp, gxp, gwp, gbp, c, _at(wp, c, 1.0),
                                      _at(bp, c, 0.0), sm[c], si[c], mb)
        else:
            _backward_split(&g, gyp, xp, gxp, gwp, gbp, wp, bp, sm, si, mbuf, n_threads)
    finally:
        free(mbuf)


cdef _backward_split(const GradArgs* g, const floating* gyp, const floating* xp,
                     floating* gxp, floating* gwp, floating* gbp, const floating* wp,
                     const floating* bp, const double* sm, const double* si,
                     floating* mbuf, int n_threads):
    """The schedule for few channels: channels in turn, each one's planes over the threads
    (partial sums per plane, added in plane order)."""
    cdef Py_ssize_t c, n
    cdef double sg, sd
    cdef floating* mb = NULL
    cdef double* buf = <double*>malloc(2 * g.N * sizeof(double))
    if buf == NULL:
        raise MemoryError("batchnorm2d.backward: cannot allocate the partial-sum buffer")
    with nogil:
        for c in range(g.C):
            sg = 0
            sd = 0
            if g.want_sums:
                for n in prange(g.N, num_threads=n_threads, schedule="static"):
                    mb = mbuf + threadid() * g.L if g.relu else NULL
                    _plane_grad_sums_m(g.relu, gyp + (n * g.C + c) * g.L,
                                       xp + (n * g.C + c) * g.L, mb, g.L, sm[c],
                                       _at(wp, c, 1.0) * si[c], _at(bp, c, 0.0), &buf[2 * n],
                                       &buf[2 * n + 1])
                for n in range(g.N):
                    sg = sg + buf[2 * n]
                    sd = sd + buf[2 * n + 1]
                _store_param_grads(g, c, sg, sd, si[c], gwp, gbp)
            if g.want_gx:
                for n in prange(g.N, num_threads=n_threads, schedule="static"):
                    mb = mbuf + threadid() * g.L if g.relu else NULL
                    _grad_input_planes(g, gyp, xp, gxp, n, n + 1, c, _at(wp, c, 1.0),
                                       _at(bp, c, 0.0), sm[c], si[c], sg, sd, mb)
    free(buf)


def backward(const floating[:, :, ::1] grad_out,       # IN  (N, C, L)
             const floating[:, :, ::1] x,              # IN  (N, C, L)
             const floating[::1] weight,               # IN  (C,) or length 0: weight 1
             const double[::1] save_mean,              # IN  (C,) from forward_train
             const double[::1] save_invstd,            # IN  (C,) from forward_train
             floating[:, :, ::1] grad_in,              # OUT (N, C, L) or (0, 0, 0): skipped
             floating[::1] grad_weight,                # OUT (C,) or length 0: skipped
             floating[::1] grad_bias,                  # OUT (C,) or length 0: skipped
             int n_threads,
             const floating[::1] bias=None,            # IN  (C,) or length 0: bias 0 (relu)
             bint relu=False):
    """Training-mode gradients (the batch statistics depend on x):
    gx = w * invstd * (gy - mean(gy) - xhat * mean(gy * xhat)), gw = sum(gy * xhat),
    gb = sum(gy), with xhat = (x - mean) * invstd and means over the channel's N*L values.
    ``relu``: the gradients of the fused max(batch_norm(x), 0) (forward_train's relu) given
    the gradient of its output: gy is first masked where the normalised value (recomputed
    from x, ``weight`` and ``bias``, bit for bit the forward's) is <= 0, as relu's backward.
    Requested OUT buffers are fully overwritten. Parallel as forward_train."""
    if bias is None:
        if relu:
            raise ValueError("batchnorm2d.backward: relu needs the forward's bias (length 0: "
                             "none), got None")
        bias = weight[:0]
    _backward(grad_out, x, weight, save_mean, save_invstd, grad_in, grad_weight, grad_bias,
              True, n_threads, bias, relu)


def backward_eval(const floating[:, :, ::1] grad_out,  # IN  (N, C, L)
                  const floating[:, :, ::1] x,         # IN  (N, C, L)
                  const floating[::1] weight,          # IN  (C,) or length 0: weight 1
                  const double[::1] mean,              # IN  (C,) the running mean used
                  const double[::1] invstd,            # IN  (C,) 1 / sqrt(running_var + eps)
                  floating[:, :, ::1] grad_in,         # OUT (N, C, L) or (0, 0, 0): skipped
                  floating[::1] grad_weight,           # OUT (C,) or length 0: skipped
                  floating[::1] grad_bias,             # OUT (C,) or length 0: skipped
                  int n_threads):
    """Eval-mode gradients (fixed statistics): gx = gy * w * invstd, gw = sum(gy * xhat),
    gb = sum(gy). The sums pass runs only when gw or gb is requested."""
    _backward(grad_out, x, weight, mean, invstd, grad_in, grad_weight, grad_bias, False,
              n_threads, weight[:0], False)
