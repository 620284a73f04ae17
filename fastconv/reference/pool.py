"""Plain NumPy reference for 2-D pooling: max (with indices), average, adaptive average,
adaptive max and Lp (power-average) pooling, forward and backward.

The oracle for the compiled kernels in ``fastconv._ext.pool2d`` and the baseline ``bench/``
measures them against; it imports only NumPy and shares no code with them. Windows are
PyTorch's:

* sizes: ``out = floor_or_ceil((size + 2*p - d*(k - 1) - 1) / s) + 1``; in ceil_mode the last
  window must start inside the input or the left padding, else it is dropped;
* max: first maximum in row-major window order wins ties, a NaN wins over numbers and the last
  NaN of a window is the one reported; indices are flat ``ih * W + iw`` in each input plane;
* average: ``count_include_pad`` counts padded positions but not the part of a ceil_mode
  window beyond the padded input; ``divisor_override`` replaces the divisor;
* adaptive: output ``i`` of ``n -> o`` covers ``[floor(i*n/o), ceil((i+1)*n/o))``;
* Lp: ``(sum over the window of x**p) ** (1/p)``, computed as PyTorch does, as average
  pooling of ``x**p`` (padding 0, count_include_pad) times ``kH*kW``, then ``** (1/p)``.

Inputs are (N, C, H, W) arrays; sizes are an int or an ``(h, w)`` pair.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "pool_output_size",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_windows",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "lp_pool2d",
    "lp_pool2d_backward",
]


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def pool_output_size(size, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    """Output length of a pooling along one axis (PyTorch's rule)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ValueError(f"expected a positive output size, got {out}")
    return out


def _geometry(x, kernel_size, stride, padding, dilation, ceil_mode):
    k = _pair(kernel_size)
    s = k if stride is None else _pair(stride)
    p, d = _pair(padding), _pair(dilation)
    out = tuple(pool_output_size(x.shape[2 + i], k[i], s[i], p[i], d[i], ceil_mode)
                for i in range(2))
    return k, s, p, d, out


def _windows(x, fill, k, s, p, d, out):
    """(N, C, OH, OW, kH, kW) view of the windows of ``x`` padded with ``fill``; a ceil_mode
    window hanging past the padded input reads ``fill`` there too."""
    n, c, h, w = x.shape
    need = [(out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 for i in range(2)]
    extra = [max(0, need[0] - (h + 2 * p[0])), max(0, need[1] - (w + 2 * p[1]))]
    xp = np.full((n, c, h + 2 * p[0] + extra[0], w + 2 * p[1] + extra[1]), fill, x.dtype)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    win = sliding_window_view(xp, (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), axis=(2, 3))
    return win[:, :, ::s[0], ::s[1], ::d[0], ::d[1]][:, :, :out[0], :out[1]]


def _flat_positions(h, w, k, s, p, d, out):
    """(OH, OW, kH*kW) flat index ih*W + iw of every tap, and whether it is inside."""
    ih = (np.arange(out[0]) * s[0] - p[0])[:, None] + d[0] * np.arange(k[0])[None, :]
    iw = (np.arange(out[1]) * s[1] - p[1])[:, None] + d[1] * np.arange(k[1])[None, :]
    ih, iw = ih[:, None, :, None], iw[None, :, None, :]
    inside = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
    flat = ih * w + iw
    shape = (out[0], out[1], k[0] * k[1])
    return (np.broadcast_to(flat, shape[:2] + (k[0], k[1])).reshape(shape),
            np.broadcast_to(inside, shape[:2] + (k[0], k[1])).reshape(shape))


def _argmax_torch(taps, valid):
    """Position along the last axis that PyTorch's loop keeps: the last NaN if any, else the
    first maximum; only ``valid`` taps count, and with none (or all -inf) the first valid."""
    nan = np.isnan(taps) & valid
    vals = np.where(valid, taps, -np.inf)
    first_max = np.argmax(np.where(np.isnan(vals), -np.inf, vals), axis=-1)
    last_nan = taps.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    return np.where(nan.any(axis=-1), last_nan, first_max)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling; returns ``(out, indices)`` with int64 flat indices into each H*W plane."""
    x = np.asarray(x)
    k, s, p, d, out = _geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    n, c, h, w = x.shape
    taps = _windows(x, -np.inf, k, s, p, d, out).reshape(n, c, out[0], out[1], -1)
    flat, inside = _flat_positions(h, w, k, s, p, d, out)
    pos = _argmax_torch(taps, inside)
    values = np.take_along_axis(taps, pos[..., None], axis=-1)[..., 0]
    indices = np.take_along_axis(np.broadcast_to(flat, taps.shape), pos[..., None],
                                 axis=-1)[..., 0]
    # A window without any input element (possible with dilation) keeps -inf and PyTorch's
    # index: its first tap at or after row/column 0, which lies outside the plane.
    empty = ~inside.any(axis=-1)
    if empty.any():
        first = []
        for i in range(2):
            start = np.arange(out[i]) * s[i] - p[i]
            first.append(np.where(start < 0, start + (-start + d[i] - 1) // d[i] * d[i],
                                  start))
        values = np.where(empty, -np.inf, values)
        indices = np.where(empty, first[0][:, None] * w + first[1][None, :], indices)
    return values.astype(x.dtype), indices.astype(np.int64)


def max_pool2d_backward(grad_out, indices, input_shape):
    """Scatter-add ``grad_out`` to the input positions named by ``indices``."""
    n, c, h, w = input_shape
    gx = np.zeros((n * c, h * w), dtype=np.asarray(grad_out).dtype)
    g = np.asarray(grad_out).reshape(n * c, -1)
    idx = np.asarray(indices).reshape(n * c, -1)
    rows = np.broadcast_to(np.arange(n * c)[:, None], idx.shape)
    keep = (idx >= 0) & (idx < h * w)
    np.add.at(gx, (rows[keep], idx[keep]), g[keep])
    return gx.reshape(input_shape)


def _avg_divisor(shape_hw, k, s, p, out, count_include_pad, divisor_override):
    """(OH, OW) divisors, PyTorch's rule."""
    h, w = shape_hw
    divs = []
    for i, size in enumerate((h, w)):
        start = np.arange(out[i]) * s[i] - p[i]
        end = np.minimum(start + k[i], size + p[i])
        if count_include_pad:
            divs.append(end - start)
        else:
            divs.append(np.minimum(end, size) - np.maximum(start, 0))
    div = divs[0][:, None] * divs[1][None, :]
    if divisor_override:
        div = np.full_like(div, divisor_override)
    return div


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Average pooling (PyTorch's divisor rule, see the module docstring)."""
    x = np.asarray(x)
    k, s, p, d, out = _geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    sums = _windows(x, 0, k, s, p, d, out).sum(axis=(-2, -1))
    div = _avg_divisor(x.shape[2:], k, s, p, out, count_include_pad, divisor_override)
    return (sums / div).astype(x.dtype)


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Adjoint of :func:`avg_pool2d`: each output's gradient / divisor over its window."""
    grad_out = np.asarray(grad_out)
    n, c, h, w = input_shape
    k = _pair(kernel_size)
    s = k if stride is None else _pair(stride)
    p = _pair(padding)
    out = grad_out.shape[2:]
    div = _avg_divisor((h, w), k, s, p, out, count_include_pad, divisor_override)
    g = grad_out / div
    # accumulate into the padded plane, one strided slice per tap, with room for a ceil_mode
    # window hanging past it, then crop
    hp = max(h + 2 * p[0], (out[0] - 1) * s[0] + k[0])
    wp = max(w + 2 * p[1], (out[1] - 1) * s[1] + k[1])
    gxp = np.zeros((n, c, hp, wp), dtype=grad_out.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            gxp[:, :, i:i + s[0] * (out[0] - 1) + 1:s[0], j:j + s[1] * (out[1] - 1) + 1:s[1]] += g
    return gxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w].copy()


def adaptive_windows(size, out):
    """Start and end (exclusive) of each adaptive window: floor(i*n/o), ceil((i+1)*n/o)."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_avg_pool2d(x, output_size):
    """Mean over each adaptive window; ``output_size`` is an int or an (OH, OW) pair."""
    x = np.asarray(x)
    oh, ow = _pair(output_size)
    hs, he = adaptive_windows(x.shape[2], oh)
    ws, we = adaptive_windows(x.shape[3], ow)
    out = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, hs[i]:he[i], ws[j]:we[j]].mean(axis=(2, 3))
    return out


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    grad_out = np.asarray(grad_out)
    oh, ow = grad_out.shape[2:]
    hs, he = adaptive_windows(input_shape[2], oh)
    ws, we = adaptive_windows(input_shape[3], ow)
    gx = np.zeros(input_shape, dtype=grad_out.dtype)
    for i in range(oh):
        for j in range(ow):
            area = (he[i] - hs[i]) * (we[j] - ws[j])
            gx[:, :, hs[i]:he[i], ws[j]:we[j]] += (grad_out[:, :, i, j] / area)[:, :, None, None]
    return gx


def adaptive_max_pool2d(x, output_size):
    """Max over each adaptive window; returns ``(out, indices)`` as :func:`max_pool2d`."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    oh, ow = _pair(output_size)
    hs, he = adaptive_windows(h, oh)
    ws, we = adaptive_windows(w, ow)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    idx = np.empty((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, hs[i]:he[i], ws[j]:we[j]].reshape(n, c, -1)
            pos = _argmax_torch(win, np.ones(win.shape, bool))
            out[:, :, i, j] = np.take_along_axis(win, pos[..., None], axis=-1)[..., 0]
            ww = we[j] - ws[j]
            idx[:, :, i, j] = (hs[i] + pos // ww) * w + ws[j] + pos % ww
    return out, idx


def adaptive_max_pool2d_backward(grad_out, indices, input_shape):
    return max_pool2d_backward(grad_out, indices, input_shape)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling, PyTorch's definition: ``(kH*kW * avg_pool2d(x**p)) ** (1/p)``
    with padding 0 and count_include_pad (so a ceil_mode window clipped at the border is
    rescaled to the full kernel area); ``norm_type = inf`` is max pooling of ``|x|``."""
    x = np.asarray(x)
    k = _pair(kernel_size)
    if np.isinf(norm_type):
        return max_pool2d(np.abs(x), k, stride, 0, 1, ceil_mode)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = avg_pool2d(x ** norm_type, k, stride, 0, ceil_mode) * (k[0] * k[1])
        return (np.sign(s) * np.maximum(np.abs(s), 0)) ** (1.0 / norm_type)


def lp_pool2d_backward(grad_out, x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of :func:`lp_pool2d`; where the window's sum of ``x**p`` is 0 it is 0."""
    x = np.asarray(x)
    k = _pair(kernel_size)
    if np.isinf(norm_type):
        _, idx = max_pool2d(np.abs(x), k, stride, 0, 1, ceil_mode)
        return max_pool2d_backward(grad_out, idx, x.shape) * np.sign(x)
    p = float(norm_type)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = avg_pool2d(x ** p, k, stride, 0, ceil_mode) * (k[0] * k[1])
        y = s ** (1.0 / p)
        gs = np.where(s != 0, grad_out * y / (p * s), 0)
        gxp = avg_pool2d_backward(gs * (k[0] * k[1]), x.shape, k, stride, 0, ceil_mode)
        return (gxp * p * x ** (p - 1)).astype(x.dtype)
