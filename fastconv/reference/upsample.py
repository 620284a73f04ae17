"""Plain NumPy reference for resizing (nearest, bilinear) and pixel_shuffle / unshuffle.

A resize of an (H, W) plane to (OH, OW) is linear and separable, so it is written here as
two small interpolation matrices, ``A_h`` (OH x H) and ``A_w`` (OW x W)::

    out = A_h @ x @ A_w.T          grad_in = A_h.T @ grad_out @ A_w

(batched over N and C by ``matmul``). Row ``o`` of a nearest matrix is one-hot at the
source index; row ``o`` of a bilinear matrix holds ``1 - lambda`` and ``lambda`` at the two
neighbouring sources. The source positions are PyTorch's (``aten/src/ATen/native/UpSample.h``):

* nearest: ``floor(o * scale)`` clipped to ``in - 1``, computed in float32 for every dtype,
  ``scale = 1 / scale_factor`` if a scale factor was given, else ``in / out``; ``out == in``
  is the identity and ``out == 2 * in`` takes ``o // 2``.
* bilinear: ``o * (in - 1) / (out - 1)`` with ``align_corners=True``, else
  ``max(scale * (o + 0.5) - 0.5, 0)``, computed in the array's dtype.

Non-finite inputs are not supported (a 0 matrix entry times inf is nan). Imports only NumPy.
"""
import numpy as np

__all__ = [
    "nearest_matrix",
    "bilinear_matrix",
    "upsample_nearest2d",
    "upsample_nearest2d_backward",
    "upsample_bilinear2d",
    "upsample_bilinear2d_backward",
    "pixel_shuffle",
    "pixel_unshuffle",
]


def nearest_matrix(in_size, out_size, scale_factor=None):
    """(out_size, in_size) 0/1 matrix of PyTorch's 'nearest' source index per output index."""
    o = np.arange(out_size)
    if out_size == in_size:
        src = o
    elif out_size == 2 * in_size:
        src = o // 2
    else:
        if scale_factor:
            ratio = np.float32(1.0 / scale_factor)
        else:
            ratio = np.float32(in_size) / np.float32(out_size)
        src = np.floor(o.astype(np.float32) * ratio).astype(np.int64)
        src = np.minimum(src, in_size - 1)
    a = np.zeros((out_size, in_size))
    a[o, src] = 1.0
    return a


def bilinear_matrix(in_size, out_size, align_corners, scale_factor=None, dtype=np.float64):
    """(out_size, in_size) matrix of PyTorch's linear interpolation weights along one axis."""
    if out_size == in_size:
        return np.eye(out_size)
    dt = np.dtype(dtype).type
    o = np.arange(out_size).astype(dtype)
    if align_corners:
        ratio = dt(in_size - 1) / dt(out_size - 1) if out_size > 1 else dt(0)
        src = ratio * o
    else:
        ratio = dt(1.0 / scale_factor) if scale_factor else dt(in_size) / dt(out_size)
        src = np.maximum(ratio * (o + dt(0.5)) - dt(0.5), dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(dtype), 0, 1).astype(np.float64)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    a = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    a[rows, i0] += 1.0 - lam
    a[rows, i1] += lam
    return a


def _pair(v):
    if v is None:
        return (None, None)
    return (v, v) if np.ndim(v) == 0 else (v[0], v[1])


def _resize(x, ah, aw):
    return (ah @ x.astype(np.float64) @ aw.T).astype(x.dtype)


def upsample_nearest2d(x, size, scale_factor=None):
    """Nearest resize of an (N, C, H, W) array to ``size = (OH, OW)``; ``scale_factor`` (a
    number or pair) only changes the source index, as in PyTorch."""
    sh, sw = _pair(scale_factor)
    return _resize(x, nearest_matrix(x.shape[2], size[0], sh),
                   nearest_matrix(x.shape[3], size[1], sw))


def upsample_nearest2d_backward(grad_out, input_shape, scale_factor=None):
    """Gradient w.r.t. the (N, C, H, W) input of :func:`upsample_nearest2d`."""
    sh, sw = _pair(scale_factor)
    ah = nearest_matrix(input_shape[2], grad_out.shape[2], sh)
    aw = nearest_matrix(input_shape[3], grad_out.shape[3], sw)
    return _resize(grad_out, ah.T, aw.T)


def upsample_bilinear2d(x, size, align_corners=False, scale_factor=None):
    """Bilinear resize of an (N, C, H, W) array to ``size = (OH, OW)``, as PyTorch."""
    sh, sw = _pair(scale_factor)
    ah = bilinear_matrix(x.shape[2], size[0], align_corners, sh, x.dtype)
    aw = bilinear_matrix(x.shape[3], size[1], align_corners, sw, x.dtype)
    return _resize(x, ah, aw)


def upsample_bilinear2d_backward(grad_out, input_shape, align_corners=False,
                                 scale_factor=None):
    """Gradient w.r.t. the (N, C, H, W) input of :func:`upsample_bilinear2d`."""
    sh, sw = _pair(scale_factor)
    ah = bilinear_matrix(input_shape[2], grad_out.shape[2], align_corners, sh, grad_out.dtype)
    aw = bilinear_matrix(input_shape[3], grad_out.shape[3], align_corners, sw, grad_out.dtype)
    return _resize(grad_out, ah.T, aw.T)


def pixel_shuffle(x, r):
    """(*, C*r*r, H, W) -> (*, C, H*r, W*r): out[..., c, h*r + i, w*r + j] =
    x[..., c*r*r + i*r + j, h, w]. Its gradient is :func:`pixel_unshuffle` of grad_out."""
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c // (r * r), r, r, h, w)
    k = len(lead)
    y = y.transpose(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return y.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(x, r):
    """(*, C, H*r, W*r) -> (*, C*r*r, H, W), the inverse of :func:`pixel_shuffle` (and its
    gradient)."""
    *lead, c, hr, wr = x.shape
    h, w = hr // r, wr // r
    y = x.reshape(*lead, c, h, r, w, r)
    k = len(lead)
    y = y.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return y.reshape(*lead, c * r * r, h, w)
