"""Upsampling ops: interpolate (nearest, bilinear), pixel_shuffle, pixel_unshuffle.

Validation and normalisation happen here, once; the Functions call ``fastconv._ext.upsample``
on C-contiguous NCHW arrays. pixel_shuffle has a kernel rather than NumPy's
reshape/transpose/copy: the 6-D transposed copy runs at 1-4 GB/s, the kernel at 4-14 GB/s
on one thread (measured on (32, 256, 32, 32) and (8, 27, 64, 64) float32).
"""
import math
import numbers

import numpy as np

from .._config import threads_for
from .._ext import upsample as _kernel
from ..autograd import Function
from ._args import check_float, data_of, kernel_ready, positive_int

__all__ = ["interpolate", "pixel_shuffle", "pixel_unshuffle"]

_MODES = ("nearest", "bilinear")


def _real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _two(op, name, value, check):
    """``value`` or ``(value_h, value_w)`` -> a pair; each item must pass ``check``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(check(v) for v in items):
        kind = "ints" if check is _int else "numbers"
        raise TypeError(f"{op}: expected {name} to be a number or a pair of {kind} for the "
                        f"2 spatial dims (H, W), got {value!r}")
    return items


def _output_size(op, hw, size, scale_factor, recompute_scale_factor):
    """(out_hw, kernel scales): the scales are the user's scale factors, or 0 where the
    kernel should use in / out (size given, or recompute_scale_factor=True), as PyTorch."""
    if (size is None) == (scale_factor is None):
        which = "neither" if size is None else "both"
        raise ValueError(f"{op}: expected exactly one of size or scale_factor, got {which}")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{op}: recompute_scale_factor is not meaningful with an "
                             f"explicit size, got size={size!r}")
        out = tuple(int(s) for s in _two(op, "size", size, _int))
        if min(out) < 1:
            raise ValueError(f"{op}: expected a positive output size, got size={size!r}")
        return out, (0.0, 0.0)
    sf = tuple(float(s) for s in _two(op, "scale_factor", scale_factor, _real))
    if not all(math.isfinite(s) and s > 0 for s in sf):
        raise ValueError(f"{op}: expected positive finite scale_factor, got {scale_factor!r}")
    out = tuple(int(math.floor(n * s)) for n, s in zip(hw, sf))
    if min(out) < 1:
        raise ValueError(f"{op}: expected a positive output size, got floor({hw} * "
                         f"{scale_factor!r}) = {out}")
    return out, ((0.0, 0.0) if recompute_scale_factor else sf)


class _Interpolate(Function):
    """Resize the last two dims of an NCHW array with ``fastconv._ext.upsample``."""

    @staticmethod
    def forward(ctx, x, out_hw, mode, align_corners, scales):
        x = kernel_ready(x)
        out = np.empty(x.shape[:2] + out_hw, dtype=x.dtype)
        if mode == "nearest":
            _kernel.nearest_forward(x, out, *scales, threads_for(max(x.size, out.size)))
        else:
            _kernel.bilinear_forward(x, out, align_corners, *scales,
                                     threads_for(max(x.size, out.size)))
        ctx.input_shape, ctx.dtype = x.shape, x.dtype
        ctx.settings = (mode, align_corners, scales)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[0]:
            return None
        mode, align_corners, scales = ctx.settings
        gy = kernel_ready(grad_out.astype(ctx.dtype, copy=False))
        gx = np.empty(ctx.input_shape, dtype=ctx.dtype)
        if mode == "nearest":
            _kernel.nearest_backward(gy, gx, *scales, threads_for(max(gy.size, gx.size)))
        else:
            _kernel.bilinear_backward(gy, gx, align_corners, *scales,
                                      threads_for(max(gy.size, gx.size)))
        return gx


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of an NCHW batch (upsampling or downsampling), as PyTorch.

    Parameters
    ----------
    input : Tensor or ndarray, (N, C, H, W), float32 or float64
    size : int or (int, int), optional
        Output (OH, OW). Exactly one of ``size`` and ``scale_factor`` is given.
    scale_factor : float or (float, float), optional
        ``OH = floor(H * scale_factor_h)`` (same for W). Unless ``recompute_scale_factor``
        is True, the source index uses ``1 / scale_factor`` (PyTorch's behaviour), not
        ``H / OH``.
    mode : {"nearest", "bilinear"}
        "nearest": ``src = min(floor(dst * scale), in - 1)`` (PyTorch's legacy nearest).
        "bilinear": linear in each axis over the 2 x 2 neighbours.
    align_corners : bool, optional
        Bilinear only (None means False): True maps the corner pixels of input and output
        onto each other, ``src = dst * (in - 1) / (out - 1)``; False uses pixel centres,
        ``src = max((dst + 0.5) * scale - 0.5, 0)``. Must be None for "nearest".
    recompute_scale_factor : bool, optional
        True: compute the output size from ``scale_factor``, then resize as if that size
        had been given.
    antialias : bool
        Only False is supported.

    Returns
    -------
    Tensor (N, C, OH, OW), differentiable w.r.t. ``input``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    >>> fc.functional.interpolate(x, scale_factor=2).shape
    (1, 1, 4, 4)
    """
    op = "interpolate"
    check_float(op, "input", input)
    x = data_of(input)
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got {x.ndim}-D with shape "
                         f"{tuple(x.shape)}")
    if mode not in _MODES:
        raise ValueError(f"{op}: expected mode to be one of {_MODES}, got {mode!r}")
    if mode == "nearest":
        if align_corners is not None:
            raise ValueError(f"{op}: align_corners can only be set with the interpolating "
                             f"mode 'bilinear': expected align_corners=None with "
                             f"mode='nearest', got align_corners={align_corners!r}")
    else:
        if align_corners is None:
            align_corners = False
        elif not isinstance(align_corners, (bool, np.bool_)):
            raise TypeError(f"{op}: expected align_corners to be a bool or None, got "
                            f"{align_corners!r}")
    if antialias:
        raise ValueError(f"{op}: expected antialias=False (antialiasing is not supported), "
                         f"got antialias={antialias!r}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: expected a non-empty spatial size, got input of shape "
                         f"{tuple(x.shape)}")
    out_hw, scales = _output_size(op, x.shape[2:], size, scale_factor, recompute_scale_factor)
    return _Interpolate.apply(input, out_hw=out_hw, mode=mode,
                              align_corners=bool(align_corners), scales=scales)


def _as_4d(x):
    """(*, C, H, W) -> (prod(*), C, H, W) (a view when the layout allows)."""
    return x.reshape((math.prod(x.shape[:-3]),) + x.shape[-3:])


class _PixelShuffle(Function):
    """Depth to space (``unshuffle=False``) or space to depth; each is the other's backward."""

    @staticmethod
    def _run(x, r, unshuffle):
        *lead, c, h, w = x.shape
        if unshuffle:
            shape = (c * r * r, h // r, w // r)
            kernel = _kernel.pixel_unshuffle
        else:
            shape = (c // (r * r), h * r, w * r)
            kernel = _kernel.pixel_shuffle
        x4 = kernel_ready(_as_4d(x))
        out = np.empty(x4.shape[:1] + shape, dtype=x.dtype)
        kernel(x4, out, r, threads_for(out.size))
        return out.reshape(tuple(lead) + shape)

    @staticmethod
    def forward(ctx, x, factor, unshuffle):
        ctx.settings = (factor, unshuffle)
        return _PixelShuffle._run(x, factor, unshuffle)

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[0]:
            return None
        factor, unshuffle = ctx.settings
        return _PixelShuffle._run(grad_out, factor, not unshuffle)


def _check_pixel_input(op, input):
    check_float(op, "input", input)
    x = data_of(input)
    if x.ndim < 3:
        raise ValueError(f"{op}: expected an input of at least 3 dims (*, C, H, W), got "
                         f"{x.ndim}-D with shape {tuple(x.shape)}")
    return x.shape


def pixel_shuffle(input, upscale_factor):
    """Rearrange (*, C * r^2, H, W) into (*, C, H * r, W * r) (depth to space), as PyTorch.

    ``out[..., c, h*r + i, w*r + j] = input[..., c*r*r + i*r + j, h, w]`` with
    ``r = upscale_factor``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.pixel_shuffle(np.zeros((1, 8, 3, 3), np.float32), 2).shape
    (1, 2, 6, 6)
    """
    op = "pixel_shuffle"
    shape = _check_pixel_input(op, input)
    r = positive_int(op, "upscale_factor", upscale_factor)
    if shape[-3] % (r * r):
        raise ValueError(f"{op}: expected the channel dim ({shape[-3]}) divisible by "
                         f"upscale_factor^2 = {r * r}, got input of shape {tuple(shape)}")
    return _PixelShuffle.apply(input, factor=r, unshuffle=False)


def pixel_unshuffle(input, downscale_factor):
    """Rearrange (*, C, H * r, W * r) into (*, C * r^2, H, W) (space to depth, the inverse
    of :func:`pixel_shuffle`; YOLOv5's Focus block), as PyTorch.

    ``out[..., c*r*r + i*r + j, h, w] = input[..., c, h*r + i, w*r + j]`` with
    ``r = downscale_factor``.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.functional.pixel_unshuffle(np.zeros((1, 3, 8, 8), np.float32), 2).shape
    (1, 12, 4, 4)
    """
    op = "pixel_unshuffle"
    shape = _check_pixel_input(op, input)
    r = positive_int(op, "downscale_factor", downscale_factor)
    if shape[-2] % r or shape[-1] % r:
        raise ValueError(f"{op}: expected height and width divisible by downscale_factor "
                         f"({r}), got input of shape {tuple(shape)}")
    return _PixelShuffle.apply(input, factor=r, unshuffle=True)
