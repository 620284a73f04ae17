"""Elementwise activations, forward and backward, over flat C-contiguous buffers.

Used where they beat NumPy (measured on (64, 64, 32, 32) float32; table in
``fastconv.functional.activation``): fused backward passes that take NumPy two or three passes
and temporaries, branch-free selects (np.where mispredicts on random signs), PReLU (a
per-channel weight and its gradient), and the threaded passes. Transcendentals are NumPy's
SIMD exp/expm1/tanh, computed by the caller: a libm call per element is 5-10x slower, so the
ELU and sigmoid forward kernels take exp's result and do the rest.

Level of parallelism: one OpenMP ``prange`` over fixed blocks of BLOCK contiguous elements (or
over (n, c) planes for PReLU). Every output element is written by exactly one iteration, so
writes are disjoint; the only reduction (PReLU's weight gradient) writes one partial per plane
and the caller sums them in a fixed order, so results do not depend on ``n_threads``.

NaN propagates as in PyTorch: comparisons are written so that a NaN input takes the branch
that returns it (relu(NaN) = NaN), and backward passes multiply by the incoming gradient.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, expm1, expm1f


cdef enum:
    BLOCK = 16384     # elements per parallel block: 64 KiB of float32, well above the overhead


cdef inline Py_ssize_t _blocks(Py_ssize_t n) noexcept nogil:
    return (n + BLOCK - 1) // BLOCK


cdef inline Py_ssize_t _end(Py_ssize_t b, Py_ssize_t n) noexcept nogil:
    return n if (b + 1) * BLOCK > n else (b + 1) * BLOCK


# -------------------------------------------------------------------------- per-block bodies

cdef void _relu(const floating* x, floating* y, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v
    for i in range(lo, hi):
        v = x[i]        # loaded unconditionally, so the select vectorises
        y[i] = 0 if v < 0 else v                # NaN < 0 is false: NaN passes


cdef void _relu_bw(const floating* gy, const floating* y, floating* gx, Py_ssize_t lo,
                   Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(lo, hi):
        g = gy[i]       # loaded unconditionally, so the select vectorises
        gx[i] = 0 if y[i] <= 0 else g           # PyTorch's threshold_backward


cdef void _leaky(const floating* x, floating* y, floating s, Py_ssize_t lo,
                 Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v, pos, neg
    for i in range(lo, hi):
        # Branch-free on purpose: GCC will not speculate FP math out of a branch (trapping
        # math) and turns any select of a product back into one, which runs scalar and
        # mispredicts on random signs. Selects against 0 vectorise, as in _relu.
        v = x[i]
        pos = 0 if v < 0 else v         # NaN lands here
        neg = v if v < 0 else 0
        y[i] = pos + s * neg


cdef void _leaky_bw(const floating* gy, const floating* t, floating* gx, floating s,
                    Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, pos, neg
    for i in range(lo, hi):
        g = gy[i]                       # branch-free, see _leaky
        pos = g if t[i] > 0 else 0
        neg = 0 if t[i] > 0 else g
        gx[i] = pos + s * neg


cdef inline floating _exp(floating v) noexcept nogil:
    """exp in the data type's precision (expf for float32 is ~2x faster than exp)."""
    if floating is float:
        return expf(v)
    else:
        return exp(v)


cdef inline floating _expm1(floating v) noexcept nogil:
    if floating is float:
        return expm1f(v)
    else:
        return expm1(v)


cdef void _elu(const floating* x, const floating* em1, floating* y, floating a, Py_ssize_t lo,
               Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v, e
    for i in range(lo, hi):
        v = x[i]
        e = a * em1[i]
        y[i] = v if v > 0 else e        # NaN: em1 is NaN too


cdef void _elu_bw(const floating* gy, const floating* t, floating* gx, double alpha,
                  bint from_output, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """t is the output (alpha >= 0: x <= 0 exactly where y <= 0, and alpha*exp(x) = y + alpha)
    or the input."""
    cdef Py_ssize_t i
    cdef floating a = <floating>alpha, g, v, pos, neg, vneg
    if from_output:
        for i in range(lo, hi):
            g = gy[i]                   # branch-free, see _leaky
            v = t[i]
            pos = 0 if v <= 0 else g
            neg = g if v <= 0 else 0
            vneg = v if v <= 0 else 0
            gx[i] = pos + neg * (vneg + a)
    else:
        for i in range(lo, hi):
            if t[i] <= 0:
                gx[i] = gy[i] * a * _exp(t[i])
            else:
                gx[i] = gy[i]


cdef void _sigmoid(const floating* x, const floating* e, floating* y, Py_ssize_t lo,
                   Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v, ev, one = 1
    for i in range(lo, hi):
        v = x[i]
        ev = e[i]
        y[i] = (one if v >= 0 else ev) / (1 + ev)


cdef void _sigmoid_bw(const floating* gy, const floating* y, floating* gx, Py_ssize_t lo,
                      Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        gx[i] = gy[i] * (y[i] * (1 - y[i]))


cdef void _tanh_bw(const floating* gy, const floating* y, floating* gx, Py_ssize_t lo,
                   Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        gx[i] = gy[i] * (1 - y[i] * y[i])


cdef void _add(const floating* a, const floating* b, floating* y, Py_ssize_t lo,
               Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        y[i] = a[i] + b[i]


cdef void _add_relu(const floating* a, const floating* b, floating* y, Py_ssize_t lo,
                    Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v
    for i in range(lo, hi):
        v = a[i] + b[i]
        y[i] = 0 if v < 0 else v                # as _relu: NaN passes


# ------------------------------------------------------------------------------ entry points
# Flat buffers: x, y, gy, gx are 1-D C-contiguous views of arrays of one shape (the caller
# passes ``a.reshape(-1)``). OUT buffers are fully overwritten.

def relu_forward(const floating[::1] x, floating[::1] y, int n_threads):
    """y = max(x, 0), NaN kept."""
    cdef Py_ssize_t n = x.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _relu(&x[0], &y[0], b * BLOCK, _end(b, n))


def relu_backward(const floating[::1] grad_out, const floating[::1] y, floating[::1] grad_in,
                  int n_threads):
    """grad_in = grad_out where y > 0 (or NaN), else 0; y is the forward OUTPUT."""
    cdef Py_ssize_t n = y.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _relu_bw(&grad_out[0], &y[0], &grad_in[0], b * BLOCK, _end(b, n))


def leaky_relu_forward(const floating[::1] x, double negative_slope, floating[::1] y,
                       int n_threads):
    """y = x if x >= 0 else negative_slope * x."""
    cdef Py_ssize_t n = x.shape[0], b
    cdef floating s = <floating>negative_slope
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _leaky(&x[0], &y[0], s, b * BLOCK, _end(b, n))


def leaky_relu_backward(const floating[::1] grad_out, const floating[::1] t,
                        double negative_slope, floating[::1] grad_in, int n_threads):
    """grad_in = grad_out if t > 0 else negative_slope * grad_out; t is the input, or the
    output when negative_slope >= 0 (same sign)."""
    cdef Py_ssize_t n = t.shape[0], b
    cdef floating s = <floating>negative_slope
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _leaky_bw(&grad_out[0], &t[0], &grad_in[0], s, b * BLOCK, _end(b, n))


def elu_forward(const floating[::1] x, const floating[::1] em1, double alpha,
                floating[::1] y, int n_threads):
    """y = x if x > 0 else alpha * em1, with em1 = expm1(min(x, 0)) from the caller (NumPy's
    expm1 is SIMD, a libm call per element here is 5-10x slower; the select is what NumPy
    does badly: np.where mispredicts on random signs)."""
    cdef Py_ssize_t n = x.shape[0], b
    cdef floating a = <floating>alpha
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _elu(&x[0], &em1[0], &y[0], a, b * BLOCK, _end(b, n))


def elu_backward(const floating[::1] grad_out, const floating[::1] t, double alpha,
                 bint from_output, floating[::1] grad_in, int n_threads):
    """grad_in = grad_out if x > 0 else grad_out * alpha * exp(x), from the output t = y
    (``from_output``, needs alpha >= 0: alpha * exp(x) = y + alpha) or the input t = x."""
    cdef Py_ssize_t n = t.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _elu_bw(&grad_out[0], &t[0], &grad_in[0], alpha, from_output, b * BLOCK,
                    _end(b, n))


def sigmoid_forward(const floating[::1] x, const floating[::1] e, floating[::1] y,
                    int n_threads):
    """y = 1 / (1 + e) where x >= 0, else e / (1 + e), with e = exp(-|x|) from the caller
    (NumPy's SIMD exp): no overflow and full relative precision for either sign."""
    cdef Py_ssize_t n = x.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _sigmoid(&x[0], &e[0], &y[0], b * BLOCK, _end(b, n))


def sigmoid_backward(const floating[::1] grad_out, const floating[::1] y,
                     floating[::1] grad_in, int n_threads):
    """grad_in = grad_out * y * (1 - y) from the OUTPUT y."""
    cdef Py_ssize_t n = y.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _sigmoid_bw(&grad_out[0], &y[0], &grad_in[0], b * BLOCK, _end(b, n))


def tanh_backward(const floating[::1] grad_out, const floating[::1] y, floating[::1] grad_in,
                  int n_threads):
    """grad_in = grad_out * (1 - y^2) from the OUTPUT y."""
    cdef Py_ssize_t n = y.shape[0], b
    if n == 0:
        return
    with nogil:
        for b in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _tanh_bw(&grad_out[0], &y[0], &grad_in[0], b * BLOCK, _end(b, n))


# ------------------------------------------------------------------------------------ PReLU

cdef double _negative_dot(const floating* gy, const floating* x, Py_ssize_t L) noexcept nogil:
    """sum of gy * x over the x <= 0 (in double, in index order)."""
    cdef Py_ssize_t i
    cdef double s = 0
    for i in range(L):
        if x[i] <= 0:
            s += gy[i] * x[i]
    return s


def prelu_forward(const floating[:, :, ::1] x,      # IN  (N, C, L)
                  const floating[::1] weight,       # IN  (C,) or (1,): shared
                  floating[:, :, ::1] out,          # OUT (N, C, L): fully overwritten
                  int n_threads):
    """out = x if x >= 0 else weight[c] * x. Parallel over the (n, c) planes."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], p
    cdef bint shared = weight.shape[0] == 1
    if N * C * L == 0:
        return
    with nogil:
        for p in prange(N * C, num_threads=n_threads, schedule="static"):
            _leaky(&x[0, 0, 0] + p * L, &out[0, 0, 0] + p * L,
                   weight[0] if shared else weight[p % C], 0, L)


def prelu_backward(const floating[:, :, ::1] grad_out,  # IN  (N, C, L)
                   const floating[:, :, ::1] x,         # IN  (N, C, L) forward input
                   const floating[::1] weight,          # IN  (C,) or (1,)
                   floating[:, :, ::1] grad_in,         # OUT (N, C, L) or (0, 0, 0): skipped
                   double[:, ::1] grad_weight_planes,   # OUT (N, C) or (0, 0): skipped
                   int n_threads):
    """grad_in = grad_out if x > 0 else weight[c] * grad_out; grad_weight_planes[n, c] =
    sum over the plane of grad_out * x where x <= 0 (in double). The caller sums the planes
    over n (and c for a shared weight) in a fixed order. Parallel over the (n, c) planes."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], p
    cdef bint shared = weight.shape[0] == 1
    cdef bint want_gx = grad_in.shape[0] > 0, want_gw = grad_weight_planes.shape[0] > 0
    if N * C == 0:
        return
    if L == 0:
        if want_gw:
            grad_weight_planes[:, :] = 0
        return
    with nogil:
        for p in prange(N * C, num_threads=n_threads, schedule="static"):
            if want_gx:
                _leaky_bw(&grad_out[0, 0, 0] + p * L, &x[0, 0, 0] + p * L,
                          &grad_in[0, 0, 0] + p * L,
                          weight[0] if shared else weight[p % C], 0, L)
            if want_gw:
                grad_weight_planes[p // C, p % C] = _negative_dot(
                    &grad_out[0, 0, 0] + p * L, &x[0, 0, 0] + p * L, L)


def add_relu_forward(const floating[::1] a, const floating[::1] b, floating[::1] y,
                     int n_threads):
    """y = max(a + b, 0), NaN kept: relu_forward of add_forward's result, in one pass (the
    residual connection of a ResNet block)."""
    cdef Py_ssize_t n = a.shape[0], blk
    if n == 0:
        return
    with nogil:
        for blk in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _add_relu(&a[0], &b[0], &y[0], blk * BLOCK, _end(blk, n))


def add_forward(const floating[::1] a, const floating[::1] b, floating[::1] y, int n_threads):
    """y = a + b, element by element (the same bits as NumPy's add): residual connections
    and gradient accumulation, where NumPy's single thread is the bottleneck."""
    cdef Py_ssize_t n = a.shape[0], blk
    if n == 0:
        return
    with nogil:
        for blk in prange(_blocks(n), num_threads=n_threads, schedule="static"):
            _add(&a[0], &b[0], &y[0], blk * BLOCK, _end(blk, n))
