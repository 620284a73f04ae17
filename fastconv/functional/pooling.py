"""Pooling ops: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d, lp_pool2d
and spatial_pyramid_pool, named and defined as in ``torch.nn.functional``.

Validation and normalisation happen here, once; the Functions below assume valid input and
call the kernels of ``fastconv._ext.pool2d``. Max pooling saves only its argmax indices for
backward, average pooling nothing but its geometry.
"""
import numbers

import numpy as np

from .._config import threads_for
from .._ext import pool2d as _k
from ..autograd import Function
from ._args import batched, check_float, check_ndim, data_of, is_unbatched, kernel_ready, pair

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "lp_pool2d", "spatial_pyramid_pool"]


# ----------------------------------------------------------------------------- arguments

def _check_input(op, x):
    check_ndim(op, "input", x, (3, 4))
    check_float(op, "input", x)


def _pool_size(op, size, k, s, p, d, ceil_mode, name):
    """PyTorch's pooling output length along one axis, checked to be >= 1."""
    eff = d * (k - 1) + 1
    span = size + 2 * p - eff
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1            # the last window would start in the right padding
    if out < 1:
        raise ValueError(f"{op}: expected an output {name} >= 1, got {out}: padded input "
                         f"size {size} + 2*{p} = {size + 2 * p}, effective kernel size "
                         f"{eff} (dilation {d} x (kernel {k} - 1) + 1), stride {s}")
    return out


def _window_args(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Normalised (k, s, p, d) pairs and the output (OH, OW)."""
    k = pair(op, "kernel_size", kernel_size, 1)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else pair(op, "stride", stride, 1)
    p = pair(op, "padding", padding, 0)
    d = pair(op, "dilation", dilation, 1)
    for i in range(2):
        if p[i] > k[i] // 2:
            raise ValueError(f"{op}: expected padding at most half the kernel size "
                             f"(kernel_size {k}), got padding {p}")
    h, w = data_of(x).shape[-2:]
    out = (_pool_size(op, h, k[0], s[0], p[0], d[0], ceil_mode, "height"),
           _pool_size(op, w, k[1], s[1], p[1], d[1], ceil_mode, "width"))
    return k, s, p, d, out


def _is_int(v):
    if type(v) is int:   # the common case, without the slow ABC check below
        return True
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _output_size(op, output_size, hw):
    """An int, a pair, or a pair holding None (= keep that input size), as PyTorch."""
    if (type(output_size) is tuple and len(output_size) == 2
            and type(output_size[0]) is int and type(output_size[1]) is int):
        out = output_size   # the common case, without the generic checks below
    elif _is_int(output_size):
        out = (int(output_size), int(output_size))
    elif (isinstance(output_size, (tuple, list)) and len(output_size) == 2
          and all(v is None or _is_int(v) for v in output_size)):
        out = tuple(hw[i] if v is None else int(v) for i, v in enumerate(output_size))
    else:
        raise TypeError(f"{op}: expected output_size to be an int or a pair of ints or None, "
                        f"got {output_size!r}")
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"{op}: expected output_size >= 1, got {output_size!r}")
    return out


def _unbatch(y):
    if isinstance(y, tuple):
        return (y[0].reshape(y[0].shape[1:]),) + tuple(e[0] for e in y[1:])
    return y.reshape(y.shape[1:])


# ----------------------------------------------------------------------------- Functions

class _MaxPool2d(Function):
    """Max pooling; saves the argmax indices (int64), returns them as an extra output."""

    @staticmethod
    def forward(ctx, x, geometry, out_hw, return_indices=True):
        x = kernel_ready(x)
        shape = x.shape[:2] + out_hw
        out = np.empty(shape, x.dtype)
        # inference without return_indices stores no index: half the bytes written
        keep = return_indices or ctx.needs_input_grad[0]
        idx = np.empty(shape, np.int64) if keep else None
        _k.max_forward(x, out, idx, *geometry, threads_for(x.size))
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(idx)
            ctx.input_shape = x.shape
        return out, idx

    @staticmethod
    def backward(ctx, grad_out):
        (idx,) = ctx.saved_tensors
        gx = np.empty(ctx.input_shape, grad_out.dtype)
        _k.max_backward(kernel_ready(grad_out), idx, gx, threads_for(gx.size))
        return gx


class _AvgPool2d(Function):
    """Average pooling; saves nothing but the geometry."""

    @staticmethod
    def forward(ctx, x, geometry, out_hw):
        x = kernel_ready(x)
        out = np.empty(x.shape[:2] + out_hw, x.dtype)
        _k.avg_forward(x, out, *geometry, threads_for(x.size))
        ctx.input_shape, ctx.geometry = x.shape, geometry
        return out

    @staticmethod
    def backward(ctx, grad_out):
        gx = np.empty(ctx.input_shape, grad_out.dtype)
        _k.avg_backward(kernel_ready(grad_out), gx, *ctx.geometry, threads_for(gx.size))
        return gx


class _AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, out_hw):
        x = kernel_ready(x)
        out = np.empty(x.shape[:2] + out_hw, x.dtype)
        _k.adaptive_avg_forward(x, out, threads_for(x.size))
        ctx.input_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        gx = np.empty(ctx.input_shape, grad_out.dtype)
        _k.adaptive_avg_backward(kernel_ready(grad_out), gx, threads_for(gx.size))
        return gx


class _AdaptiveMaxPool2d(Function):
    """Adaptive max pooling; saves the argmax indices, backward is max pooling's."""

    @staticmethod
    def forward(ctx, x, out_hw):
        x = kernel_ready(x)
        shape = x.shape[:2] + out_hw
        out, idx = np.empty(shape, x.dtype), np.empty(shape, np.int64)
        _k.adaptive_max_forward(x, out, idx, threads_for(x.size))
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(idx)
            ctx.input_shape = x.shape
        return out, idx

    backward = _MaxPool2d.backward


class _LpPool2d(Function):
    """(kH*kW * avg_pool2d(x**p)) ** (1/p), PyTorch's definition; p = inf is max of |x|.
    Saves x and the output (and, for p = inf, the argmax indices)."""

    @staticmethod
    def forward(ctx, x, p, geometry, out_hw):
        x = kernel_ready(x)
        n_threads = threads_for(x.size)
        shape = x.shape[:2] + out_hw
        out = np.empty(shape, x.dtype)
        ctx.p, ctx.geometry = p, geometry
        if np.isinf(p):
            idx = np.empty(shape, np.int64)
            kh, kw, sh, sw = geometry[:4]
            _k.max_forward(np.abs(x), out, idx, kh, kw, sh, sw, 0, 0, 1, 1, n_threads)
            ctx.save_for_backward(x, idx)
            return out
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            _k.avg_forward(np.ascontiguousarray(x ** p, x.dtype), out, *geometry, n_threads)
            out *= geometry[0] * geometry[1]
            s = out.copy()
            # sign(s) * relu(|s|) is s, NaN included; a negative s (odd p) gives NaN, as torch
            np.power(out, 1.0 / p, out=out)
        ctx.save_for_backward(x, s, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        p, geometry = ctx.p, ctx.geometry
        n_threads = threads_for(grad_out.size * geometry[0] * geometry[1])
        gy = kernel_ready(grad_out)
        if np.isinf(p):
            x, idx = ctx.saved_tensors
            gx = np.empty(x.shape, x.dtype)
            _k.max_backward(gy, idx, gx, n_threads)
            return gx * np.sign(x)
        x, s, y = ctx.saved_tensors
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # d y / d s = y / (p s); zero where the window's sum of x**p is 0, as PyTorch
            gs = np.where(s != 0, gy * y / (p * s), 0).astype(x.dtype)
            gs *= geometry[0] * geometry[1]
            gxp = np.empty(x.shape, x.dtype)
            _k.avg_backward(gs, gxp, *geometry, n_threads)
            return gxp * (p * x ** (p - 1))


class _SpatialPyramidPool(Function):
    """Adaptive max pools to (L, L) for each level, flattened and concatenated along dim 1.
    Saves one index array per level."""

    @staticmethod
    def forward(ctx, x, levels):
        x = kernel_ready(x)
        n, c = x.shape[:2]
        n_threads = threads_for(x.size)
        parts, saved = [], []
        for L in levels:
            out = np.empty((n, c, L, L), x.dtype)
            idx = np.empty((n, c, L, L), np.int64)
            _k.adaptive_max_forward(x, out, idx, n_threads)
            parts.append(out.reshape(n, -1))
            saved.append(idx)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(*saved)
            ctx.input_shape = x.shape
        return np.concatenate(parts, axis=1)

    @staticmethod
    def backward(ctx, grad_out):
        n, c = ctx.input_shape[:2]
        gx = np.zeros(ctx.input_shape, grad_out.dtype)
        part = np.empty(ctx.input_shape, grad_out.dtype)
        start = 0
        for idx in ctx.saved_tensors:
            size = c * idx.shape[2] * idx.shape[3]
            gy = np.ascontiguousarray(grad_out[:, start:start + size]).reshape(idx.shape)
            _k.max_backward(gy, idx, part, threads_for(part.size))
            gx += part
            start += size
        return gx


# ----------------------------------------------------------------------------- public ops

def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling over an NCHW batch, as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, H, W) or unbatched (C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit -inf padding on both sides, at most half the kernel size.
    dilation : int or (int, int)
        Spacing between the taps of a window.
    ceil_mode : bool
        Round the output size up; the last window must still start inside the input or the
        left padding.
    return_indices : bool
        Also return the int64 argmax indices: flat offsets ``ih * W + iw`` into each input
        H*W plane (what ``max_unpool2d`` takes in PyTorch).

    Returns
    -------
    Tensor (N, C, OH, OW) [, ndarray of int64 indices], with
    ``OH = floor_or_ceil((H + 2*padding_h - dilation_h*(kH - 1) - 1) / stride_h) + 1``
    (same for W).

    Notes
    -----
    Ties: the FIRST maximum in row-major window order wins (its index is returned and it
    receives the gradient). A NaN in a window propagates: the output is NaN and the index is
    that of the window's last NaN, as in PyTorch.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> x = fc.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> y, idx = fc.functional.max_pool2d(x, 2, return_indices=True)
    >>> y.data[0, 0], idx[0, 0]
    (array([[ 5.,  7.],
           [13., 15.]]), array([[ 5,  7],
           [13, 15]]))
    """
    op = "max_pool2d"
    _check_input(op, input)
    if is_unbatched(input):
        return _unbatch(max_pool2d(batched(input), kernel_size, stride, padding, dilation,
                                   ceil_mode, return_indices))
    k, s, p, d, out = _window_args(op, input, kernel_size, stride, padding, dilation,
                                   ceil_mode)
    y, idx = _MaxPool2d.apply(input, geometry=(*k, *s, *p, *d), out_hw=out,
                              return_indices=bool(return_indices))
    return (y, idx) if return_indices else y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling over an NCHW batch, as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, H, W) or unbatched (C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit zero padding on both sides, at most half the kernel size.
    ceil_mode : bool
        Round the output size up (the last window starts inside the input or left padding).
    count_include_pad : bool
        Divide by the window size including padded positions (but never the part of a
        ceil_mode window beyond the padded input); else by the number of input elements.
    divisor_override : int, optional
        Divide every window sum by this instead.

    Returns
    -------
    Tensor (N, C, OH, OW), ``OH = floor_or_ceil((H + 2*padding_h - kH) / stride_h) + 1``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.avg_pool2d(np.ones((1, 2, 4, 4)), 2).shape
    (1, 2, 2, 2)
    """
    op = "avg_pool2d"
    _check_input(op, input)
    if divisor_override is not None and (not _is_int(divisor_override)
                                         or divisor_override < 1):
        raise ValueError(f"{op}: expected divisor_override to be None or a positive int, "
                         f"got {divisor_override!r}")
    if is_unbatched(input):
        return _unbatch(avg_pool2d(batched(input), kernel_size, stride, padding, ceil_mode,
                                   count_include_pad, divisor_override))
    k, s, p, _, out = _window_args(op, input, kernel_size, stride, padding, 1, ceil_mode)
    geometry = (*k, *s, *p, bool(count_include_pad), int(divisor_override or 0))
    return _AvgPool2d.apply(input, geometry=geometry, out_hw=out)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output ``i`` along an axis of size ``n`` covers input ``[floor(i*n/o), ceil((i+1)*n/o))``.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, H, W) or unbatched (C, H, W)
    output_size : int or (int or None, int or None)
        None keeps that input size; ``(1, 1)`` is global average pooling.

    Returns
    -------
    Tensor (N, C, OH, OW)

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.adaptive_avg_pool2d(np.ones((2, 8, 7, 5)), 1).shape
    (2, 8, 1, 1)
    """
    op = "adaptive_avg_pool2d"
    x = data_of(input)
    _check_input(op, x)
    out = _output_size(op, output_size, x.shape[-2:])
    if x.ndim == 3:
        return _unbatch(adaptive_avg_pool2d(batched(input), out))
    _check_nonempty_plane(op, x)
    return _AdaptiveAvgPool2d.apply(input, out_hw=out)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max pooling to a fixed output size, as ``torch.nn.functional.adaptive_max_pool2d``.

    Windows as in :func:`adaptive_avg_pool2d`; ties and NaN as in :func:`max_pool2d`.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, H, W) or unbatched (C, H, W)
    output_size : int or (int or None, int or None)
    return_indices : bool
        Also return the int64 flat argmax indices into each H*W plane.

    Returns
    -------
    Tensor (N, C, OH, OW) [, ndarray of int64 indices]

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.adaptive_max_pool2d(np.ones((1, 3, 10, 9)), (2, None)).shape
    (1, 3, 2, 9)
    """
    op = "adaptive_max_pool2d"
    x = data_of(input)
    _check_input(op, x)
    out = _output_size(op, output_size, x.shape[-2:])
    if x.ndim == 3:
        return _unbatch(adaptive_max_pool2d(batched(input), out, return_indices))
    _check_nonempty_plane(op, x)
    y, idx = _AdaptiveMaxPool2d.apply(input, out_hw=out)
    return (y, idx) if return_indices else y


def _check_nonempty_plane(op, x):
    h, w = data_of(x).shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"{op}: expected a non-empty input plane, got H={h}, W={w}")


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling, as ``torch.nn.functional.lp_pool2d``.

    ``out = (sum over the window of x**p) ** (1/p)``, computed as PyTorch does: average
    pooling of ``x**p`` (no padding, count_include_pad) times ``kH*kW``, then ``** (1/p)``.
    So a ceil_mode window clipped at the border is rescaled to the full kernel area, a
    negative window sum (odd p) gives NaN, and where the sum is 0 the gradient is 0.
    ``norm_type = inf`` is max pooling of ``|x|``.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, H, W) or unbatched (C, H, W)
    norm_type : float
        p > 0 (or inf).
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    ceil_mode : bool

    Returns
    -------
    Tensor (N, C, OH, OW), ``OH = floor_or_ceil((H - kH) / stride_h) + 1``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.lp_pool2d(np.full((1, 1, 2, 2), 3.0), 2, 2).data.ravel()
    array([6.])
    """
    op = "lp_pool2d"
    _check_input(op, input)
    if (not isinstance(norm_type, (numbers.Real, np.floating, np.integer))
            or isinstance(norm_type, (bool, np.bool_))):
        raise TypeError(f"{op}: expected norm_type to be a number, got {norm_type!r}")
    if not norm_type > 0:
        raise ValueError(f"{op}: expected norm_type > 0, got {norm_type!r}")
    if is_unbatched(input):
        return _unbatch(lp_pool2d(batched(input), norm_type, kernel_size, stride, ceil_mode))
    k, s, p, _, out = _window_args(op, input, kernel_size, stride, 0, 1, ceil_mode)
    geometry = (*k, *s, 0, 0, True, 0)
    return _LpPool2d.apply(input, float(norm_type), geometry=geometry, out_hw=out)


def spatial_pyramid_pool(input, levels):
    """Spatial pyramid pooling (He et al., 2014): a fixed-length vector from any input size.

    For each level ``L``, adaptive max pooling to ``(L, L)``, flattened; the levels are
    concatenated along dim 1 in the order given. Differentiable; ties and NaN as in
    :func:`max_pool2d`.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, H, W) or unbatched (C, H, W)
    levels : sequence of positive ints, e.g. ``(1, 2, 4)``

    Returns
    -------
    Tensor (N, C * sum(L**2 for L in levels)) (or (C * sum L**2,) unbatched), each level's
    block laid out as ``(C, L, L)``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.spatial_pyramid_pool(np.ones((2, 3, 13, 9)), (1, 2, 4)).shape
    (2, 63)
    """
    op = "spatial_pyramid_pool"
    _check_input(op, input)
    if (not isinstance(levels, (tuple, list)) or len(levels) == 0
            or not all(_is_int(L) for L in levels)):
        raise TypeError(f"{op}: expected levels to be a non-empty sequence of ints, "
                        f"got {levels!r}")
    if any(L < 1 for L in levels):
        raise ValueError(f"{op}: expected every level >= 1, got {levels!r}")
    if is_unbatched(input):
        y = spatial_pyramid_pool(batched(input), levels)
        return y.reshape(y.shape[1:])
    _check_nonempty_plane(op, input)
    return _SpatialPyramidPool.apply(input, levels=tuple(int(L) for L in levels))
