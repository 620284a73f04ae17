"""im2col / col2im of a whole batch, exposed for tests and benchmarks.

The convolution kernels use the inline helpers of _im2col.pxd on one image at a time; these
wrappers make the same code testable against the NumPy reference. Level of parallelism: the
batch (each image's columns and input-gradient plane belong to one thread).
"""
from cython.parallel cimport prange
from cython cimport floating

from _im2col cimport im2col_rows, col2im_channels


def im2col(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
           floating[:, :, ::1] cols,          # OUT (N, C*kh*kw, OH*OW): fully overwritten
           int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w,
           int dil_h, int dil_w, Py_ssize_t OH, Py_ssize_t OW, int n_threads):
    """Column matrices of every image; parallel over the batch (disjoint output images)."""
    cdef Py_ssize_t n, N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t rows = cols.shape[1]
    if N == 0 or rows == 0 or OH * OW == 0:
        return
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            im2col_rows(&x[n, 0, 0, 0], H, W, kh, kw, stride_h, stride_w, pad_h, pad_w,
                        dil_h, dil_w, OW, 0, OH, 0, rows, &cols[n, 0, 0])


def col2im(const floating[:, :, ::1] cols,   # IN  (N, C*kh*kw, OH*OW)
           floating[:, :, :, ::1] gx,         # OUT (N, C, H, W): fully overwritten
           int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w,
           int dil_h, int dil_w, Py_ssize_t OH, Py_ssize_t OW, int n_threads):
    """Sum the columns back onto the image grid (the adjoint of im2col); parallel over the
    batch (each image's gx plane is written by one thread)."""
    cdef Py_ssize_t n, i, N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef floating *g
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            g = &gx[n, 0, 0, 0]
            for i in range(C * H * W):
                g[i] = 0
            if OH * OW > 0:
                col2im_channels(&cols[n, 0, 0], H, W, kh, kw, stride_h, stride_w, pad_h,
                                pad_w, dil_h, dil_w, OW, 0, OH, 0, C, g)
