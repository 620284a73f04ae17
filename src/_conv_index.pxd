# Index helpers shared by the direct and depthwise convolution kernels. Strides 1 and 2 avoid
# the integer division (tens of cycles, and these run per row and per border element).


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """ceil(a / b) for b > 0 and any sign of a (C division truncates toward zero)."""
    if b == 1:
        return a
    if b == 2:
        return (a + 1) >> 1      # arithmetic shift: floor, also for negative a
    if a >= 0:
        return (a + b - 1) // b
    return -((-a) // b)


cdef inline Py_ssize_t _floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """floor(a / b) for b > 0 and any sign of a."""
    return -_ceil_div(-a, b)


cdef inline bint _src_index(Py_ssize_t t, Py_ssize_t s, Py_ssize_t n,
                            Py_ssize_t* q) noexcept nogil:
    """q = t / s if t >= 0, s divides t and t / s < n; otherwise False (no such index)."""
    if t < 0:
        return False
    if s == 1:
        q[0] = t
    elif s == 2:
        if t & 1:
            return False
        q[0] = t >> 1
    else:
        if t % s != 0:
            return False
        q[0] = t // s
    return q[0] < n


cdef inline void _col_range(Py_ssize_t off, Py_ssize_t s, Py_ssize_t W, Py_ssize_t OW,
                            Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the ow with 0 <= ow * s + off < W, clipped to [0, OW)."""
    cdef Py_ssize_t a = _ceil_div(-off, s), b = _ceil_div(W - off, s)
    lo[0] = a if a > 0 else 0
    hi[0] = b if b < OW else OW
