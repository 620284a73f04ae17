# Included by batchnorm2d.pyx (one module; split for length): the elementwise passes of
# forward and backward, and the fused relu's mask.

# ---------------------------------------------------------------------------- elementwise

cdef void _normalize(const floating* x, floating* y, Py_ssize_t L, double mean, double a,
                     double b, bint relu) noexcept nogil:
    """y = (x - mean) * a + b, with mean split into m_hi + m_lo in the data type; then, with
    relu, y = max(y, 0) on the plane while it is in L1/L2 (NaN passes, as the ReLU kernel)."""
    cdef floating m_hi = <floating>mean
    cdef floating m_lo = <floating>(mean - <double>m_hi)
    cdef floating fa = <floating>a, fb = <floating>b, v
    cdef Py_ssize_t i
    cdef bint done = False
    if floating is float:
        if relu and fc_bn_normalize_relu(x, y, L, m_hi, m_lo, fa, fb):
            return
        done = fc_bn_normalize(x, y, L, m_hi, m_lo, fa, fb)
    if not done:
        for i in range(L):
            y[i] = ((x[i] - m_hi) - m_lo) * fa + fb
    if relu:
        for i in range(L):
            v = y[i]        # loaded unconditionally, so the select vectorises
            y[i] = 0 if v < 0 else v


cdef void _plane_grad_sums(const floating* gy, const floating* x, Py_ssize_t L, double mean,
                           double* sum_gy, double* dot) noexcept nogil:
    """sum_gy = sum gy, dot = sum gy * (x - mean) over one plane (runs in the data type, then
    double; mean split into m_hi + m_lo as in _normalize)."""
    cdef double acc[LANES]
    cdef double acc2[LANES]
    cdef floating part[LANES]
    cdef floating part2[LANES]
    cdef floating m_hi = <floating>mean
    cdef floating m_lo = <floating>(mean - <double>m_hi)
    cdef Py_ssize_t W = _lanes(<floating>0)
    cdef Py_ssize_t i, j, k, l, nr = L - L % RUN, nv = L - L % W
    cdef double sg = 0, sd = 0
    if floating is float:
        if fc_bn_grad_all(gy, x, L, m_hi, m_lo, sum_gy, dot):
            return
    for l in range(LANES):
        acc[l] = 0
        acc2[l] = 0
        part[l] = 0
        part2[l] = 0
    for i in range(0, nr, 128):
        for l in range(W):
            part[l] = 0
            part2[l] = 0
        for k in range(RUN // W):
            j = i + k * W
            for l in range(W):
                part[l] += gy[j + l]
                part2[l] += gy[j + l] * ((x[j + l] - m_hi) - m_lo)
        for l in range(W):
            acc[l] += part[l]
            acc2[l] += part2[l]
    for l in range(W):
        part[l] = 0
        part2[l] = 0
    for k in range((nv - nr) // W):
        j = nr + k * W
        for l in range(W):
            part[l] += gy[j + l]
            part2[l] += gy[j + l] * ((x[j + l] - m_hi) - m_lo)
    for j in range(nv, L):
        part[j - nv] += gy[j]
        part2[j - nv] += gy[j] * ((x[j] - m_hi) - m_lo)
    for l in range(W):
        sg += acc[l] + part[l]
        sd += acc2[l] + part2[l]
    sum_gy[0] = sg
    dot[0] = sd


cdef void _plane_grad_input(const floating* gy, const floating* x, floating* gx,
                            Py_ssize_t L, double mean, double ga, double gd,
                            double gc) noexcept nogil:
    """gx = gy * ga + (x - mean) * gd + gc."""
    cdef floating m_hi = <floating>mean
    cdef floating m_lo = <floating>(mean - <double>m_hi)
    cdef floating fa = <floating>ga, fd = <floating>gd, fc = <floating>gc
    cdef Py_ssize_t i
    if gd == 0 and gc == 0:
        for i in range(L):
            gx[i] = gy[i] * fa
    else:
        if floating is float:
            if fc_bn_grad_input(gy, x, gx, L, m_hi, m_lo, fa, fd, fc):
                return
        for i in range(L):
            gx[i] = gy[i] * fa + ((x[i] - m_hi) - m_lo) * fd + fc


cdef const floating* _relu_masked(bint relu, const floating* gy, const floating* x,
                                  floating* out, Py_ssize_t L, double mean, double a,
                                  double b) noexcept nogil:
    """gy itself; or, with relu (the fused batch_norm + relu), gy masked as relu's backward
    masks it, into out: 0 where relu's input y = ((x - m_hi) - m_lo) * a + b is <= 0, gy
    elsewhere (NaN passes). y is recomputed with _normalize's operations in its order, so
    bit for bit the values the forward pass clipped."""
    cdef floating m_hi, m_lo, fa, fb, v, gv
    cdef Py_ssize_t i
    if not relu:
        return gy
    m_hi = <floating>mean
    m_lo = <floating>(mean - <double>m_hi)
    fa = <floating>a
    fb = <floating>b
    for i in range(L):
        v = ((x[i] - m_hi) - m_lo) * fa + fb
        gv = gy[i]      # loaded unconditionally, so the select vectorises (no branch)
        out[i] = 0 if v <= 0 else gv
    return out


cdef void _plane_grad_sums_m(bint relu, const floating* gy, const floating* x, floating* mb,
                             Py_ssize_t L, double mean, double a, double b, double* sum_gy,
                             double* dot) noexcept nogil:
    """_plane_grad_sums of gy or, with relu, of gy masked (_relu_masked into mb); on AVX-512
    the mask is applied in registers (fc_bn_grad_all_relu: the same values, same sums)."""
    cdef floating m_hi = <floating>mean
    cdef floating m_lo = <floating>(mean - <double>m_hi)
    if floating is float:
        if relu and fc_bn_grad_all_relu(gy, x, L, m_hi, m_lo, <floating>a, <floating>b,
                                        sum_gy, dot):
            return
    _plane_grad_sums(_relu_masked(relu, gy, x, mb, L, mean, a, b), x, L, mean, sum_gy, dot)


cdef void _plane_grad_input_m(bint relu, const floating* gy, const floating* x, floating* gx,
                              floating* mb, Py_ssize_t L, double mean, double ga, double gd,
                              double gc, double b) noexcept nogil:
    """_plane_grad_input of gy or, with relu, of gy masked (relu's input is
    (x - mean) * ga + b: ga = weight * invstd is the forward's scale); on AVX-512 the mask is
    applied in registers (fc_bn_grad_input_relu)."""
    cdef floating m_hi = <floating>mean
    cdef floating m_lo = <floating>(mean - <double>m_hi)
    if floating is float:
        if relu and not (gd == 0 and gc == 0) and fc_bn_grad_input_relu(
                gy, x, gx, L, m_hi, m_lo, <floating>ga, <floating>gd, <floating>gc,
                <floating>b):
            return
    _plane_grad_input(_relu_masked(relu, gy, x, mb, L, mean, ga, b), x, gx, L, mean, ga, gd,
                      gc)


cdef inline double _at(const floating* p, Py_ssize_t c, double default) noexcept nogil:
    """p[c], or ``default`` for an absent (NULL) weight or bias."""
    return <double>p[c] if p != NULL else default


cdef inline const floating* _ptr(const floating[::1] a):
    """First element of a 1-D buffer, NULL for the length-0 "absent" marker."""
    return &a[0] if a.shape[0] > 0 else NULL


cdef void _channel_forward(const floating* xp, floating* yp, Py_ssize_t N, Py_ssize_t C,
                           Py_ssize_t L, Py_ssize_t c, const floating* wp,
                           const floating* bp, double eps, double momentum,
                           double* save_mean, double* save_invstd, floating* rm,
                           floating* rv, bint relu) noexcept nogil:
    """Everything of one channel, planes in order (the by-channel schedule)."""
    cdef Stats st, pst, pst1
    cdef Py_ssize_t n
    cdef const floating* nx0
    cdef const floating* nx1
    st.count = 0
    st.mean = 0
    st.m2 = 0
    for n in range(0, N - 1, 2):
        nx0 = nx1 = NULL
        if n + 2 < N:
            nx0 = xp + ((n + 2) * C + c) * L
            fc_prefetch(nx0, L * sizeof(floating))
            if n + 3 < N:
                nx1 = xp + ((n + 3) * C + c) * L
                fc_prefetch(nx1, L * sizeof(floating))
        _plane_stats_pair(xp + (n * C + c) * L, xp + ((n + 1) * C + c) * L, L, &pst, &pst1,
                          nx0, nx1)
        _merge(&st, &pst)
        _merge(&st, &pst1)
    if N % 2:
        _plane_stats(xp + ((N - 1) * C + c) * L, L, &pst)
        _merge(&st, &pst)
    _finish_channel(&st, c, eps, momentum, save_mean, save_invstd, rm, rv)
    for n in range(N):
        if n + 1 < N:
            fc_prefetch_w(yp + ((n + 1) * C + c) * L, L * sizeof(floating))
        _normalize(xp + (n * C + c) * L, yp + (n * C + c) * L, L, save_mean[c],
                   _at(wp, c, 1.0) * save_invstd[c], _at(bp, c, 0.0), relu)
