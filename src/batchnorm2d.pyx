"""Batch normalisation of a C-contiguous (N, C, L) batch: NCHW with L = H*W (BatchNorm2d), or
(N, C, L) / (N, C, 1) for BatchNorm1d, which is why the kernels take 3-D arrays rather than the
usual 4-D ones: one body serves every input rank.

For a channel c the data are N blocks ("planes") of L contiguous values, plane n starting at
(n*C + c)*L.

Statistics (training forward). Each plane is cut into chunks of at most CHUNK values (in L1),
each chunk gets a two-pass mean and centred sum of squares M2 (the second pass subtracts the
chunk mean rounded to the data type, which is exact for values within a factor two of it, and
corrects with the sum of the deviations; sums as described at RUN below), and chunk statistics
are merged in order with Chan's pairwise formula, first into the plane's, then the planes into
the channel's. So float32 data with mean 1e4 and std 1 get their variance to ~1e-7, and data
pass through memory once for the statistics (not twice as in a global two-pass).

Normalisation: y = ((x - m_hi) - m_lo) * a + b with the double mean split into m_hi + m_lo in
the data type: x - m_hi is exact for x near the mean, so large means lose no precision (the
usual x * a + (b - mean * a) does, by cancellation).

Backward: one pass per channel for sum(gy) and sum(gy * (x - mean)) (products in the data
type, sums in double), a second for the input gradient.

For float32 the reductions and the elementwise passes run in AVX-512 or AVX2, picked at run
time (``src/_bn_simd.h``), with the same operations in the same order: the same bits as the
loops here. On AVX-512 a reduction is one call per chunk with its accumulators in registers,
and the by-channel statistics take a channel's planes two at a time, so that the serial end of
one plane's sums (32 dependent additions, which its second pass waits for) overlaps the other
plane's work (the statistics pass was bound by these latencies, not by memory). The
by-channel passes prefetch the start of the next planes, those they read and, with PREFETCHW,
those they write (planes of a channel lie C*L values apart, a stride the hardware prefetchers
do not follow across pages). Measured on (64, 64, 32, 32) float32, 2 threads, against the plain
AVX-512 run blocks and 1 KiB read prefetch: forward 0.74x, backward 0.79x the time (the output
prefetch alone: 0.95x). Streaming (non-temporal) stores for y and gx were slower on that
machine (its non-temporal write bandwidth is below that of ordinary stores), so there are none.

Level of parallelism: one OpenMP ``prange`` at a time, never nested. With many channels
(C >= CHANNELS_PER_THREAD * n_threads) a thread owns whole channels: its statistics, its
running-stat entries and its output planes, so writes are disjoint and a channel's data stay in
that core's L2 between the passes. With few channels, channels run in turn and the planes of
one channel are split over the threads, each writing its plane's partial statistics to its own
slot and its own output plane; the partials are merged in plane order by one thread. Both
schedules compute every value with the same operations in the same order (plane statistics,
then planes merged 0..N-1), so results are bit-identical for any ``n_threads``.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

# Float32 SIMD (AVX-512 / AVX2, run-time dispatch) for the full RUN blocks of the reductions:
# same operations in the same order as the Cython loops below, so results are bit-identical
# on every path (contract in the header).
cdef extern from "_bn_simd.h":
    bint fc_bn_sum_runs(const float* x, Py_ssize_t nr, double* acc) noexcept nogil
    bint fc_bn_centred_runs(const float* x, Py_ssize_t nr, float m, double* acc,
                            double* acc2) noexcept nogil
    bint fc_bn_grad_runs(const float* gy, const float* x, Py_ssize_t nr, float m_hi,
                         float m_lo, double* acc, double* acc2) noexcept nogil
    bint fc_bn_sum_all(const float* x, Py_ssize_t n, double* total) noexcept nogil
    bint fc_bn_centred_all(const float* x, Py_ssize_t n, float m, double* sum_d,
                           double* sum_dd) noexcept nogil
    bint fc_bn_chunk_pair(const float* x0, const float* x1, Py_ssize_t n, float* m,
                          double* sd, double* sdd) noexcept nogil
    bint fc_bn_grad_all(const float* gy, const float* x, Py_ssize_t n, float m_hi, float m_lo,
                        double* sum_gy, double* dot) noexcept nogil
    const char* fc_bn_active_target() noexcept nogil
    void fc_prefetch(const void* p, Py_ssize_t nbytes) noexcept nogil
    void fc_prefetch_w(const void* p, Py_ssize_t nbytes) noexcept nogil
    bint fc_bn_normalize(const float* x, float* y, Py_ssize_t n, float m_hi, float m_lo,
                         float a, float b) noexcept nogil
    bint fc_bn_grad_input(const float* gy, const float* x, float* gx, Py_ssize_t n,
                          float m_hi, float m_lo, float a, float d, float c) noexcept nogil
    bint fc_bn_normalize_relu(const float* x, float* y, Py_ssize_t n, float m_hi, float m_lo,
                              float a, float b) noexcept nogil
    bint fc_bn_grad_all_relu(const float* gy, const float* x, Py_ssize_t n, float m_hi,
                             float m_lo, float ra, float rb, double* sum_gy,
                             double* dot) noexcept nogil
    bint fc_bn_grad_input_relu(const float* gy, const float* x, float* gx, Py_ssize_t n,
                               float m_hi, float m_lo, float a, float d, float c, float ra,
                               float rb) noexcept nogil


def simd_target():
    """The code path of the float32 reductions and elementwise passes: avx512f, avx2 or
    generic (a lower one can be forced with FASTCONV_BN_TARGET, read once per process)."""
    return fc_bn_active_target().decode()


cdef enum:
    LANES = 32                 # partial sums per reduction: at most; see _lanes
    RUN = 128                  # values per run summed in the data type, then in double
    CHUNK = 2048               # values per two-pass chunk: 8 KiB (float32) / 16 KiB (float64)
    CHANNELS_PER_THREAD = 4    # below this many channels per thread, split channels by plane
    IMAGE_MAJOR_L = 256        # backward: planes shorter than this run image by image
# Reductions keep _lanes() partial sums; within a run of RUN values each lane sums its RUN/lanes
# values in the data type (4 per lane for float32, so the loops vectorise into plain SIMD with
# no conversions), and runs are added into double accumulators: everything longer than 4
# float32 values is summed in double. The order depends only on the data size, never on
# n_threads. (Loop steps are written as the literals 128 = RUN: Cython needs a constant step.)


cdef inline Py_ssize_t _lanes(floating dummy) noexcept nogil:
    """Partial sums per reduction: the count GCC -O3 turns into clean SIMD at the baseline
    ISA (measured: 32 for float32, 4 for float64; other counts ran 3-8x slower)."""
    if floating is float:
        return 32
    else:
        return 4


ctypedef struct Stats:
    double count, mean, m2     # number of values, their mean, sum of squared deviations


cdef inline bint _by_channel(Py_ssize_t C, Py_ssize_t N, int n_threads) noexcept nogil:
    return n_threads <= 1 or N < 2 or C >= CHANNELS_PER_THREAD * n_threads


# ------------------------------------------------------------------------------ statistics

cdef double _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum x[0..n) (runs in the data type, then double)."""
    cdef double acc[LANES]
    cdef floating part[LANES]
    cdef Py_ssize_t W = _lanes(<floating>0)
    cdef Py_ssize_t i, j, k, l, nr = n - n % RUN, nv = n - n % W
    cdef double total = 0
    cdef bint simd = False
    if floating is float:
        if fc_bn_sum_all(x, n, &total):
            return total
    for l in range(LANES):
        acc[l] = 0
        part[l] = 0
    if floating is float:
        simd = fc_bn_sum_runs(x, nr, acc)
    for i in range(0, 0 if simd else nr, 128):
        for l in range(W):
            part[l] = 0
        for k in range(RUN // W):
            j = i + k * W
            for l in range(W):
                part[l] += x[j + l]
        for l in range(W):
            acc[l] += part[l]
    for l in range(W):
        part[l] = 0
    for k in range((nv - nr) // W):
        j = nr + k * W
        for l in range(W):
            part[l] += x[j + l]
    for j in range(nv, n):
        part[j - nv] += x[j]
    for l in range(W):
        total += acc[l] + part[l]
    return total


cdef void _centred_sums(const floating* x, Py_ssize_t n, floating m, double* sum_d,
                        double* sum_dd) noexcept nogil:
    """sum d and sum d*d over d = x[i] - m, i < n (runs in the data type, then double)."""
    cdef double acc[LANES]
    cdef double acc2[LANES]
    cdef floating part[LANES]
    cdef floating part2[LANES]
    cdef Py_ssize_t W = _lanes(<floating>0)
    cdef Py_ssize_t i, j, k, l, nr = n - n % RUN, nv = n - n % W
    cdef floating d
    cdef double sd = 0, sdd = 0
    cdef bint simd = False
    if floating is float:
        if fc_bn_centred_all(x, n, m, sum_d, sum_dd):
            return
    for l in range(LANES):
        acc[l] = 0
        acc2[l] = 0
        part[l] = 0
        part2[l] = 0
    if floating is float:
        simd = fc_bn_centred_runs(x, nr, m, acc, acc2)
    for i in range(0, 0 if simd else nr, 128):
        for l in range(W):
            part[l] = 0
            part2[l] = 0
        for k in range(RUN // W):
            j = i + k * W
            for l in range(W):
                d = x[j + l] - m
                part[l] += d
                part2[l] += d * d
        for l in range(W):
            acc[l] += part[l]
            acc2[l] += part2[l]
    for l in range(W):
        part[l] = 0
        part2[l] = 0
    for k in range((nv - nr) // W):
        j = nr + k * W
        for l in range(W):
            d = x[j + l] - m
            part[l] += d
            part2[l] += d * d
    for j in range(nv, n):
        d = x[j] - m
        part[j - nv] += d
        part2[j - nv] += d * d
    for l in range(W):
        sd += acc[l] + part[l]
        sdd += acc2[l] + part2[l]
    sum_d[0] = sd
    sum_dd[0] = sdd


cdef void _chunk_stats(const floating* x, Py_ssize_t n, Stats* s) noexcept nogil:
    """Mean and M2 of x[0..n), 0 < n <= CHUNK, in two passes over L1-resident data: the
    mean rounded to the data type m, then deviations from m (exact for x within a factor two
    of m) and the correction for m's rounding: M2 = sum d^2 - (sum d)^2 / n."""
    cdef floating m = <floating>(_sum(x, n) / n)
    cdef double sd, sdd
    _centred_sums(x, n, m, &sd, &sdd)
    _chunk_from_sums(n, m, sd, sdd, s)


cdef inline void _chunk_from_sums(Py_ssize_t n, floating m, double sd, double sdd,
                                  Stats* s) noexcept nogil:
    s.count = n
    s.mean = m + sd / n
    s.m2 = sdd - sd * sd / n
    if s.m2 < 0:        # rounding when all values are (nearly) equal
        s.m2 = 0


cdef inline void _merge(Stats* a, const Stats* b) noexcept nogil:
    """a <- statistics of the union of a's and b's values (Chan, Golub and LeVeque)."""
    cdef double n, delta
    if a.count == 0:
        a[0] = b[0]
        return
    n = a.count + b.count
    delta = b.mean - a.mean
    a.mean = a.mean + delta * (b.count / n)
    a.m2 = a.m2 + b.m2 + delta * delta * (a.count * (b.count / n))
    a.count = n


cdef void _plane_stats(const floating* x, Py_ssize_t L, Stats* s) noexcept nogil:
    cdef Stats chunk
    cdef Py_ssize_t i
    s.count = 0
    s.mean = 0
    s.m2 = 0
    for i in range(0, L, 2048):
        _chunk_stats(x + i, CHUNK if L - i > CHUNK else L - i, &chunk)
        _merge(s, &chunk)


cdef void _plane_stats_pair(const floating* x0, const floating* x1, Py_ssize_t L, Stats* s0,
                            Stats* s1) noexcept nogil:
    """_plane_stats of two planes of L values, chunk by chunk side by side where a SIMD path
    does pairs (the same operations, so the same bits; module docstring on why)."""
    cdef Stats chunk0, chunk1
    cdef Py_ssize_t i, n
    cdef float m[2]
    cdef double sd[2]
    cdef double sdd[2]
    s0.count = s1.count = 0
    s0.mean = s1.mean = 0
    s0.m2 = s1.m2 = 0
    for i in range(0, L, 2048):
        n = CHUNK if L - i > CHUNK else L - i
        if floating is float and fc_bn_chunk_pair(x0 + i, x1 + i, n, m, sd, sdd):
            _chunk_from_sums(n, <floating>m[0], sd[0], sdd[0], &chunk0)
            _chunk_from_sums(n, <floating>m[1], sd[1], sdd[1], &chunk1)
        else:
            _chunk_stats(x0 + i, n, &chunk0)
            _chunk_stats(x1 + i, n, &chunk1)
        _merge(s0, &chunk0)
        _merge(s1, &chunk1)


cdef void _finish_channel(const Stats* s, Py_ssize_t c, double eps, double momentum,
                          double* save_mean, double* save_invstd, floating* rm,
                          floating* rv) noexcept nogil:
    """Save mean and 1/sqrt(var + eps) and update the running statistics, as PyTorch (in
    double, unbiased variance for the running estimate)."""
    save_mean[c] = s.mean
    save_invstd[c] = 1.0 / sqrt(s.m2 / s.count + eps)
    if rm != NULL:
        rm[c] = <floating>(momentum * s.mean + (1.0 - momentum) * rm[c])
    if rv != NULL:
        rv[c] = <floating>(momentum * (s.m2 / (s.count - 1)) + (1.0 - momentum) * rv[c])


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
    cdef bint simd = False
    if floating is float:
        if fc_bn_grad_all(gy, x, L, m_hi, m_lo, sum_gy, dot):
            return
    for l in range(LANES):
        acc[l] = 0
        acc2[l] = 0
        part[l] = 0
        part2[l] = 0
    if floating is float:
        simd = fc_bn_grad_runs(gy, x, nr, m_hi, m_lo, acc, acc2)
    for i in range(0, 0 if simd else nr, 128):
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
                <floating>ga, <floating>b):
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
    st.count = 0
    st.mean = 0
    st.m2 = 0
    for n in range(0, N - 1, 2):
        if n + 2 < N:
            fc_prefetch(xp + ((n + 2) * C + c) * L, L * sizeof(floating))
            if n + 3 < N:
                fc_prefetch(xp + ((n + 3) * C + c) * L, L * sizeof(floating))
        _plane_stats_pair(xp + (n * C + c) * L, xp + ((n + 1) * C + c) * L, L, &pst, &pst1)
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


# ------------------------------------------------------------------------------- forward

def forward_train(const floating[:, :, ::1] x,          # IN  (N, C, L)
                  const floating[::1] weight,           # IN  (C,) or length 0: weight 1
                  const floating[::1] bias,             # IN  (C,) or length 0: bias 0
                  double eps,
                  floating[:, :, ::1] out,              # OUT (N, C, L)
                  double[::1] save_mean,                # OUT (C,) batch mean
                  double[::1] save_invstd,              # OUT (C,) 1 / sqrt(biased var + eps)
                  floating[::1] running_mean,           # IN/OUT (C,) or length 0: none
                  floating[::1] running_var,            # IN/OUT (C,) or length 0: none
                  double momentum, int n_threads, bint relu=False):
    """Training-mode batch norm with batch statistics; N * L >= 1 values per channel (>= 2
    when running_var is given). ``out``, ``save_mean`` and ``save_invstd`` are fully
    overwritten; the running statistics are updated in place with ``momentum`` (unbiased
    variance). ``relu``: out = max(batch_norm(x), 0), the fused batch_norm + relu, in the same
    pass. Parallel over channels or over one channel's planes (module docstring)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], c, n
    cdef const floating* xp
    cdef floating* yp
    cdef const floating* wp = _ptr(weight)
    cdef const floating* bp = _ptr(bias)
    cdef floating* rm = NULL
    cdef floating* rv = NULL
    cdef double* sm
    cdef double* si
    cdef Stats* buf
    cdef Stats st
    if N * C * L == 0:
        return
    if running_mean.shape[0] > 0:
        rm = &running_mean[0]
    if running_var.shape[0] > 0:
        rv = &running_var[0]
    xp = &x[0, 0, 0]
    yp = &out[0, 0, 0]
    sm = &save_mean[0]
    si = &save_invstd[0]
    if _by_channel(C, N, n_threads):
        with nogil:
            for c in prange(C, num_threads=n_threads, schedule="static"):
                _channel_forward(xp, yp, N, C, L, c, wp, bp, eps, momentum, sm, si, rm, rv,
                                 relu)
        return
    buf = <Stats*>malloc(N * sizeof(Stats))
    if buf == NULL:
        raise MemoryError("batchnorm2d.forward_train: cannot allocate the statistics buffer")
    with nogil:
        for c in range(C):
            for n in prange(N, num_threads=n_threads, schedule="static"):
                _plane_stats(xp + (n * C + c) * L, L, &buf[n])
            st.count = 0
            st.mean = 0
            st.m2 = 0
            for n in range(N):
                _merge(&st, &buf[n])
            _finish_channel(&st, c, eps, momentum, sm, si, rm, rv)
            for n in prange(N, num_threads=n_threads, schedule="static"):
                _normalize(xp + (n * C + c) * L, yp + (n * C + c) * L, L, sm[c],
                           _at(wp, c, 1.0) * si[c], _at(bp, c, 0.0), relu)
    free(buf)


def forward_eval(const floating[:, :, ::1] x,            # IN  (N, C, L)
                 const floating[::1] running_mean,       # IN  (C,)
                 const floating[::1] running_var,        # IN  (C,)
                 const floating[::1] weight,             # IN  (C,) or length 0: weight 1
                 const floating[::1] bias,               # IN  (C,) or length 0: bias 0
                 double eps,
                 floating[:, :, ::1] out,                # OUT (N, C, L): fully overwritten
                 int n_threads, bint relu=False):
    """Eval-mode batch norm: out = (x - running_mean) / sqrt(running_var + eps) * w + b
    (``relu``: then max(out, 0), in the same pass). Parallel over the (n, c) planes, each
    written by one thread."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], p, c
    cdef const floating* xp
    cdef floating* yp
    cdef const floating* wp = _ptr(weight)
    cdef const floating* bp = _ptr(bias)
    cdef const floating* rm
    cdef const floating* rv
    if N * C * L == 0:
        return
    xp = &x[0, 0, 0]
    yp = &out[0, 0, 0]
    rm = &running_mean[0]
    rv = &running_var[0]
    with nogil:
        for p in prange(N * C, num_threads=n_threads, schedule="static"):
            c = p % C
            _normalize(xp + p * L, yp + p * L, L, rm[c],
                       _at(wp, c, 1.0) / sqrt(<double>rv[c] + eps), _at(bp, c, 0.0), relu)


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
    cdef Py_ssize_t c, n
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
    cdef double* buf
    cdef double sg, sd
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


def swap01(const floating[:, :, ::1] x,   # IN  (A, B, L)
           floating[:, :, ::1] out,       # OUT (B, A, L): fully overwritten
           int n_threads):
    """out[b, a, :] = x[a, b, :]: the regrouping of small planes into channel-major runs
    (and back), a copy of L-value runs that NumPy's strided copy does at a fraction of the
    memory speed when L is small. Parallel over b: each iteration writes its own block."""
    cdef Py_ssize_t A = x.shape[0], B = x.shape[1], L = x.shape[2], a, b
    cdef const floating* xp
    cdef floating* op
    if A * B * L == 0:
        return
    xp, op = &x[0, 0, 0], &out[0, 0, 0]
    with nogil:
        for b in prange(B, num_threads=n_threads, schedule="static"):
            for a in range(A):
                memcpy(op + (b * A + a) * L, xp + (a * B + b) * L, L * sizeof(floating))
