"""Batch normalisation of a C-contiguous (N, C, L) batch: NCHW with L = H*W (BatchNorm2d), or
(N, C, L) / (N, C, 1) for BatchNorm1d, which is why the kernels take 3-D arrays rather than the
usual 4-D ones: one body serves every input rank.

For a channel c the data are N blocks ("planes") of L contiguous values, plane n starting at
(n*C + c)*L.

Statistics (training forward). Each plane is cut into chunks of at most CHUNK values (in L1),
each chunk gets its mean and centred sum of squares M2 in ONE pass over its values: deviations
d = x - m from a shift m, the mean of the chunk's first 32 values computed in the data type
(_shift; x - m is exact for values within a factor two of m), and the correction for m not
being the chunk's mean, M2 = sum d^2 - (sum d)^2 / n (sums as described at STATS_RUN below).
Chunk statistics are merged in order with Chan's pairwise formula, first into the plane's,
then the planes into the channel's. So float32 data with mean 1e4 and std 1 get their
variance to ~1e-7 (4e-8 measured), and data pass through memory once for the statistics (not
twice as in a global two-pass). Until 2026-11-23 the shift was the chunk's own mean, from a
first pass over the chunk: on Zen 3 (AVX2), old and new .so alternated, the one-pass form
with 512-value runs takes 0.83-0.91x the time of the training forward on 32x32 planes,
0.76-0.78x on 16x16 (2 threads; 0.81-0.91x / 0.73-0.80x at 1), and the relative error of
the variance grew from 4e-10 to 4e-8 on that mean-1e4 data, to 2e-7 at most over the
adversarial cases tried (a plane's first 32 values 1e5 above the rest).

Normalisation: y = ((x - m_hi) - m_lo) * a + b with the double mean split into m_hi + m_lo in
the data type: x - m_hi is exact for x near the mean, so large means lose no precision (the
usual x * a + (b - mean * a) does, by cancellation).

Backward: one pass per channel for sum(gy) and sum(gy * (x - mean)) (products in the data
type, sums in double), a second for the input gradient.

For float32 the reductions and the elementwise passes run in AVX-512 or AVX2, picked at run
time (``src/_bn_simd.h``), with the same operations in the same order: the same bits as the
loops here. A reduction is one call per chunk with its accumulators in registers, and on
AVX-512 the by-channel statistics take a channel's planes two at a time, so that the serial end of
one plane's sums (32 dependent additions) overlaps the other plane's work. The
by-channel passes prefetch the start of the next planes, those they read and, with PREFETCHW,
those they write (planes of a channel lie C*L values apart, a stride the hardware prefetchers
do not follow across pages). Measured on (64, 64, 32, 32) float32, 2 threads, against the plain
AVX-512 run blocks and 1 KiB read prefetch: forward 0.74x, backward 0.79x the time (the output
prefetch alone: 0.95x). The statistics then ask for the rest of the next pair's first page
once this pair's shifts are taken, before its centred passes (fc_prefetch_tail): 0.95x the
time of the forward without it on (64, 64, 32, 32), even on smaller layers (Zen 3, AVX2, 2
threads). Streaming
(non-temporal) stores for y and gx were slower on that machine (its non-temporal write
bandwidth is below that of ordinary stores), so there are none.

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
    bint fc_bn_centred_all(const float* x, Py_ssize_t n, float m, double* sum_d,
                           double* sum_dd) noexcept nogil
    bint fc_bn_centred_pair(const float* x0, const float* x1, Py_ssize_t n, float m0,
                            float m1, double* sd, double* sdd) noexcept nogil
    bint fc_bn_grad_all(const float* gy, const float* x, Py_ssize_t n, float m_hi, float m_lo,
                        double* sum_gy, double* dot) noexcept nogil
    const char* fc_bn_active_target() noexcept nogil
    void fc_prefetch(const void* p, Py_ssize_t nbytes) noexcept nogil
    void fc_prefetch_tail(const void* p, Py_ssize_t nbytes) noexcept nogil
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
                               float m_hi, float m_lo, float a, float d, float c,
                               float rb) noexcept nogil


def simd_target():
    """The code path of the float32 reductions and elementwise passes: avx512f, avx2 or
    generic (a lower one can be forced with FASTCONV_BN_TARGET, read once per process)."""
    return fc_bn_active_target().decode()


cdef enum:
    LANES = 32                 # partial sums per reduction: at most; see _lanes
    RUN = 128                  # values per run summed in the data type, then in double
    STATS_RUN = 512            # the same for the statistics' centred sums (_centred_sums)
    CHUNK = 2048               # values per statistics chunk (one shift): 8 / 16 KiB
    CHANNELS_PER_THREAD = 4    # below this many channels per thread, split channels by plane
    IMAGE_MAJOR_L = 256        # backward: planes shorter than this run image by image
# Reductions keep _lanes() partial sums; within a run of RUN values each lane sums its RUN/lanes
# values in the data type (4 per lane for float32, so the loops vectorise into plain SIMD with
# no conversions), and runs are added into double accumulators: everything longer than 4
# float32 values is summed in double. The statistics' centred sums use runs of STATS_RUN (16
# float32 values per lane: a quarter of the conversions, which bound that pass; their values
# are deviations from the chunk's shift, so the float sums stay small). The order depends
# only on the data size, never on n_threads. (Loop steps are written as the literals 128 =
# RUN and 512 = STATS_RUN: Cython needs a constant step.)


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

cdef floating _shift(const floating* x, Py_ssize_t n) noexcept nogil:
    """A chunk's shift m: the mean of its first k = min(n, 32) values, v[l] = x[l] for l < k
    and 0 after, summed in the data type in a fixed tree: t[l] = (v[l] + v[l+8]) + (v[l+16] +
    v[l+24]) for l < 8, then t[l] += t[l+4] (l < 4), t[l] += t[l+2] (l < 2), t[0] + t[1]. Every
    path takes the shift from here (32 values a chunk: SIMD would gain nothing)."""
    cdef floating v[32]
    cdef floating t[8]
    cdef Py_ssize_t l, k = n if n < 32 else 32
    cdef const floating* p = x
    if n < 32:          # the values, then zeros
        for l in range(32):
            v[l] = x[l] if l < k else 0
        p = v
    for l in range(8):
        t[l] = (p[l] + p[l + 8]) + (p[l + 16] + p[l + 24])
    for l in range(4):
        t[l] = t[l] + t[l + 4]
    for l in range(2):
        t[l] = t[l] + t[l + 2]
    return (t[0] + t[1]) / <floating>k


cdef void _centred_sums(const floating* x, Py_ssize_t n, floating m, double* sum_d,
                        double* sum_dd) noexcept nogil:
    """sum d and sum d*d over d = x[i] - m, i < n (runs in the data type, then double)."""
    cdef double acc[LANES]
    cdef double acc2[LANES]
    cdef floating part[LANES]
    cdef floating part2[LANES]
    cdef Py_ssize_t W = _lanes(<floating>0)
    cdef Py_ssize_t i, j, k, l, nr = n - n % STATS_RUN, nv = n - n % W
    cdef floating d
    cdef double sd = 0, sdd = 0
    if floating is float:
        if fc_bn_centred_all(x, n, m, sum_d, sum_dd):
            return
    for l in range(LANES):
        acc[l] = 0
        acc2[l] = 0
        part[l] = 0
        part2[l] = 0
    for i in range(0, nr, 512):
        for l in range(W):
            part[l] = 0
            part2[l] = 0
        for k in range(STATS_RUN // W):
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
    """Mean and M2 of x[0..n), 0 < n <= CHUNK, in one pass of deviations d = x - m from the
    chunk's shift m (_shift: exact for x within a factor two of m) and the correction for m
    not being the mean: M2 = sum d^2 - (sum d)^2 / n."""
    cdef floating m = _shift(x, n)
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
                            Stats* s1, const floating* next0,
                            const floating* next1) noexcept nogil:
    """_plane_stats of two planes of L values, chunk by chunk side by side: both chunks'
    shifts, then their centred sums (on AVX-512 in one call, fc_bn_centred_pair: the same
    operations, so the same bits; module docstring on why). next0 and next1 (or NULL): the
    planes to be read next, the rest of whose first page is prefetched once the first
    chunks' shifts are taken (fc_prefetch_tail)."""
    cdef Stats chunk0, chunk1
    cdef Py_ssize_t i, n, nb = L * sizeof(floating)
    cdef floating m0, m1
    cdef double sd[2]
    cdef double sdd[2]
    s0.count = s1.count = 0
    s0.mean = s1.mean = 0
    s0.m2 = s1.m2 = 0
    for i in range(0, L, 2048):
        n = CHUNK if L - i > CHUNK else L - i
        m0 = _shift(x0 + i, n)
        m1 = _shift(x1 + i, n)
        fc_prefetch_tail(next0, nb)
        fc_prefetch_tail(next1, nb)
        next0 = next1 = NULL
        if not (floating is float and fc_bn_centred_pair(x0 + i, x1 + i, n, m0, m1, sd, sdd)):
            _centred_sums(x0 + i, n, m0, &sd[0], &sdd[0])
            _centred_sums(x1 + i, n, m1, &sd[1], &sdd[1])
        _chunk_from_sums(n, m0, sd[0], sdd[0], &chunk0)
        _chunk_from_sums(n, m1, sd[1], sdd[1], &chunk1)
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


include "_bn_elementwise.pxi"


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


include "_bn_backward.pxi"


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
